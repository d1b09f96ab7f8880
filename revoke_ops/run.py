"""A revocation run, phase by phase — the same code behind the CLI and the Python API.

1. one streaming pass validates all local input (errors name file and line; exit 2, nothing changed);
2. a token is acquired and checked; exclusions are resolved to object ids (one that cannot be
   resolved refuses the run) and privileged users identified;
3. confirmation with the count and an ETA at the write budget (the caller's ``confirm``);
4. privileged users first, then the rest streams through the engine; the journal records all.
"""

from __future__ import annotations

import dataclasses
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
from revoke_ops.journal import Journal, JournalState, default_journal_path, read_journal
from revoke_ops.resolve import Capabilities, Plan, Privileged, find_privileged, resolve_exclusions, stream
from revoke_ops.targets import Target, TargetFile, parse_target, validate_files

__all__ = [
    "Confirmation",
    "Prepared",
    "RevokeRequest",
    "RunResult",
    "execute",
    "outcome_exit_code",
    "prepare",
    "resumed_request",
    "revoke",
]

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
    operator: str | None
    would_revoke: list[dict[str, Any]] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    #: why the run cannot be called complete although every user it saw was handled (a listing that
    #: ended far below Graph's count), else None
    incomplete: str | None = None

    @property
    def exit_code(self) -> int:
        return 1 if self.incomplete else outcome_exit_code(self.summary)


def outcome_exit_code(summary: Summary) -> int:
    """0 when every target ended revoked, excluded or skipped as asked; 1 otherwise."""
    bad = sum(summary.counts[o] for o in ("not_found", "forbidden", "failed"))
    return 1 if bad else 0


@dataclass(frozen=True)
class Confirmation:
    """What the operator is asked to confirm, with what is known and what is only estimated."""

    tenant_id: str
    targets: int | None  # how many users the run covers, if known
    targets_basis: str  # "listed" (lines given, not yet looked up), "estimate" (Graph's $count), "unknown"
    eta_seconds: float | None  # at the write budget, for ``targets``
    excluded: int  # distinct break-glass users excluded
    privileged_first: int | None  # privileged users among the targets, when known before the run
    privileged_in_tenant: int  # directory role holders found in the tenant
    dry_run: bool
    operator: str | None
    resumed: bool
    added_exclusions: tuple[str, ...] = ()
    warnings: tuple[str, ...] = ()

    def question(self) -> str:
        """The confirmation question, saying what is an estimate."""
        if self.targets is None:
            what = "an unknown number of users"
        elif self.targets_basis == "estimate":
            what = f"about {self.targets} user(s) (Graph's count, eventually consistent)"
        else:
            what = f"{self.targets} listed target(s)"
        timing = f", about {self.eta_seconds / 60:.1f} min at the write budget" if self.eta_seconds else ""
        if self.privileged_first is not None:
            first = f"{self.privileged_first} privileged first"
        else:
            first = f"privileged first: those of the tenant's {self.privileged_in_tenant} role holders among them"
        resumed = "Resume revoking" if self.resumed else "Revoke"
        return (
            f"{resumed} the sign-in sessions of {what} in tenant {self.tenant_id}{timing} "
            f"({self.excluded} excluded, {first})? [y/N] "
        )


@dataclass
class Prepared:
    """A run after phases 1 and 2: validated input, a checked token, resolved exclusions."""

    request: RevokeRequest
    identity: Identity
    session: GraphSession
    caps: Capabilities
    plan: Plan
    confirmation: Confirmation
    digest: str
    resumed: bool
    added_exclusions: list[str]

    @property
    def needs_confirmation(self) -> bool:
        req = self.request
        bulk = req.all_users or req.group is not None or (self.confirmation.targets or 0) > BULK_THRESHOLD
        return bulk and not req.dry_run


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


