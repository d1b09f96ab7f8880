"""Directory roles: activated roles and their members, RBAC role assignments, PIM eligibility.

Role assignments name users and role-assignable groups as principals (``$expand=principal`` adds
the object); eligibility instances list who may activate a role (Privileged Identity Management,
which needs Entra ID P2).

Who may act on whom (:func:`may_act_on`): a directory role assigned to a role-assignable group
applies to its members (groups-concept-overview: "the role is granted to all members of the
group"), and Graph's "Who can perform sensitive actions" / "Who can reset passwords" tables put a
member (or owner) of a role-assignable group in its own row, changeable only by Privileged
Authentication Administrator and Global Administrator: the privileged tier. Role-assignable groups
cannot nest other groups, so direct membership is the whole of it.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from sandbox import catalog
from sandbox.graph import query
from sandbox.graph.base import Caller, Context, GraphError, Request, Response, not_found
from sandbox.graph.groups import member_json
from sandbox.graph.routing import Router
from sandbox.tenant import Tenant, User

ELIGIBLE_SINCE = "2026-01-01T00:00:00Z"


def effective_roles(tenant: Tenant, user: User) -> list[str]:
    """The user's active directory roles: direct ones, then those of role-assignable groups it is in."""
    found = list(user.roles)
    for group in tenant.groups.values():
        if group.is_assignable_to_role and user.id in group.members:
            found += [r for r in group.roles if r not in found]
    return found


def target_tier(tenant: Tenant, user: User) -> str:
    """What the user is as a target of a sensitive action: "none", "limited" or "privileged" admin."""
    in_role_group = any(g.is_assignable_to_role and user.id in g.members for g in tenant.groups.values())
    tiers = {catalog.ROLES_BY_NAME[r].target_tier for r in effective_roles(tenant, user)}
    if in_role_group or "privileged" in tiers:
        return "privileged"
    return "limited" if tiers else "none"


def may_act_on(tenant: Tenant, operator: User, target: User) -> bool:
    """Whether a signed-in operator's roles (direct or through a group) cover ``target``'s tier."""
    if operator.id == target.id:
        return True
    power = max((catalog.ROLES_BY_NAME[r].power for r in effective_roles(tenant, operator)), default=0)
    return power >= catalog.TIER_RANK[target_tier(tenant, target)]


def _directory_roles(ctx: Context, request: Request, caller: Caller, _: list[str]) -> Response:
    roles = [
        {"id": ctx.tenant.role_object_ids[r.name], "displayName": r.name, "roleTemplateId": r.template_id}
        for r in catalog.DIRECTORY_ROLES
    ]
    return Response(200, {"@odata.context": ctx.context_url("directoryRoles"), "value": roles})


def _role_members(ctx: Context, request: Request, caller: Caller, args: list[str]) -> Response:
    rid = args[0]
    role = next((n for n, oid in ctx.tenant.role_object_ids.items() if oid == rid.lower()), None)
    if role is None:
        template = catalog.ROLES_BY_TEMPLATE.get(rid.lower())
        role = template.name if template else None
    if role is None:
        raise not_found(rid)
    holders = [pid for r, pid in ctx.tenant.role_principals() if r == role]
    start = query.skip(request.query)
    select = query.select(request.query)

    def items() -> Iterable[tuple[int, dict[str, Any]]]:
        for position in range(start, len(holders)):
            item = member_json(ctx, holders[position], caller, select)
            if item is not None:
                yield position, item

    return query.page(ctx, request, items(), "directoryObjects")


def _wanted(request: Request, kind: str) -> tuple[str | None, str | None]:
    """The ``roleDefinitionId eq`` / ``principalId eq`` filter Graph supports on these listings."""
    text = request.query.get("$filter")
    if not text:
        return None, None
    field_name, _sep, value = text.partition(" eq ")
    value = value.strip().strip("'").lower()
    if field_name.strip() == "roleDefinitionId":
        return value, None
    if field_name.strip() == "principalId":
        return None, value
    raise GraphError(400, "Request_UnsupportedQuery", f"Unsupported filter on {kind}: '{text}'.")


def _expand_principal(request: Request) -> bool:
    return "principal" in [e.strip() for e in request.query.get("$expand", "").split(",")]


def _rows(
    ctx: Context, request: Request, caller: Caller, found: Iterable[tuple[str, str]], kind: str, **extra: Any
) -> Response:
    wanted_role, wanted_principal = _wanted(request, kind)
    expand = _expand_principal(request)
    rows = []
    for role_name, principal in found:
        template = catalog.ROLES_BY_NAME[role_name].template_id
        if (wanted_role and wanted_role != template) or (wanted_principal and wanted_principal != principal):
            continue
        row: dict[str, Any] = {
            "id": f"{template}_{principal}",
            "principalId": principal,
            "roleDefinitionId": template,
            "directoryScopeId": "/",
            **extra,
        }
        if expand:
            row["principal"] = member_json(ctx, principal, caller, None)
        rows.append(row)
    start = query.skip(request.query)
    return query.page(ctx, request, ((i, rows[i]) for i in range(start, len(rows))), f"roleManagement/directory/{kind}")


def _role_assignments(ctx: Context, request: Request, caller: Caller, _: list[str]) -> Response:
    return _rows(ctx, request, caller, ctx.tenant.role_principals(), "roleAssignments")


def _eligibility_instances(ctx: Context, request: Request, caller: Caller, _: list[str]) -> Response:
    if not ctx.tenant.p2_licence:
        raise GraphError(
            403,
            "AadPremiumLicenseRequired",
            "The tenant needs a Microsoft Entra ID P2 or Microsoft Entra ID Governance license.",
        )
    found = ((role, user.id) for role, user in ctx.tenant.role_eligibilities())
    return _rows(
        ctx,
        request,
        caller,
        found,
        "roleEligibilityScheduleInstances",
        memberType="Direct",
        startDateTime=ELIGIBLE_SINCE,
        endDateTime=None,
    )


def register(router: Router) -> None:
    router.add("GET", "directoryRoles", _directory_roles, catalog.READ_ROLES)
    router.add("GET", "directoryRoles/{}/members", _role_members, catalog.READ_ROLES)
    router.add("GET", "roleManagement/directory/roleAssignments", _role_assignments, catalog.READ_ROLES)
    router.add(
        "GET",
        "roleManagement/directory/roleEligibilityScheduleInstances",
        _eligibility_instances,
        catalog.READ_ELIGIBILITY,
    )
