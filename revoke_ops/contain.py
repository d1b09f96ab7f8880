"""Containment: block sign-in (``accountEnabled`` false), then revoke sessions — and undo it.

A contain run is a revocation run (:mod:`revoke_ops.run`: the same targets, exclusions, dry run,
confirmation, journal, resume and pacing) whose engine, for every batch of users, first reads each
account's state (journaled: the before-state ``--undo`` relies on), then sends a batch of
``PATCH /users/{id}`` ``{"accountEnabled": false}`` and only when that batch is answered the batch
of ``revokeSignInSessions``: separate batches, because Graph may run a batch's items in any order
and ``dependsOn`` would fail the revocation (424) when the disable fails. Both phases take their
writes from the one pacer: two writes per user.

Never disabled, whatever the input: break-glass exclusions, the signed-in operator of a delegated
run, and the last enabled Global Administrator. A user whose disable fails is still revoked and
reported as not contained (exit 1).

The last Global Administrator, per mode (Graph "Update user" and "Who can perform sensitive
actions": disabling a user who holds an admin role takes, delegated, Directory.AccessAsUser.All and
a Privileged Authentication Administrator or Global Administrator signed in; app-only, an admin role
held by the app itself, which this product never grants):

- a token that cannot disable admins (app-only; delegated without Directory.AccessAsUser.All):
  Graph refuses every admin-role holder (``forbidden``, still revoked), so no Global Administrator
  is ever disabled; the run says so when it cannot read the roles.
- a delegated token with Directory.AccessAsUser.All: the enabled Global Administrators must be
  readable (RoleManagement.Read.Directory), else the run refuses before changing anything (exit 3):
  it would otherwise disable admins without knowing which one is the last.
- when they are read, the one that would be the last is refused (``last_global_admin``, still
  revoked, exit 1) and the others proceed: an incident responder needs the other accounts contained
  now, not after a re-run, and the refused one has lost its sessions all the same.

The engine (before-state read, disable batch, revoke batch, a dry run's predictions) and the steps
are in :mod:`revoke_ops.contain_engine`; undo and the CLI rendering in undo.py and contain_cli.py.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from revoke_ops.contain_engine import (
    CHOSEN,
    CONTAINED,
    ContainEngine,
    ContainSummary,
    Step,
    StepRecord,
    TwoWritePacer,
    patch_accounts,
)
from revoke_ops.credentials import Identity, token_claims
from revoke_ops.directory import Capabilities
from revoke_ops.engine import Engine, Summary
from revoke_ops.errors import AuthError
from revoke_ops.graph import GraphSession
from revoke_ops.journal import FINAL_DONE, JournalState
from revoke_ops.request import RevokeRequest
from revoke_ops.run import Confirmation, Prepared, RunResult, run_request

__all__ = [
    "CHOSEN",
    "CONTAINED",
    "DISABLE_PERMISSIONS",
    "GLOBAL_ADMINISTRATOR",
    "ContainConfirmation",
    "ContainEngine",
    "ContainRequest",
    "ContainResult",
    "Step",
    "StepRecord",
    "contain",
    "patch_accounts",
]

log = logging.getLogger(__name__)

#: What lets a token update accountEnabled (least privileged first; Graph "Update user").
DISABLE_PERMISSIONS = frozenset({"User.EnableDisableAccount.All", "User.ReadWrite.All", "Directory.ReadWrite.All"})
GLOBAL_ADMINISTRATOR = "62e90394-69f5-4237-9190-012177145e10"  # the role's template id, the same in every tenant
ACCESS_AS_USER = "Directory.AccessAsUser.All"


@dataclass
class ContainRequest(RevokeRequest):
    """A contain run: a :class:`RevokeRequest` whose users are also blocked from signing in first."""

    def spec(self) -> dict[str, Any]:
        return {**super().spec(), "command": "contain"}


@dataclass(frozen=True)
class ContainConfirmation(Confirmation):
    """The question of a contain run: it blocks sign-in too, two writes per user."""

    action: str = "Block sign-in for and revoke the sessions of"
    resumed_action: str = "Resume blocking sign-in for and revoking the sessions of"
    writes_per_user: int = 2


@dataclass
class ContainResult(RunResult):
    contain: ContainSummary = field(default_factory=ContainSummary)

    @property
    def exit_code(self) -> int:
        return 1 if self.contain.not_blocked else super().exit_code


async def _enabled_global_admins(session: GraphSession, caps: Capabilities) -> set[str] | None:
    """The enabled Global Administrators' ids, or None when they cannot be read.

    A role-assignable group holding the role makes its members Global Administrators: its members
    are read too (None when they cannot be).
    """
    if not caps.read_roles:
        return None
    roles = await session.read("/directoryRoles?$select=id,roleTemplateId", page=True)
    if roles.status != 200:
        return None
    role_id = next(
        (r.get("id") for r in roles.body.get("value", []) if r.get("roleTemplateId") == GLOBAL_ADMINISTRATOR), None
    )
    if role_id is None:
        return None
    members = await session.read(f"/directoryRoles/{role_id}/members?$select=id,accountEnabled", page=True)
    if members.status != 200 or members.body.get("@odata.nextLink"):
        return None  # more than a page of Global Administrators: never the last one
    found: set[str] = set()
    for member in members.body.get("value", []):
        kind = str(member.get("@odata.type", "user"))
        if "group" in kind and member.get("id"):
            inner = await session.read(f"/groups/{member['id']}/members?$select=id,accountEnabled", page=True)
            if inner.status != 200 or inner.body.get("@odata.nextLink"):
                return None
            found |= _enabled_users(inner.body.get("value", []))
        else:
            found |= _enabled_users([member])
    return found


def _enabled_users(members: list[dict[str, Any]]) -> set[str]:
    return {
        str(m["id"]).lower()
        for m in members
        if m.get("id") and m.get("accountEnabled") is not False and "user" in str(m.get("@odata.type", "user"))
    }


def _operator_id(prepared: Prepared, claims: dict[str, Any]) -> str | None:
    """The signed-in operator of a delegated run: from ``/me``, else the token's ``oid`` (``/me`` may
    have gone unanswered, which only reorders a revocation but would let contain disable the operator)."""
    if not claims.get("scp"):
        return None
    operator_id = prepared.plan.operator_id or str(claims.get("oid") or "").lower() or None
    if operator_id is None:
        raise AuthError(
            "the signed-in operator cannot be identified (Graph did not answer /me and the token has no oid), "
            "and `contain` never disables the operator: nothing was changed; try again",
            code="UnknownOperator",
        )
    return operator_id


def _earlier_not_contained(state: JournalState) -> list[dict[str, Any]]:
    """The users an interrupted part of this run revoked but could not block (a resume skips them)."""
    rows = []
    for uid, line in state.disables.items():
        outcome = state.outcomes.get(uid) or {}
        if line.get("step") in CONTAINED | CHOSEN or outcome.get("outcome") not in FINAL_DONE:
            continue  # contained, or revoked again by this part (which journals its own step)
        row = {k: v for k, v in line.items() if k not in ("type", "at", "hash")}
        rows.append({**row, "earlierPart": True})
    return rows


def _may_disable_admins(claims: dict[str, Any], caps: Capabilities) -> bool:
    """Whether Graph would let this token disable a user who holds an admin role.

    Delegated: with Directory.AccessAsUser.All (the operator's own role then decides). App-only: only
    with an admin role held by the app, which this product never grants (see the module's doc).
    """
    return bool(claims.get("scp")) and ACCESS_AS_USER in caps.permissions


def _check_disable_permission(caps: Capabilities, identity: Identity) -> None:
    if caps.permissions & DISABLE_PERMISSIONS and not caps.read_users:
        # Graph's pair is User.EnableDisableAccount.All *with* User.Read.All: without it every disable is
        # refused (403), which the run would otherwise blame on each user's admin role, after revoking.
        raise AuthError(
            "the token carries User.EnableDisableAccount.All but not User.Read.All, and Graph needs both to block "
            "sign-in: add User.Read.All to containmentPermissions (or readPermissions) and run `pulumi up`. "
            f"Nothing was changed. Credentials: {identity.description}",
            code="Authorization_RequestDenied",
        )
    if caps.permissions & DISABLE_PERMISSIONS:
        return
    raise AuthError(
        "the token does not carry User.EnableDisableAccount.All, which `contain` needs to block sign-in: add "
        "containmentPermissions: [User.EnableDisableAccount.All, User.Read.All] to the stack and run `pulumi up` "
        f"(consent takes a few minutes to replicate). Credentials: {identity.description}",
        code="Authorization_RequestDenied",
    )


async def contain(
    identity: Identity,
    request: ContainRequest,
    *,
    confirm: Callable[[Confirmation], bool] | None = None,
    on_progress: Callable[[Summary], None] | None = None,
    on_would_revoke: Callable[[dict[str, Any]], None] | None = None,
    on_settled: Callable[[dict[str, Any]], None] | None = None,
) -> ContainResult:
    """Block sign-in for, then revoke the sessions of, the request's users (or a dry run).

    Like :func:`revoke_ops.run.revoke` (same phases, confirmation, journal and resume); the result
    adds each user's disable step. Exit code 1 when any user was not contained.

    :raises AuthError: the token cannot update accountEnabled (nothing changed).
    """
    engines: list[ContainEngine] = []

    async def setup(prepared: Prepared) -> Callable[..., Engine]:
        token = await prepared.identity.token()
        claims = token_claims(token.token)
        caps = Capabilities.from_claims(claims)
        if not prepared.request.dry_run:
            _check_disable_permission(caps, prepared.identity)
        admins = await _enabled_global_admins(prepared.session, caps)
        warnings = list(prepared.confirmation.warnings)
        if admins is None and _may_disable_admins(claims, caps) and not prepared.request.dry_run:
            raise AuthError(
                "this token carries Directory.AccessAsUser.All, with which Graph lets a sufficiently privileged "
                "operator disable administrators, but the Global Administrators cannot be read "
                "(RoleManagement.Read.Directory), so `contain` could disable the last enabled one: add "
                "RoleManagement.Read.Directory to the stack's readPermissions, or sign in without "
                f"Directory.AccessAsUser.All (admins are then refused by Graph). Nothing was changed. Credentials: "
                f"{prepared.identity.description}",
                code="Authorization_RequestDenied",
            )
        if admins is None:
            warnings.append(
                "the Global Administrators cannot be read (RoleManagement.Read.Directory), but this token cannot "
                "disable any user holding an admin role (Graph refuses it without an admin role held by the app, "
                "or Directory.AccessAsUser.All delegated): admins are reported forbidden and still revoked, so no "
                "Global Administrator is disabled"
            )
        conf = prepared.confirmation
        writes = ContainConfirmation.writes_per_user
        eta = None if conf.targets is None else prepared.request.engine.seconds_for(writes * conf.targets)
        own = {"action", "resumed_action", "writes_per_user"}  # contain's wording, not revoke's
        fields = {f.name: getattr(conf, f.name) for f in dataclasses.fields(conf) if f.name not in own}
        prepared.confirmation = ContainConfirmation(**{**fields, "eta_seconds": eta, "warnings": tuple(warnings)})

        earlier = _earlier_not_contained(prepared.resume_state) if prepared.resume_state else []
        operator_id = _operator_id(prepared, claims)
        disabled_earlier: frozenset[str] = frozenset()
        if prepared.resume_state is not None:
            state = prepared.resume_state
            done = {i for i, line in state.disables.items() if line.get("step") == Step.DISABLED and line.get("before")}
            disabled_earlier = frozenset(done | state.attempted_enabled)

        def factory(*args: Any, **kwargs: Any) -> Engine:
            engine = ContainEngine(
                *args,
                exclusions=prepared.plan.exclusions,
                operator_id=operator_id,
                disabled_earlier=disabled_earlier,
                global_admins=admins,
                may_disable_admins=_may_disable_admins(claims, caps),
                **kwargs,
            )
            engine.pacer = TwoWritePacer(engine.clock, engine.options.write_burst, engine.options.write_rate)
            engine.summary.pacer = engine.pacer
            for row in earlier:  # a resume skips them: still not contained, and the exit code says so
                engine.contain.steps[row["step"]] += 1
                engine.contain.not_contained.append(row)
            engines.append(engine)
            return engine

        return factory

    result = await run_request(
        identity,
        request,
        confirm=confirm,
        on_progress=on_progress,
        on_would_revoke=on_would_revoke,
        on_settled=on_settled,
        setup=setup,
    )
    summary = engines[0].contain if engines else ContainSummary()
    fields = {f.name: getattr(result, f.name) for f in dataclasses.fields(result)}
    return ContainResult(**fields, contain=summary)