def resumed_request(request: RevokeRequest, state: JournalState) -> tuple[RevokeRequest, list[str]]:
    """The request a journal recorded, with the resume's own settings and any added exclusions.

    Target, filter and external options given with ``--resume`` must equal the journal's (else the
    resume is refused, naming the option); exclusions may be added (never removed: the journal's
    always apply). Returns the request to run and the exclusions added.

    :raises InputError: the journal is for another run's inputs, or an option differs.
    """
    spec = state.header.get("spec") or {}
    original = RevokeRequest.from_spec(
        spec,
        reason=request.reason or state.header.get("reason", ""),
        journal=request.resume,
        resume=request.resume,
        engine=request.engine,
        timeout=request.timeout,
        dry_run=request.dry_run,
    )
    given = request.spec()
    differs = []
    for key, option in (
        ("users", "--user"),
        ("files", "--from-file"),
        ("group", "--group"),
        ("allUsers", "--all-users"),
        ("filter", "--filter"),
        ("includeExternal", "--include-external"),
    ):
        value = given[key]
        if value and value != spec.get(key):
            differs.append(f"{option} (journal: {spec.get(key)!r}, given: {value!r})")
    if differs:
        raise InputError(
            f"--resume {request.resume} continues the run its journal records; these options differ from it: "
            + "; ".join(differs)
            + ". Give --resume alone (exclusions may be added), or start a new run"
        )
    if "-" in original.files:
        raise InputError(
            f"--resume {request.resume}: that run read its targets from standard input, which cannot be read "
            "again the same way; save the list to a file and start a new run with --from-file"
        )
    if _digest(original) != state.header.get("inputDigest"):
        raise InputError(
            f"the inputs of {request.resume} changed since the run started (files or options differ): "
            "resume needs the same inputs; start a new run instead"
        )
    # Exclusions added by earlier resumes (recorded in their headers) keep applying: never lost.
    earlier_files = [e for e in state.added_exclusions if e.startswith("file:")]
    original.exclude += [e for e in state.added_exclusions if not e.startswith("file:")]
    original.exclude_files += [e.removeprefix("file:") for e in earlier_files]
    added = [e for e in request.exclude if e not in original.exclude]
    added_files = [f for f in given["excludeFiles"] if f not in original.exclude_files]
    original.exclude = [*original.exclude, *added]
    original.exclude_files = [*original.exclude_files, *added_files]
    return original, [*added, *(f"file:{f}" for f in added_files)]


async def prepare(
    identity: Identity,
    session: GraphSession,
    request: RevokeRequest,
    files: list[TargetFile],
    *,
    resume_state: JournalState | None = None,
    added_exclusions: list[str] | None = None,
) -> Prepared:
    """Phases 1 and 2: validate local input, check the token, resolve exclusions and privileged users.

    Nothing in the tenant changes here.

    :raises InputError: invalid local input or an unresolvable exclusion.
    :raises AuthError: no token, or the token lacks what the run needs.
    :raises ServiceError: Graph kept failing on a read.
    """
    _check_sources(request)
    warnings: list[str] = []
    local = bool(files or request.users)
    local_count, duplicates = validate_files(files, request.users) if local else (0, 0)
    if local and local_count == 0:
        raise InputError("the input holds no targets (empty, or only comments/a header): nothing to do")
    if duplicates:
        warnings.append(f"{duplicates} duplicate target(s) ignored")
    exclusion_values = _exclusion_values(request)
    digest = _digest(request)

    token = await identity.token()
    caps = Capabilities.from_claims(token_claims(token.token))
    _check_revoke_permission(identity, caps)

    target_kinds = _target_kinds(request, files, caps)
    exclusions = await resolve_exclusions(session, caps, exclusion_values, target_kinds)
    privileged = Privileged()
    if caps.read_roles:
        privileged = await find_privileged(session, caps, need_upns=local and "upn" in target_kinds)
        warnings.extend(privileged.notes)
    else:
        warnings.append(
            "privileged users (directory role holders) cannot be identified and revoked first without "
            "RoleManagement.Read.Directory (add it to the stack's readPermissions)"
        )
    if not caps.read_users and local:
        warnings.append(
            "without User.Read.All targets are sent as given: external users are recognised only by an #EXT# "
            "UPN, unknown users show up as not_found, and one user named both by id and by UPN cannot be "
            "recognised as one (add User.Read.All to the stack's readPermissions)"
        )
    operator, operator_id = await _operator(identity, session)

    if local:
        targets: int | None = local_count
        basis = "listed"
        privileged_first: int | None = _count_privileged(request, files, privileged)
    else:
        targets = await _remote_count(session, request)
        basis = "estimate" if targets is not None else "unknown"
        privileged_first = None
    budget = request.engine
    eta = None if targets is None else max(0.0, targets - budget.write_burst) / budget.write_rate
    plan = Plan(
        files=files,
        users=request.users,
        group=request.group,
        all_users=request.all_users,
        filter=request.filter,
        include_external=request.include_external,
        exclusions=exclusions,
        privileged=privileged,
        operator_id=operator_id,
        done=frozenset(resume_state.done_hashes()) if resume_state else frozenset(),
    )
    confirmation = Confirmation(
        tenant_id=identity.tenant_id,
        targets=targets,
        targets_basis=basis,
        eta_seconds=eta,
        excluded=exclusions.users,
        privileged_first=privileged_first,
        privileged_in_tenant=len(privileged.ids),
        dry_run=request.dry_run,
        operator=operator,
        resumed=resume_state is not None,
        added_exclusions=tuple(added_exclusions or ()),
        warnings=tuple(warnings),
    )
    return Prepared(
        request, identity, session, caps, plan, confirmation, digest, resume_state is not None, added_exclusions or []
    )


