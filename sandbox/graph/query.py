"""OData query options as Graph reads them: ``$select``, ``$filter``, ``$top``, paging, ``$count``."""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Callable, Iterable
from typing import Any
from urllib.parse import parse_qsl, quote, urlencode

from sandbox.graph.base import Context, GraphError, Request, Response
from sandbox.odata import Advanced, UnsupportedQueryError, parse_filter

MAX_TOP = 999
DEFAULT_TOP = 100


def parse_query(text: str) -> dict[str, str]:
    return dict(parse_qsl(text, keep_blank_values=True))


def select(query: dict[str, str]) -> list[str] | None:
    text = query.get("$select")
    return [s.strip() for s in text.split(",") if s.strip()] if text else None


def advanced(request: Request) -> Advanced:
    """The advanced query parameters (``ConsistencyLevel: eventual``, ``$count=true``) the request has."""
    return Advanced(
        request.headers.get("consistencylevel", "").lower() == "eventual",
        request.query.get("$count", "").lower() == "true",
    )


def require_advanced(request: Request, operator: str) -> None:
    """Refuse, as Graph does, an advanced-only construct sent without the advanced query parameters."""
    try:
        advanced(request).require(operator)
    except UnsupportedQueryError as err:
        raise GraphError(400, "Request_UnsupportedQuery", str(err)) from None


def filter_predicate(request: Request, fields: set[str] | None = None) -> Callable[[Any], bool] | None:
    text = request.query.get("$filter")
    if not text:
        return None
    try:
        return parse_filter(text, fields, advanced(request))
    except UnsupportedQueryError as err:
        raise GraphError(400, "Request_UnsupportedQuery", str(err)) from None


_SEARCH = re.compile(r'^"(displayName|userPrincipalName|mail):([^"]*)"$')


def search_predicate(request: Request) -> Callable[[Any], bool] | None:
    """``$search="property:words"`` (ConsistencyLevel: eventual needed; ``$count`` is not)."""
    text = request.query.get("$search")
    if text is None:
        return None
    if not advanced(request).consistency_eventual:
        raise GraphError(
            400,
            "Request_UnsupportedQuery",
            "Request with $search query parameter only works through MSGraph with a special request header: "
            "'ConsistencyLevel: eventual'",
        )
    match = _SEARCH.match(text.strip())
    if not match:
        raise GraphError(400, "Request_UnsupportedQuery", f"Syntax error: invalid $search clause '{text}'.")
    field, words = match.group(1), match.group(2).lower()
    return lambda o: words in str(o.get(field) or "").lower()


def visible(ctx: Context, request: Request, created: float) -> bool:
    """Whether an object created (or a membership added) at ``created`` shows in this query's answer.

    Advanced queries read a separately indexed store that is eventually consistent: with
    ``advanced_query_lag`` set, what changed less than that long ago is not in their answers yet.
    """
    lag = ctx.settings.advanced_query_lag
    if not lag or not advanced(request).consistency_eventual:
        return True
    return created <= ctx.identity.clock.now() - lag


def top(query: dict[str, str]) -> int:
    text = query.get("$top")
    if text is None:
        return DEFAULT_TOP
    if not text.isdigit() or not 1 <= int(text) <= MAX_TOP:
        raise GraphError(
            400,
            "Request_BadRequest",
            f"Invalid page size specified: '{text}'. Must be between 1 and {MAX_TOP} inclusive.",
        )
    return int(text)


def _token(position: int) -> str:
    return base64.urlsafe_b64encode(json.dumps({"p": position}).encode()).decode().rstrip("=")


def skip(query: dict[str, str]) -> int:
    token = query.get("$skiptoken")
    if not token:
        return 0
    try:
        return int(json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))["p"])
    except (ValueError, KeyError, TypeError):
        raise GraphError(
            400, "Request_BadRequest", "The specified page token value has expired or is invalid."
        ) from None


def page(
    ctx: Context,
    request: Request,
    items: Iterable[tuple[int, dict[str, Any]]],
    context: str,
    total: Callable[[], int] | None = None,
) -> Response:
    """One page of ``items`` (position, JSON) with ``@odata.nextLink`` and, when asked, ``@odata.count``."""
    size = top(request.query)
    found: list[dict[str, Any]] = []
    next_position: int | None = None
    for position, item in items:
        if len(found) == size:
            next_position = position
            break
        found.append(item)
    body: dict[str, Any] = {"@odata.context": ctx.context_url(context)}
    if request.query.get("$count", "").lower() == "true":
        if request.headers.get("consistencylevel", "").lower() != "eventual":
            raise GraphError(
                400,
                "Request_BadRequest",
                "$count is not currently supported without the header 'ConsistencyLevel: eventual'.",
            )
        if total is not None:
            body["@odata.count"] = total()
    body["value"] = found
    if next_position is not None:
        query = {k: v for k, v in request.query.items() if k != "$skiptoken"}
        query["$skiptoken"] = _token(next_position)
        path = "/" + "/".join(quote(p, safe="@'()$") for p in request.parts())
        body["@odata.nextLink"] = f"{ctx.base}{path}?{urlencode(query, quote_via=quote, safe='$,()')}"
    return Response(200, body)
