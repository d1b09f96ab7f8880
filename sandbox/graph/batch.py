"""JSON batching (``POST /$batch``): each item runs through the whole pipeline on its own.

Graph validates the batch as a whole before it runs any item (Microsoft Graph, "Combine multiple
HTTP requests using JSON batching"): at most 20 items, ids unique, URLs relative, and every write
item (POST, PATCH, PUT) carrying a ``body`` and a ``Content-Type`` header — a write without either
fails the whole batch with 400 ``Write request id : N does not contain Content-Type header or
body.`` even when the operation takes no body (microsoft-graph-docs#6682 for revokeSignInSessions;
msgraph-sdk-dotnet#1038, #2628).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from sandbox.graph.base import GraphError, Request, Response
from sandbox.graph.query import parse_query

MAX_BATCH = 20
WRITE_METHODS = frozenset({"POST", "PATCH", "PUT"})
_ABSOLUTE = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:")

#: handles one item as a request of its own (authentication, faults, throttling, routing)
ItemHandler = Callable[[Request], Response]


def validate(items: Any) -> list[dict[str, Any]]:
    """The batch's items, checked as Graph checks them before running any.

    :raises GraphError: 400 for the first problem found.
    """
    if not isinstance(items, list) or not all(isinstance(i, dict) for i in items):
        raise GraphError(400, "BadRequest", "Invalid batch payload format.")
    if len(items) > MAX_BATCH:
        raise GraphError(400, "BadRequest", f"Number of batch requests exceeds the limit of {MAX_BATCH}.")
    ids = [str(item.get("id", "")) for item in items]
    if "" in ids:
        raise GraphError(400, "BadRequest", "Each batch request must have an id.")
    if len(set(ids)) != len(ids):
        duplicate = next(i for i in ids if ids.count(i) > 1)
        raise GraphError(400, "BadRequest", f"Batch request contains duplicate id '{duplicate}'.")
    for item, item_id in zip(items, ids, strict=True):
        url = str(item.get("url", ""))
        if _ABSOLUTE.match(url):
            raise GraphError(
                400, "BadRequest", f"Request id : {item_id} has an absolute URL; batch requests take relative URLs."
            )
        headers = {str(k).lower() for k in (item.get("headers") or {})}
        if str(item.get("method", "GET")).upper() in WRITE_METHODS and (
            "body" not in item or "content-type" not in headers
        ):
            raise GraphError(
                400, "BadRequest", f"Write request id : {item_id} does not contain Content-Type header or body."
            )
    return items


def run_batch(request: Request, handle_item: ItemHandler) -> Response:
    body = request.body if isinstance(request.body, dict) else {}
    items = validate(body.get("requests"))
    responses = []
    for item in items:
        # The URL is a URI reference: an unencoded "#" starts its fragment, which is not part of the request.
        url = str(item.get("url", "")).split("#", 1)[0]
        path, _, text = url.partition("?")
        headers = {k.lower(): str(v) for k, v in (item.get("headers") or {}).items()}
        sub = Request(
            method=str(item.get("method", "GET")).upper(),
            path="/" + path.lstrip("/"),
            query=parse_query(text),
            # The batch's own headers reach its items (authorization, client-request-id), but not
            # ConsistencyLevel: an advanced query says so in its item (assumption, see the catalogue).
            headers={**{k: v for k, v in request.headers.items() if k != "consistencylevel"}, **headers},
            body=item.get("body"),
            in_batch=True,
            raw_path="/" + path.lstrip("/"),
        )
        result = handle_item(sub)
        responses.append(
            {"id": str(item.get("id")), "status": result.status, "headers": result.headers, "body": result.body}
        )
    return Response(200, {"responses": responses})
