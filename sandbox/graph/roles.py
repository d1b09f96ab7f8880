"""Directory roles: activated roles and their members, and RBAC role assignments."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from sandbox import catalog
from sandbox.graph import query
from sandbox.graph.base import Caller, Context, GraphError, Request, Response, not_found
from sandbox.graph.groups import member_json
from sandbox.graph.routing import Router


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
    holders = [u.id for r, u in ctx.tenant.role_holders() if r == role]
    start = query.skip(request.query)
    select = query.select(request.query)

    def items() -> Iterable[tuple[int, dict[str, Any]]]:
        for position in range(start, len(holders)):
            item = member_json(ctx, holders[position], caller, select)
            if item is not None:
                yield position, item

    return query.page(ctx, request, items(), "directoryObjects")


def _role_assignments(ctx: Context, request: Request, caller: Caller, _: list[str]) -> Response:
    wanted_role = wanted_principal = None
    text = request.query.get("$filter")
    if text:
        field_name, _sep, value = text.partition(" eq ")
        value = value.strip().strip("'")
        if field_name.strip() == "roleDefinitionId":
            wanted_role = value.lower()
        elif field_name.strip() == "principalId":
            wanted_principal = value.lower()
        else:
            raise GraphError(400, "Request_UnsupportedQuery", f"Unsupported filter on roleAssignments: '{text}'.")
    rows = []
    for role_name, user in ctx.tenant.role_holders():
        template = catalog.ROLES_BY_NAME[role_name].template_id
        if wanted_role and wanted_role != template:
            continue
        if wanted_principal and wanted_principal != user.id:
            continue
        rows.append(
            {
                "id": f"{template}_{user.id}",
                "principalId": user.id,
                "roleDefinitionId": template,
                "directoryScopeId": "/",
            }
        )
    start = query.skip(request.query)
    return query.page(
        ctx, request, ((i, rows[i]) for i in range(start, len(rows))), "roleManagement/directory/roleAssignments"
    )


def register(router: Router) -> None:
    router.add("GET", "directoryRoles", _directory_roles, catalog.READ_ROLES)
    router.add("GET", "directoryRoles/{}/members", _role_members, catalog.READ_ROLES)
    router.add("GET", "roleManagement/directory/roleAssignments", _role_assignments, catalog.READ_ROLES)
