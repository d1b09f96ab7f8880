"""OData query options as Graph reads them: ``$select``, ``$filter``, ``$top``, paging, ``$count``."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable, Iterable
from typing import Any
from urllib.parse import parse_qsl, quote, urlencode

from sandbox.graph.base import Context, GraphError, Request, Response
from sandbox.odata import UnsupportedQueryError, parse_filter

MAX_TOP = 999
DEFAULT_TOP = 100


def parse_query(text: str) -> dict[str, str]:
    return dict(parse_qsl(text, keep_blank_values=True))


def select(query: dict[str, str]) -> list[str] | None:
    text = query.get("$select")
    return [s.strip() for s in text.split(",") if s.strip()] if text else None


def filter_predicate(query: dict[str, str], fields: set[str] | None = None) -> Callable[[Any], bool] | None:
    text = query.get("$filter")
    if not text:
        return None
    try:
        return parse_filter(text, fields)
    except UnsupportedQueryError as err:
        raise GraphError(400, "Request_UnsupportedQuery", str(err)) from None


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
