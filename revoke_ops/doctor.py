"""``revoke-ops doctor``: check the credentials end to end, and explain what is wrong."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from revoke_ops.activity import ACTIVITY_PROBE, activity_available, unavailable_reason
from revoke_ops.credentials import Identity, certificate_days_left, token_claims
from revoke_ops.errors import AuthError
from revoke_ops.graph import GraphSession, TransportError, UnreadableResponseError
from revoke_ops.resolve import Capabilities

__all__ = ["Check", "DoctorReport", "doctor"]

EXPIRY_WARNING_DAYS = 30


@dataclass
class Check:
    name: str
    status: str  # ok | warn | fail
    detail: str


@dataclass
class DoctorReport:
    checks: list[Check] = field(default_factory=list)

    def add(self, name: str, status: str, detail: str) -> None:
        self.checks.append(Check(name, status, detail))

    @property
    def exit_code(self) -> int:
        return 3 if any(c.status == "fail" for c in self.checks) else 0

    def to_json(self) -> list[dict[str, Any]]:
        return [c.__dict__ for c in self.checks]


async def doctor(
    identity: Identity, *, wait: float = 0.0, poll: float = 15.0, sleep: Callable[[float], Any] = asyncio.sleep
) -> DoctorReport:
    """Token, permissions against what the bundle says was granted, certificate expiry, Graph reachability.

    :param wait: seconds to keep re-checking when a granted permission is not yet in the token
        (consent replication after ``pulumi up``).
    """
    report = DoctorReport()
    days = certificate_days_left(identity)
    if days is not None:
        thumb = identity.certificate_thumbprint
        if days <= 0:
            report.add("certificate", "fail", f"certificate {thumb} expired {-days:.0f} days ago: rotate it")
        elif days < EXPIRY_WARNING_DAYS:
            report.add(
                "certificate",
                "warn",
                f"certificate {thumb} expires in {days:.0f} days: rotate it soon "
                "(docs/provisioning.md, rotation runbook)",
            )
        else:
            report.add("certificate", "ok", f"certificate {thumb} valid for {days:.0f} more days")
    expected: set[str] = set()
    if identity.bundle is not None:
        expected = set(
            identity.bundle.delegated_permissions if identity.delegated else identity.bundle.application_permissions
        )
    waited = 0.0
    while True:
        try:
            token = await identity.token()
        except AuthError as err:
            report.add("token", "fail", str(err))
            return report
        caps = Capabilities.from_claims(token_claims(token.token))
        missing = sorted(expected - caps.permissions)
        if not missing or waited >= wait:
            break
        await sleep(poll)
        waited += poll
    report.add("token", "ok", f"token acquired for {identity.description}")
    held = ", ".join(sorted(caps.permissions)) or "none"
    if missing:
        report.add(
            "permissions",
            "fail" if "User.RevokeSessions.All" in missing else "warn",
            f"granted but not yet in the token: {', '.join(missing)} (token has: {held}). The role is granted but not "
            "yet in the token; this can take minutes after `pulumi up`. Retry, or run `revoke-ops doctor --wait 600`.",
        )
    elif not caps.revoke:
        report.add(
            "permissions",
            "fail",
            f"the token does not carry User.RevokeSessions.All (has: {held}): "
            "no admin consent; run `pulumi up` for this tenant's stack",
        )
    else:
        report.add("permissions", "ok", f"token carries {held}")
        for feature, ok, permission in (
            ("exclusions by UPN, external users, verify, --all-users", caps.read_users, "User.Read.All"),
            ("--group", caps.read_members, "GroupMember.Read.All"),
            ("privileged users first", caps.read_roles, "RoleManagement.Read.Directory"),
        ):
            if not ok:
                report.add("features", "warn", f"{feature} need {permission}: add it to the stack's readPermissions")
    try:
        async with GraphSession(identity, timeout=30) as session:
            url = "/me?$select=id,userPrincipalName" if identity.delegated else "/users?$top=1&$select=id"
            if not identity.delegated and not caps.read_users:
                url = "/users/00000000-0000-0000-0000-000000000000?$select=id"
            response = await session.send("GET", url)
            activity = await session.send("GET", ACTIVITY_PROBE) if activity_available(caps.permissions) else None
    except (TransportError, UnreadableResponseError) as err:
        report.add("graph", "fail", f"Microsoft Graph at {identity.graph_endpoint} is not reachable: {err}")
        return report
    if response.status in (200, 403, 404):
        who = ""
        if identity.delegated and isinstance(response.body, dict):
            who = f"; signed in as {response.body.get('userPrincipalName')}"
        report.add("graph", "ok", f"Microsoft Graph at {identity.graph_endpoint} answered{who}")
    else:
        report.add(
            "graph",
            "fail",
            f"Microsoft Graph answered {response.status} {response.error_code}: {response.error_message}",
        )
    if activity is None:
        report.add(
            "activity",
            "warn",
            "whole-tenant runs go in listing order: revoking recently active users first needs AuditLog.Read.All "
            "(read access to sign-in logs; add it to readPermissions) and Microsoft Entra ID P1/P2",
        )
    elif activity.status == 200:
        report.add("activity", "ok", "sign-in activity readable: whole-tenant runs revoke recently active users first")
    else:
        why = unavailable_reason(activity.status, activity.error_code, activity.error_message)
        why = why or f"Graph answered {activity.status} {activity.error_code} to a sign-in activity read"
        report.add("activity", "warn", f"whole-tenant runs go in listing order: {why}")
    return report