async def execute(
    prepared: Prepared,
    *,
    on_progress: Callable[[Summary], None] | None = None,
    engine_factory: Callable[..., Engine] | None = None,
    on_would_revoke: Callable[[dict[str, Any]], None] | None = None,
) -> RunResult:
    """Phase 4: privileged users first, then the rest through the engine; the journal records all."""
    request, identity = prepared.request, prepared.identity
    journal = None
    if not request.dry_run:
        path = request.journal or default_journal_path(identity.tenant_id)
        journal = Journal(path, append=prepared.resumed)
        journal.header(
            tool=f"revoke-ops {__version__}",
            tenant=identity.tenant_id,
            clientId=identity.client_id,
            credential=identity.kind,
            operator=prepared.confirmation.operator or _local_user(),
            reason=request.reason,
            inputDigest=prepared.digest,
            spec=request.spec(),
            resumed=prepared.resumed,
            addedExclusions=prepared.added_exclusions,
            estimate=prepared.confirmation.targets,
        )
    would: list[dict[str, Any]] = []

    def collect(item: Send) -> None:
        row = {"id": item.id, "userPrincipalName": item.upn, "target": item.target, "privileged": item.privileged}
        if on_would_revoke is not None:
            on_would_revoke(row)  # streamed: memory stays flat for a million targets
        else:
            would.append(row)

    options = dataclasses.replace(request.engine, dry_run=request.dry_run, delegated=identity.delegated)
    factory = engine_factory or Engine
    engine = factory(prepared.session, journal, options, on_outcome=on_progress, on_would_revoke=collect)
    try:
        summary = await engine.run(stream(prepared.plan, prepared.session, prepared.caps))
    finally:
        if journal is not None:
            journal.write({"type": "end", "summary": engine.summary.to_json()})
            journal.close()
    warnings = list(prepared.confirmation.warnings)
    incomplete = _short_listing(prepared, summary)
    if incomplete:
        warnings.append(incomplete)
        log.warning("%s", incomplete)
    return RunResult(
        summary, journal.path if journal else None, prepared.confirmation.operator, would, warnings, incomplete
    )


#: A group or whole-tenant listing that ends below this share of Graph's $count is reported as
#: incomplete ($count is eventually consistent, so a few percent either way is normal).
SHORT_LISTING = 0.9


def _short_listing(prepared: Prepared, summary: Summary) -> str | None:
    """A remote listing that ended far below Graph's count: reported, never called success."""
    expected = prepared.confirmation.targets
    if prepared.confirmation.targets_basis != "estimate" or expected is None or prepared.resumed:
        return None
    seen = summary.total
    if seen >= expected * SHORT_LISTING:
        return None
    return (
        f"the listing ended after {seen} user(s) where Microsoft Graph counted about {expected}: it may have "
        "been cut short. Run `revoke-ops revoke --resume JOURNAL` (or the same command again) and compare"
    )


