"""``revoke-ops doctor``: check the credentials end to end, and explain what is wrong.

Certificate expiry, a token (with ``--wait``, a *fresh* token on every attempt until granted consent
has replicated into it), the permissions in it against what the bundle says was granted, Graph
reachability and, for a delegated sign-in, what the operator can really do: the delegated
permission reaches only the users the operator's own directory role covers, and sign-in is open to
the whole tenant unless the stack set an ``operatorsGroup`` (whose nested groups app assignment
does not follow).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any
from urllib.parse import quote

from azure.core.credentials import AccessToken

from revoke_ops.activity import activity_available, probe_activity
from revoke_ops.credentials import Identity, certificate_days_left, token_claims
from revoke_ops.errors import EXIT_AUTH, AuthError, GraphRequestError, ServiceError, TransientAuthError
from revoke_ops.graph import GraphSession, TransportError, UnreadableResponseError
from revoke_ops.redact import redact
from revoke_ops.resolve import Capabilities

__all__ = ["Check", "DoctorReport", "Status", "doctor"]

EXPIRY_WARNING_DAYS = 30
GROUP_TYPE = "#microsoft.graph.group"
MAX_MEMBER_PAGES = 50  # an operators group is small; a larger one is read this far
ROLE_REACH = (
    "with the delegated User.RevokeSessions.All, Graph lets you revoke only the users your own directory role "
    "covers: Helpdesk or Password Administrator for non-admins, User Administrator for limited admins, "
    "Privileged Authentication Administrator for privileged admins"
)


class Status(StrEnum):
    """The verdict of one check."""

    OK = "ok"
    WARN = "warn"
    FAIL = "fail"


@dataclass
class Check:
    name: str
    status: Status
    detail: str


@dataclass
class DoctorReport:
    checks: list[Check] = field(default_factory=list)

    def add(self, name: str, status: Status, detail: str) -> None:
        self.checks.append(Check(name, status, redact(detail)))

    @property
    def exit_code(self) -> int:
        """The authentication exit code when a check failed (the CLI's mapping), else 0."""
        return EXIT_AUTH if any(c.status is Status.FAIL for c in self.checks) else 0

    def to_json(self) -> list[dict[str, Any]]:
        return [{"name": c.name, "status": str(c.status), "detail": c.detail} for c in self.checks]


def _certificate(identity: Identity, report: DoctorReport) -> None:
    days = certificate_days_left(identity)
    if days is None:
        return
    thumb = identity.certificate_thumbprint
    if days <= 0:
        report.add("certificate", Status.FAIL, f"certificate {thumb} expired {-days:.0f} days ago: rotate it")
    elif days < EXPIRY_WARNING_DAYS:
        report.add(
            "certificate",
            Status.WARN,
            f"certificate {thumb} expires in {days:.0f} days: rotate it soon (docs/provisioning.md, rotation runbook)",
        )
    else:
        report.add("certificate", Status.OK, f"certificate {thumb} valid for {days:.0f} more days")


async def _token_until_granted(
    identity: Identity,
    expected: set[str],
    report: DoctorReport,
    *,
    wait: float,
    poll: float,
    max_poll: float,
    sleep: Callable[[float], Any],
) -> tuple[AccessToken, Capabilities, list[str]] | None:
    """A token carrying ``expected``, asking for a fresh one each time until ``wait`` seconds passed."""
    waited, delay, attempt = 0.0, poll, 0
    while True:
        try:
            # The first token may come from the credential's cache; later ones must not, or newly
            # replicated consent is never seen (a delegated sign-in renews by its refresh token).
            token = await (identity.token() if attempt == 0 else identity.fresh_token())
            failure: ServiceError | None = None
        except TransientAuthError as err:
            failure = err
        except AuthError as err:
            report.add("token", Status.FAIL, str(err))
            return None
        attempt += 1
        if failure is None:
            caps = Capabilities.from_claims(token_claims(token.token))
            missing = sorted(expected - caps.permissions)
            if not missing or waited >= wait:
                return token, caps, missing
        elif waited >= wait:
            report.add("token", Status.FAIL, str(failure))
            return None
        step = min(delay, wait - waited)
        await sleep(step)
        waited += step
        delay = min(delay * 2, max_poll)


async def doctor(
    identity: Identity,
    *,
    wait: float = 0.0,
    poll: float = 2.0,
    max_poll: float = 15.0,
    sleep: Callable[[float], Any] = asyncio.sleep,
) -> DoctorReport:
    """Token, permissions against what the bundle says was granted, certificate expiry, Graph reachability.

    :param wait: seconds to keep re-checking, with a fresh token each time, while a granted
        permission is not yet in the token (consent replication after ``pulumi up``) or the
        identity platform fails transiently.
    :param poll: the first pause between attempts (doubling up to ``max_poll``).
    """
    report = DoctorReport()
    _certificate(identity, report)
    bundle = identity.bundle
    expected = {"User.RevokeSessions.All"}
    if bundle is not None:
        expected = set(bundle.delegated_permissions if identity.delegated else bundle.application_permissions)
    got = await _token_until_granted(identity, expected, report, wait=wait, poll=poll, max_poll=max_poll, sleep=sleep)
    if got is None:
        return report
    _token, caps, missing = got
    report.add("token", Status.OK, f"token acquired for {identity.description}")
    held = ", ".join(sorted(caps.permissions)) or "none"
    if missing:
        report.add(
            "permissions",
            Status.FAIL if "User.RevokeSessions.All" in missing else Status.WARN,
            f"granted but not yet in the token: {', '.join(missing)} (token has: {held}). The role is granted but not "
            "yet in the token; this can take minutes after `pulumi up`. Retry, or run `revoke-ops doctor --wait 600`.",
        )
    elif not caps.revoke:
        report.add(
            "permissions",
            Status.FAIL,
            f"the token does not carry User.RevokeSessions.All (has: {held}): "
            "no admin consent; run `pulumi up` for this tenant's stack",
        )
    else:
        report.add("permissions", Status.OK, f"token carries {held}")
        for feature, ok, permission in (
            ("exclusions by UPN, external users, verify, --all-users", caps.read_users, "User.Read.All"),
            ("--group", caps.read_members, "GroupMember.Read.All"),
            ("privileged users first", caps.read_roles, "RoleManagement.Read.Directory"),
        ):
            if not ok:
                report.add(
                    "features", Status.WARN, f"{feature}: needs {permission}; add it to the stack's readPermissions"
                )
    try:
        async with GraphSession(identity, timeout=30) as session:
            url = "/me?$select=id,userPrincipalName" if identity.delegated else "/users?$top=1&$select=id"
            if not identity.delegated and not caps.read_users:
                url = "/users/00000000-0000-0000-0000-000000000000?$select=id"
            response = await session.send("GET", url)
            if response.status not in (200, 403, 404):
                report.add(
                    "graph",
                    Status.FAIL,
                    f"Microsoft Graph answered {response.status} {response.error_code}: {response.error_message}",
                )
                return report
            who = ""
            if identity.delegated and isinstance(response.body, dict):
                who = f"; signed in as {response.body.get('userPrincipalName')}"
            report.add("graph", Status.OK, f"Microsoft Graph at {identity.graph_endpoint} answered{who}")
            await _activity_check(session, caps, report)
            if identity.delegated and response.status == 200 and isinstance(response.body, dict):
                await _operator_checks(session, identity, caps, str(response.body.get("id", "")), report)
    except (TransportError, UnreadableResponseError, ServiceError) as err:
        report.add("graph", Status.FAIL, f"Microsoft Graph at {identity.graph_endpoint} is not reachable: {err}")
    return report


async def _activity_check(session: GraphSession, caps: Capabilities, report: DoctorReport) -> None:
    """Whether whole-tenant runs can revoke recently active users first (docs/activity-ordering.md)."""
    if not activity_available(caps.permissions):
        report.add(
            "activity",
            Status.WARN,
            "whole-tenant runs go in listing order: revoking recently active users first needs AuditLog.Read.All "
            "(read access to sign-in logs; add it to readPermissions) and Microsoft Entra ID P1/P2",
        )
        return
    why = await probe_activity(session, datetime.now(UTC).replace(microsecond=0))
    if why is None:
        report.add(
            "activity", Status.OK, "sign-in activity readable: whole-tenant runs revoke recently active users first"
        )
        return
    report.add("activity", Status.WARN, f"whole-tenant runs go in listing order: {why}")


async def _operator_checks(
    session: GraphSession, identity: Identity, caps: Capabilities, operator_id: str, report: DoctorReport
) -> None:
    """What a signed-in operator can really do, and who else can sign in."""
    if caps.read_roles and operator_id:
        url = f"/roleManagement/directory/roleAssignments?$filter=principalId eq '{operator_id}'&$select=id"
        roles = await session.read(url)
        if roles.status == 200 and isinstance(roles.body, dict) and isinstance(roles.body.get("value"), list):
            count = len(roles.body["value"])
            if count == 0:
                report.add(
                    "operator role",
                    Status.WARN,
                    f"you hold no directory role (directly assigned): {ROLE_REACH}. Without one, Graph refuses "
                    "every user but yourself (403 Authorization_RequestDenied); `revoke-ops me` still works",
                )
            else:
                report.add(
                    "operator role",
                    Status.OK,
                    f"you hold {count} directory role assignment(s); {ROLE_REACH}",
                )
        else:
            report.add(
                "operator role", Status.WARN, f"your directory roles could not be read ({roles.status}); {ROLE_REACH}"
            )
    else:
        report.add(
            "operator role",
            Status.WARN,
            f"your directory roles cannot be checked without RoleManagement.Read.Directory; {ROLE_REACH}",
        )
    bundle = identity.bundle
    if bundle is None or bundle.permission_mode == "application":
        return
    if not bundle.operators_group_known:
        report.add(
            "operators group",
            Status.WARN,
            "the bundle does not say whether an operatorsGroup restricts sign-in (exported by an older program): "
            "without one, every user in the tenant can sign in and obtain the delegated scopes",
        )
        return
    group = bundle.operators_group
    if group is None:
        report.add(
            "operators group",
            Status.WARN,
            f"the stack has no operatorsGroup: with permissionMode {bundle.permission_mode}, every user in the tenant "
            "can sign in to this app and obtain the delegated scopes; set revoke-sessions:operatorsGroup and "
            "`pulumi up` (assigning a group needs Entra ID P1 or P2)",
        )
        return
    nested: list[dict[str, Any]] = []
    url = f"/groups/{quote(group, safe='')}/members?$select=id,displayName"
    try:
        read = 0
        async for page in session.pages(url):
            nested += [m for m in page if isinstance(m, dict) and m.get("@odata.type") == GROUP_TYPE]
            read += 1
            if read >= MAX_MEMBER_PAGES:
                break
    except GraphRequestError as err:
        report.add(
            "operators group",
            Status.WARN,
            f"the operators group {group} could not be read ({err.status} {err.code or ''}); "
            "nested groups in it cannot be checked (needs GroupMember.Read.All)",
        )
        return
    if nested:
        names = ", ".join(f"{m.get('displayName') or ''} ({m.get('id')})".strip() for m in nested)
        report.add(
            "operators group",
            Status.WARN,
            f"the operators group {group} has nested groups: {names}. App assignment does not follow nested "
            "groups: their members cannot sign in. Add those operators to the group directly",
        )
    else:
        report.add("operators group", Status.OK, f"sign-in is limited to the direct members of group {group}")
