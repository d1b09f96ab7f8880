"""A revocation run, phase by phase — the same code behind the CLI and the Python API.

1. one streaming pass validates all local input (errors name file and line; exit 2, nothing changed);
2. a token is acquired and checked; exclusions are resolved to object ids (one that cannot be
   resolved refuses the run) and privileged users identified;
3. confirmation with the count and an ETA at the write budget (the caller's ``confirm``);
4. privileged users first, then the rest streams through the engine; the journal records all.
"""

from __future__ import annotations

import getpass
import hashlib
import json
import logging
import socket
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from revoke_ops import __version__
from revoke_ops.credentials import Identity, token_claims
from revoke_ops.engine import Engine, EngineOptions, Send, Summary
from revoke_ops.errors import AuthError, InputError
from revoke_ops.graph import ADVANCED_HEADERS, GraphSession
from revoke_ops.journal import Journal, default_journal_path, read_journal
from revoke_ops.resolve import Capabilities, Exclusions, Plan, lookup, privileged_ids, resolve_exclusions, stream
from revoke_ops.targets import Target, TargetFile, parse_target, validate_files

__all__ = ["RevokeRequest", "RunResult", "outcome_exit_code", "revoke"]

log = logging.getLogger(__name__)
BULK_THRESHOLD = 5  # "more than a handful": confirmation is asked above this


@dataclass
class RevokeRequest:
    """Everything one run needs (the CLI's options, as data)."""

    users: list[str] = field(default_factory=list)
    files: list[str] = field(default_factory=list)  # paths, or "-" for stdin
    group: str | None = None
    all_users: bool = False
    filter: str | None = None
    exclude: list[str] = field(default_factory=list)
    exclude_files: list[str] = field(default_factory=list)
    include_external: bool = False
    dry_run: bool = False
    reason: str = ""
    journal: Path | None = None
    resume: Path | None = None
    engine: EngineOptions = field(default_factory=EngineOptions)
    timeout: float = 30.0

    def spec(self) -> dict[str, Any]:
        return {
            "users": self.users,
            "files": [str(Path(f).resolve()) if f != "-" else "-" for f in self.files],
            "group": self.group,
            "allUsers": self.all_users,
            "filter": self.filter,
            "exclude": self.exclude,
            "excludeFiles": [str(Path(f).resolve()) for f in self.exclude_files],
            "includeExternal": self.include_external,
        }

    @classmethod
    def from_spec(cls, spec: dict[str, Any], **overrides: Any) -> RevokeRequest:
        return cls(
            users=list(spec.get("users", [])),
            files=list(spec.get("files", [])),
            group=spec.get("group"),
            all_users=bool(spec.get("allUsers")),
            filter=spec.get("filter"),
            exclude=list(spec.get("exclude", [])),
            exclude_files=list(spec.get("excludeFiles", [])),
            include_external=bool(spec.get("includeExternal")),
            **overrides,
        )


@dataclass
class RunResult:
    summary: Summary
    journal: Path | None
    targets_estimate: int | None
    operator: str | None
    would_revoke: list[dict[str, Any]] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    @property
    def exit_code(self) -> int:
        return outcome_exit_code(self.summary)


def outcome_exit_code(summary: Summary) -> int:
    """0 when every target ended revoked, excluded or skipped as asked; 1 otherwise."""
    bad = sum(summary.counts[o] for o in ("not_found", "forbidden", "failed"))
    return 1 if bad else 0


def _digest(request: RevokeRequest) -> str:
    h = hashlib.sha256(json.dumps(request.spec(), sort_keys=True).encode())
    for name in [*request.files, *request.exclude_files]:
        if name != "-" and Path(name).is_file():
            with open(name, "rb") as handle:
                for block in iter(lambda: handle.read(1 << 20), b""):
                    h.update(block)
    return h.hexdigest()


def _exclusion_values(request: RevokeRequest) -> list[str]:
    values = list(request.exclude)
    errors = []
    for name in request.exclude_files:
        handle = TargetFile.open(name)
        for item in handle.targets():
            if isinstance(item, InputError):
                errors.append(str(item))
            else:
                values.append(item.key)
    if errors:
        raise InputError("invalid exclusion line(s); nothing was changed:\n" + "\n".join(f"  {e}" for e in errors[:20]))
    for value in request.exclude:
        parse_target(value, "--exclude")
    return values


