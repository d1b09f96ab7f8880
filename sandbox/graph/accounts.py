"""Blocking sign-in: ``PATCH /users/{id}`` with ``accountEnabled`` under Graph's rules.

Sources (docs/sandbox-conformance.md has the rows):

- Microsoft Graph "Update user": ``accountEnabled`` is a sensitive property; User.EnableDisableAccount.All
  with User.Read.All is the least-privileged combination (User.ReadWrite.All, Directory.ReadWrite.All
  also allow it). 204 No Content on success.
- The same page, "Who can perform sensitive actions": updating a user who holds an admin role needs,
  delegated, Directory.AccessAsUser.All and a signed-in user whose role covers the target's; app-only,
  an admin role held by the app itself (the sandbox never grants apps directory roles): 403
  ``Authorization_RequestDenied``.
- Users synchronised from on-premises AD (``onPremisesSyncEnabled``): 400 ``Request_BadRequest``
  "Unable to update the specified properties for on-premises mastered Directory Sync objects or
  objects currently undergoing migration." (microsoft-graph-docs#7301, #18038).

Only ``accountEnabled`` is emulated; a body with other properties is refused (400), naming them.
"""

from __future__ import annotations

from datetime import UTC, datetime

from sandbox import catalog
from sandbox.graph.base import Caller, Context, GraphError, Request, Response, denied
from sandbox.graph.roles import may_act_on, target_tier
from sandbox.graph.routing import Router
from sandbox.graph.users import user_or_404
from sandbox.tenant import AccountChange, User, iso

ON_PREMISES_MESSAGE = (
    "Unable to update the specified properties for on-premises mastered Directory Sync objects or objects "
    "currently undergoing migration."
)
ACCESS_AS_USER = "Directory.AccessAsUser.All"


def may_change_account(ctx: Context, caller: Caller, target: User) -> bool:
    """Graph's privileged-target rule for ``accountEnabled`` (beyond the permission itself).

    A target's admin tier counts roles held through role-assignable groups (and membership of one
    alone makes it privileged): :mod:`sandbox.graph.roles`.
    """
    if target_tier(ctx.tenant, target) == "none":
        return True
    if caller.user is None:
        return False  # app-only: only an admin role held by the app would do; never granted here
    return ACCESS_AS_USER in caller.permissions and may_act_on(ctx.tenant, caller.user, target)


def _patch_user(ctx: Context, request: Request, caller: Caller, args: list[str]) -> Response:
    body = request.body
    if not isinstance(body, dict) or not body:
        raise GraphError(400, "BadRequest", "Empty Payload. JSON content expected.")
    others = sorted(k for k in body if k != "accountEnabled")
    if others:
        raise GraphError(
            400, "Request_BadRequest", f"The sandbox emulates updates of accountEnabled only (got {', '.join(others)})."
        )
    value = body["accountEnabled"]
    if not isinstance(value, bool):
        raise GraphError(
            400, "Request_BadRequest", "Invalid value specified for property 'accountEnabled' of resource 'User'."
        )
    if not caller.has(catalog.ENABLE_DISABLE) or not caller.has(catalog.READ_USERS - {"User.ReadBasic.All"}):
        raise denied()
    target = user_or_404(ctx, args[0], caller)
    if not may_change_account(ctx, caller, target):
        raise denied()
    if target.on_premises_sync_enabled:
        raise GraphError(400, "Request_BadRequest", ON_PREMISES_MESSAGE)
    target.account_enabled = value
    ctx.tenant.account_changes.append(
        AccountChange(
            user_id=target.id,
            user_principal_name=target.user_principal_name,
            account_enabled=value,
            by_app=caller.app_id,
            by_user=caller.user.id if caller.user else None,
            at=iso(datetime.now(UTC).replace(microsecond=0)),
            request_id=request.request_id,
            client_request_id=request.headers.get("client-request-id"),
        )
    )
    return Response(204)


def register(router: Router) -> None:
    router.add("PATCH", "users/{}", _patch_user)
