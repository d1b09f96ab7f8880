"""Users: revokeSignInSessions (by id, UPN or /me), reads with ``$filter``/``$select``, checkMemberGroups."""

from __future__ import annotations

import re
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any, ClassVar

from sandbox import activity, catalog
from sandbox.graph import query
from sandbox.graph.base import Caller, Context, GraphError, Request, Response, denied, not_found
from sandbox.graph.roles import may_act_on
from sandbox.graph.routing import Router
from sandbox.tenant import Revocation, User, iso


class UserView:
    """Lets $filter predicates read a User's Graph properties without building a dict per user."""

    __slots__ = ("user",)
    FIELDS: ClassVar[dict[str, str]] = {
        "id": "id",
        "userPrincipalName": "user_principal_name",
        "displayName": "display_name",
        "mail": "mail",
        "userType": "user_type",
        "accountEnabled": "account_enabled",
        "department": "department",
        "companyName": "company_name",
    }

    def __init__(self, user: User) -> None:
        self.user = user

    def get(self, name: str) -> Any:
        attr = self.FIELDS.get(name)
        return getattr(self.user, attr) if attr else None


def user_or_404(ctx: Context, key: str, caller: Caller, for_write: bool = False) -> User:
    user = ctx.tenant.user(key)
    if user is None:
        if for_write and not caller.has(catalog.REVOKE):
            raise denied()
        raise not_found(key)
    return user


def me(caller: Caller) -> User:
    if caller.user is None:
        raise GraphError(400, "BadRequest", "/me request is only valid with delegated authentication flow.")
    return caller.user


def revoke(ctx: Context, target: User, caller: Caller, request: Request) -> Response:
    if not caller.has(catalog.REVOKE):
        raise denied()
    if caller.user is not None and not may_act_on(ctx.tenant, caller.user, target):
        raise denied()
    now = datetime.now(UTC).replace(microsecond=0)
    target.sessions_valid_from = now
    ctx.tenant.revocations.append(
        Revocation(
            user_id=target.id,
            user_principal_name=target.user_principal_name,
            by_app=caller.app_id,
            by_user=caller.user.id if caller.user else None,
            at=iso(now),
            request_id=request.request_id,
            client_request_id=request.headers.get("client-request-id"),
        )
    )
    return Response(200, {"@odata.context": ctx.context_url("Edm.Boolean"), "value": True})


def user_json(ctx: Context, user: User, q: dict[str, str]) -> dict[str, Any]:
    return {"@odata.context": ctx.context_url("users/$entity"), **user.to_graph(query.select(q))}


_IN_FILTER = re.compile(r"(?:^|\(|and\s+\()\s*(?:id|userPrincipalName)\s+in\s+\(([^()]*)\)\)?\s*$", re.IGNORECASE)


def in_keys(text: str) -> list[str] | None:
    """The keys of a filter ending in ``id in (...)`` or ``userPrincipalName in (...)``, else None."""
    match = _IN_FILTER.search(text)
    if not match or " or " in text.lower():
        return None
    return [v.strip().strip("'").replace("''", "'") for v in match.group(1).split(",") if v.strip()]


def _activity(ctx: Context, request: Request, caller: Caller) -> activity.ActivityQuery:
    """signInActivity's own rules (licence, permission, filters, page size, read limit): sandbox.activity."""
    clock = ctx.identity.clock
    try:
        return activity.users_query(
            ctx.tenant, caller.app_id, caller.permissions, request.query, clock.now(), clock.scale, caller.user
        )
    except activity.RefusalError as err:
        raise GraphError(err.status, err.code, err.message, err.headers) from None


def list_users(ctx: Context, request: Request, caller: Caller, _: list[str]) -> Response:
    rules = _activity(ctx, request, caller)
    own = rules.involved and rules.own_filter  # a filter on signInActivity: its own parser
    predicate = rules.predicate if own else query.filter_predicate(request)
    search = query.search_predicate(request)
    select = query.select(request.query)
    start = query.skip(request.query)
    users = ctx.tenant.users
    keys = in_keys(request.query.get("$filter", ""))
    if keys is not None:
        # Like Graph's own indexes: `id in (...)` / `userPrincipalName in (...)` look users up by
        # key instead of scanning the directory (the predicate still decides).
        found = {u.id: u for u in (ctx.tenant.user(k) for k in keys) if u is not None}
        users = [found[i] for i in sorted(found)]

    def wanted(user: User) -> bool:
        view = UserView(user)
        return (
            (predicate is None or predicate(view))
            and (search is None or search(view))
            and query.visible(ctx, request, user.created)
        )

    def matches() -> Iterable[tuple[int, dict[str, Any]]]:
        for position in range(start, len(users)):
            user = users[position]
            if wanted(user):
                yield (
                    position,
                    {"@odata.type": "#microsoft.graph.user", **user.to_graph(select)}
                    if not select
                    else user.to_graph(select),
                )

    def total() -> int:
        return sum(1 for u in users if wanted(u))

    return query.page(ctx, request, matches(), "users", total)


def _revoke_user(ctx: Context, request: Request, caller: Caller, args: list[str]) -> Response:
    return revoke(ctx, user_or_404(ctx, args[0], caller, for_write=True), caller, request)


def _revoke_me(ctx: Context, request: Request, caller: Caller, _: list[str]) -> Response:
    return revoke(ctx, me(caller), caller, request)


def _get_me(ctx: Context, request: Request, caller: Caller, _: list[str]) -> Response:
    return Response(200, user_json(ctx, me(caller), request.query))


def _get_user(ctx: Context, request: Request, caller: Caller, args: list[str]) -> Response:
    _activity(ctx, request, caller)
    return Response(200, user_json(ctx, user_or_404(ctx, args[0], caller), request.query))


def _check_member_groups(ctx: Context, request: Request, caller: Caller, args: list[str]) -> Response:
    user = user_or_404(ctx, args[1], caller)
    wanted = [str(g).lower() for g in (request.body or {}).get("groupIds", [])]
    if len(wanted) > 20:
        raise GraphError(400, "Request_BadRequest", "At most 20 groupIds may be checked at once.")
    tenant = ctx.tenant
    value = [g for g in wanted if g in tenant.groups and user.id in tenant.transitive_members(g)]
    return Response(200, {"@odata.context": ctx.context_url("Collection(Edm.String)"), "value": value})


def register(router: Router) -> None:
    router.add("POST", "users/{}/revokeSignInSessions", _revoke_user)
    router.add("POST", "me/revokeSignInSessions", _revoke_me)
    router.add("GET", "me", _get_me)
    router.add("GET", "users", list_users, catalog.READ_USERS)
    router.add("GET", "users/{}", _get_user, catalog.READ_USERS)
    router.add("POST", "users|directoryObjects/{}/checkMemberGroups", _check_member_groups, catalog.READ_MEMBERS)