async def revoke(
    identity: Identity,
    request: RevokeRequest,
    *,
    confirm: Callable[[int | None, float | None, dict[str, Any]], bool] | None = None,
    on_progress: Callable[[Summary], None] | None = None,
    engine_factory: Callable[..., Engine] | None = None,
    on_would_revoke: Callable[[dict[str, Any]], None] | None = None,
) -> RunResult:
    """Run one revocation (or a dry run) and return its result.

    :param on_would_revoke: in a dry run, receives each user that would be revoked as it is
        resolved (else they are collected in ``RunResult.would_revoke``).
    :param confirm: called after phase 2 with (count or None, ETA seconds or None, details);
        return False to stop before anything changes. None means "do not ask" (like ``--yes``).
    :raises InputError: invalid local input or an unresolvable exclusion (nothing changed).
    :raises AuthError: no token, or the token lacks what the run needs (nothing changed).
    """
    resume_state = None
    if request.resume is not None:
        resume_state = read_journal(request.resume)
        spec = resume_state.header.get("spec") or {}
        if resume_state.header.get("tenant") != identity.tenant_id:
            raise InputError(
                f"the journal {request.resume} is for tenant {resume_state.header.get('tenant')}, "
                f"these credentials for {identity.tenant_id}"
            )
        request = RevokeRequest.from_spec(
            spec,
            reason=request.reason or resume_state.header.get("reason", ""),
            journal=request.resume,
            resume=request.resume,
            engine=request.engine,
            timeout=request.timeout,
            dry_run=request.dry_run,
        )
        if _digest(request) != resume_state.header.get("inputDigest"):
            raise InputError(
                f"the inputs of {request.resume} changed since the run started (files or options differ): "
                "resume needs the same inputs; start a new run instead"
            )
    sources = sum([bool(request.users or request.files), bool(request.group), request.all_users])
    if sources == 0:
        raise InputError("no targets: give --user, --from-file, --group or --all-users")
    if sources > 1:
        raise InputError("give targets one way per run: --user/--from-file, or --group, or --all-users")
    if request.filter and not request.all_users:
        raise InputError("--filter goes with --all-users")

    # Phase 1: local input, one streaming pass.
    files = [TargetFile.open(name) for name in request.files]
    warnings: list[str] = []
    try:
        local_count, duplicates = validate_files(files, request.users) if (files or request.users) else (0, 0)
        if duplicates:
            warnings.append(f"{duplicates} duplicate target(s) ignored")
        exclusion_values = _exclusion_values(request)
        digest = _digest(request)

        # Phase 2: token, permissions, exclusions, privileged users.
        token = await identity.token()
        caps = Capabilities.from_claims(token_claims(token.token))
        if not caps.revoke:
            granted = identity.bundle and "User.RevokeSessions.All" in (
                identity.bundle.delegated_permissions if identity.delegated else identity.bundle.application_permissions
            )
            if granted:
                raise AuthError(
                    "User.RevokeSessions.All is granted to this app but not yet in its token: consent replicates "
                    "through Entra for a few minutes after `pulumi up`. Wait and retry (revoke-ops doctor --wait).",
                    code="ConsentNotReplicated",
                )
            raise AuthError(
                "the token does not carry User.RevokeSessions.All (no admin consent): run `pulumi up` for this "
                "tenant's stack, or check the credentials are the revoker app's",
                code="Authorization_RequestDenied",
            )
        async with GraphSession(identity, timeout=request.timeout) as session:
            target_kinds = {parse_target(u, "--user").kind for u in request.users}
            for handle in files:
                for item in handle.targets():
                    if not isinstance(item, InputError):
                        target_kinds.add(item.kind)
                    if len(target_kinds) == 2:
                        break
            if request.group or request.all_users:
                target_kinds = {"id", "upn"}
            exclusions: Exclusions = await resolve_exclusions(session, caps, exclusion_values, target_kinds)
            privileged: set[str] = set()
            privileged_upns: set[str] = set()
            if caps.read_roles:
                privileged = await privileged_ids(session)
                if caps.read_users and privileged and "upn" in target_kinds and (files or request.users):
                    holders = await lookup(session, [Target(i, "id", "role holder") for i in sorted(privileged)])
                    privileged_upns = {str(u.get("userPrincipalName", "")).lower() for u in holders.values()}
            else:
                warnings.append(
                    "privileged users (directory role holders) cannot be identified and revoked first without "
                    "RoleManagement.Read.Directory (add it to the stack's readPermissions)"
                )
            if not caps.read_users and (files or request.users):
                warnings.append(
                    "without User.Read.All targets are sent as given: external users are recognised only by an #EXT# "
                    "UPN and unknown users show up as not_found (add User.Read.All to the stack's readPermissions)"
                )
            operator = None
            if identity.delegated:
                me = await session.read("/me?$select=id,userPrincipalName")
                if me.status == 200 and isinstance(me.body, dict):
                    operator = str(me.body.get("userPrincipalName") or me.body.get("id"))
                    operator_id = str(me.body.get("id", "")).lower()
                else:
                    operator_id = None
            else:
                operator_id = None
            estimate: int | None = local_count if (files or request.users) else await _remote_count(session, request)

            # Phase 3: confirmation.
            budget = request.engine
            eta = None if estimate is None else max(0.0, estimate - budget.write_burst) / budget.write_rate
            details = {
                "exclusions": len(exclusions),
                "privileged": len(privileged),
                "dryRun": request.dry_run,
                "operator": operator,
                "warnings": warnings,
            }
            bulk = request.all_users or request.group is not None or (estimate or 0) > BULK_THRESHOLD
            if confirm is not None and bulk and not request.dry_run and not confirm(estimate, eta, details):
                raise InputError("stopped at the confirmation: nothing was changed")

            # Phase 4: stream.
            plan = Plan(
                files=files,
                users=request.users,
                group=request.group,
                all_users=request.all_users,
                filter=request.filter,
                include_external=request.include_external,
                exclusions=exclusions,
                privileged=privileged,
                privileged_upns=privileged_upns,
                operator_id=operator_id,
                skip=resume_state.done_hashes() if resume_state else set(),
            )
            journal = None
            if not request.dry_run:
                path = request.journal or default_journal_path(identity.tenant_id)
                journal = Journal(path, append=resume_state is not None)
                journal.header(
                    tool=f"revoke-ops {__version__}",
                    tenant=identity.tenant_id,
                    clientId=identity.client_id,
                    credential=identity.kind,
                    operator=operator or _local_user(),
                    reason=request.reason,
                    inputDigest=digest,
                    spec=request.spec(),
                    resumed=resume_state is not None,
                    estimate=estimate,
                )
            would: list[dict[str, Any]] = []

            def collect(item: Send) -> None:
                row = {
                    "id": item.id,
                    "userPrincipalName": item.upn,
                    "target": item.target,
                    "privileged": item.privileged,
                }
                if on_would_revoke is not None:
                    on_would_revoke(row)  # streamed: memory stays flat for a million targets
                else:
                    would.append(row)

            request.engine.dry_run = request.dry_run
            request.engine.delegated = identity.delegated
            factory = engine_factory or Engine
            engine = factory(session, journal, request.engine, on_outcome=on_progress, on_would_revoke=collect)
            try:
                summary = await engine.run(stream(plan, session, caps))
            finally:
                if journal is not None:
                    journal.write({"type": "end", "summary": engine.summary.to_json()})
                    journal.close()
            return RunResult(summary, journal.path if journal else None, estimate, operator, would, warnings)
    finally:
        for handle in files:
            handle.cleanup()


