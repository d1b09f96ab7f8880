"""Groups: a group, its direct members and its transitive members (nested groups followed)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from sandbox import catalog
from sandbox.graph import query
from sandbox.graph.base import Caller, Context, GraphError, Request, Response, not_found
from sandbox.graph.routing import Router
from sandbox.odata import ADVANCED_HELP
from sandbox.tenant import Group


def member_json(ctx: Context, object_id: str, caller: Caller, select: list[str] | None) -> dict[str, Any] | None:
    """A directory object as a member listing shows it (limited without a permission to read users)."""
    user = ctx.tenant.users_by_id.get(object_id)
    if user is not None:
        if not caller.has(catalog.READ_USERS):
            # Without a permission to read users, Graph returns members with limited information.
            return {"@odata.type": "#microsoft.graph.user", "id": user.id}
        return {"@odata.type": "#microsoft.graph.user", **user.to_graph(select)}
    group = ctx.tenant.groups.get(object_id)
    if group is not None:
        return {"@odata.type": "#microsoft.graph.group", **group.to_graph()}
    return None


def _get_group(ctx: Context, request: Request, caller: Caller, args: list[str]) -> Response:
    group = ctx.tenant.groups.get(args[0].lower())
    if group is None:
        raise not_found(args[0])
    return Response(200, group.to_graph())


def _members(ctx: Context, request: Request, caller: Caller, args: list[str]) -> Response:
    gid, rel, *cast = args
    group = ctx.tenant.groups.get(gid.lower())
    if group is None:
        raise not_found(gid)
    if cast and cast != ["microsoft.graph.user"]:
        raise GraphError(400, "BadRequest", f"Resource not found for the segment '{cast[0]}'.")
    if cast and rel == "transitiveMembers":
        wanted = query.advanced(request)
        if not (wanted.consistency_eventual and wanted.count):
            raise GraphError(
                400,
                "Request_UnsupportedQuery",
                f"The OData cast '{cast[0]}' on transitiveMembers is an advanced query: it needs the "
                f"ConsistencyLevel:eventual header and $count=true. {ADVANCED_HELP}",
            )
    if rel == "transitiveMembers":
        ids = (
            _closure(ctx, request, group)
            if ctx.settings.advanced_query_lag
            else ctx.tenant.transitive_members(group.id)
        )
    else:
        ids = [m for m in group.members if query.visible(ctx, request, group.added.get(m, float("-inf")))]
    users_only = bool(cast)
    select = query.select(request.query)
    start = query.skip(request.query)

    def items() -> Iterable[tuple[int, dict[str, Any]]]:
        for position in range(start, len(ids)):
            if users_only and ids[position] not in ctx.tenant.users_by_id:
                continue
            item = member_json(ctx, ids[position], caller, select)
            if item is not None:
                yield position, item

    def total() -> int:
        return sum(1 for i in ids if i in ctx.tenant.users_by_id) if users_only else len(ids)

    return query.page(ctx, request, items(), "directoryObjects", total)


def _closure(ctx: Context, request: Request, group: Group) -> list[str]:
    """Transitive members over the links this query can see (advanced queries lag behind changes)."""
    seen, order, queue = {group.id}, [], [group]
    while queue:
        current = queue.pop(0)
        for member in current.members:
            if member in seen or not query.visible(ctx, request, current.added.get(member, float("-inf"))):
                continue
            seen.add(member)
            order.append(member)
            if member in ctx.tenant.groups:
                queue.append(ctx.tenant.groups[member])
    return order


def register(router: Router) -> None:
    router.add("GET", "groups/{}", _get_group, catalog.READ_MEMBERS)
    router.add("GET", "groups/{}/members|transitiveMembers", _members, catalog.READ_MEMBERS)
    router.add("GET", "groups/{}/members|transitiveMembers/{}", _members, catalog.READ_MEMBERS)
