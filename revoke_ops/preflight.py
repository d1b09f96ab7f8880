"""The pre-flight checks of a revocation run (phase 2 of :mod:`revoke_ops.run`): nothing changes here.

Whether the token carries the revoke permission, the forms the targets come in, how many privileged
users are among local targets, who the operator is, and Graph's count of a group or tenant listing
(which is also where an operator's ``--filter`` is first put to Graph).
"""

from __future__ import annotations

import getpass
import socket

from revoke_ops.credentials import Identity
from revoke_ops.errors import AuthError, InputError
from revoke_ops.graph import ADVANCED_HEADERS, GraphSession
from revoke_ops.request import RevokeRequest
from revoke_ops.resolve import Capabilities, Privileged
from revoke_ops.targets import Target, TargetFile, parse_target

__all__ = [
    "check_revoke_permission",
    "count_privileged",
    "local_user",
    "remote_count",
    "signed_in_operator",
    "target_kinds",
]


def check_revoke_permission(identity: Identity, caps: Capabilities) -> None:
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


def target_kinds(request: RevokeRequest, files: list[TargetFile], caps: Capabilities) -> set[str]:
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


def count_privileged(request: RevokeRequest, files: list[TargetFile], privileged: Privileged) -> int:
    """Privileged users among local targets (without User.Read.All only those named by id); a user named
    by id and by UPN is counted once."""
    if not privileged.ids:
        return 0
    seen: set[str] = set()
    for user in request.users:
        key = parse_target(user, "--user").key
        if key in privileged:
            seen.add(privileged.id_of_upn.get(key, key))
    for handle in files:
        for item in handle.targets():
            if isinstance(item, Target) and item.key in privileged:
                seen.add(privileged.id_of_upn.get(item.key, item.key))
    return len(seen)


async def signed_in_operator(identity: Identity, session: GraphSession) -> tuple[str | None, str | None]:
    """The signed-in operator of a delegated run (display name, object id)."""
    if not identity.delegated:
        return None, None
    me = await session.read("/me?$select=id,userPrincipalName")
    if me.status == 200 and isinstance(me.body, dict):
        return str(me.body.get("userPrincipalName") or me.body.get("id")), str(me.body.get("id", "")).lower()
    return None, None


def local_user() -> str | None:
    try:
        return f"{getpass.getuser()}@{socket.gethostname()}"
    except (KeyError, OSError):
        return None


async def remote_count(session: GraphSession, request: RevokeRequest) -> int | None:
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