async def revoke(
    identity: Identity,
    request: RevokeRequest,
    *,
    confirm: Callable[[Confirmation], bool] | None = None,
    on_progress: Callable[[Summary], None] | None = None,
    engine_factory: Callable[..., Engine] | None = None,
    on_would_revoke: Callable[[dict[str, Any]], None] | None = None,
) -> RunResult:
    """Run one revocation (or a dry run) and return its result: :func:`prepare`, confirm, :func:`execute`.

    :param confirm: called after phase 2 with a :class:`Confirmation`; return False to stop before
        anything changes. None means "do not ask" (like ``--yes``). Asked only for bulk runs.
    :param on_would_revoke: in a dry run, receives each user that would be revoked as it is
        resolved (else they are collected in ``RunResult.would_revoke``).
    :raises InputError: invalid local input or an unresolvable exclusion (nothing changed).
    :raises AuthError: no token, or the token lacks what the run needs (nothing changed).
    :raises ServiceError: Graph kept failing before anything was sent (nothing changed).
    """
    resume_state = None
    added: list[str] = []
    if request.resume is not None:
        resume_state = read_journal(request.resume)
        if resume_state.header.get("tenant") != identity.tenant_id:
            raise InputError(
                f"the journal {request.resume} is for tenant {resume_state.header.get('tenant')}, "
                f"these credentials for {identity.tenant_id}"
            )
        request, added = resumed_request(request, resume_state)
    _check_sources(request)
    files = [TargetFile.open(name) for name in request.files]
    try:
        async with GraphSession(identity, timeout=request.timeout) as session:
            prepared = await prepare(
                identity, session, request, files, resume_state=resume_state, added_exclusions=added
            )
            if confirm is not None and prepared.needs_confirmation and not confirm(prepared.confirmation):
                raise InputError("stopped at the confirmation: nothing was changed")
            return await execute(
                prepared, on_progress=on_progress, engine_factory=engine_factory, on_would_revoke=on_would_revoke
            )
    finally:
        for handle in files:
            handle.cleanup()


def _check_sources(request: RevokeRequest) -> None:
    sources = sum([bool(request.users or request.files), bool(request.group), request.all_users])
    if sources == 0:
        raise InputError("no targets: give --user, --from-file, --group or --all-users")
    if sources > 1:
        raise InputError("give targets one way per run: --user/--from-file, or --group, or --all-users")
    if request.filter and not request.all_users:
        raise InputError("--filter goes with --all-users")


def _check_revoke_permission(identity: Identity, caps: Capabilities) -> None:
    if caps.revoke:
        return
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


def _target_kinds(request: RevokeRequest, files: list[TargetFile], caps: Capabilities) -> set[str]:
    """The forms targets arrive in: as given for local input; group members by id (and UPN when readable)."""
    if request.all_users:
        return {"id", "upn"}
    if request.group:
        return {"id", "upn"} if caps.read_users else {"id"}
    kinds = {parse_target(u, "--user").kind for u in request.users}
    for handle in files:
        for item in handle.targets():
            if not isinstance(item, InputError):
                kinds.add(item.kind)
            if len(kinds) == 2:
                return kinds
    return kinds


def _count_privileged(request: RevokeRequest, files: list[TargetFile], privileged: Privileged) -> int:
    """Privileged users among local targets (as named; without User.Read.All only those named by id)."""
    if not privileged.ids:
        return 0
    seen: set[str] = set()
    for user in request.users:
        key = parse_target(user, "--user").key
        if key in privileged:
            seen.add(key)
    for handle in files:
        for item in handle.targets():
            if isinstance(item, Target) and item.key in privileged:
                seen.add(item.key)
    return len(seen)


async def _operator(identity: Identity, session: GraphSession) -> tuple[str | None, str | None]:
    """The signed-in operator of a delegated run (display name, object id)."""
    if not identity.delegated:
        return None, None
    me = await session.read("/me?$select=id,userPrincipalName")
    if me.status == 200 and isinstance(me.body, dict):
        return str(me.body.get("userPrincipalName") or me.body.get("id")), str(me.body.get("id", "")).lower()
    return None, None


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