def _local_user() -> str | None:
    try:
        return f"{getpass.getuser()}@{socket.gethostname()}"
    except (KeyError, OSError):
        return None


async def _remote_count(session: GraphSession, request: RevokeRequest) -> int | None:
    """How many users a group or whole-tenant run covers (an estimate: $count is eventually consistent).

    Also the pre-flight of the operator's ``--filter``: one Graph refuses is a usage error naming
    it, before any journal is written.
    """
    from urllib.parse import quote

    if request.group:
        # Counting users only needs the cast, an advanced query: fine for an estimate.
        group = quote(request.group, safe="")
        url = f"/groups/{group}/transitiveMembers/microsoft.graph.user?$count=true&$top=1&$select=id"
    else:
        url = "/users?$count=true&$top=1&$select=id"
        if request.filter:
            url += f"&$filter={quote(request.filter, safe='')}"
    response = await session.read(url, headers=dict(ADVANCED_HEADERS))
    if response.status == 200 and isinstance(response.body, dict) and "@odata.count" in response.body:
        return int(response.body["@odata.count"])
    if response.status == 404 and request.group:
        raise InputError(f"--group {request.group}: no such group in the tenant (--group takes the group's object id)")
    if response.status == 400 and request.filter:
        raise InputError(
            f"--filter {request.filter!r}: Microsoft Graph refused it ({response.error_code}): {response.error_message}"
        )
    return None
