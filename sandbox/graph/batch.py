"""JSON batching (``POST /$batch``): each item runs through the whole pipeline on its own."""

from __future__ import annotations

from collections.abc import Callable

from sandbox.graph.base import GraphError, Request, Response
from sandbox.graph.query import parse_query

MAX_BATCH = 20

#: handles one item as a request of its own (authentication, faults, throttling, routing)
ItemHandler = Callable[[Request], Response]


def run_batch(request: Request, handle_item: ItemHandler) -> Response:
    body = request.body if isinstance(request.body, dict) else {}
    items = body.get("requests")
    if not isinstance(items, list):
        raise GraphError(400, "BadRequest", "Invalid batch payload format.")
    if len(items) > MAX_BATCH:
        raise GraphError(400, "BadRequest", f"Number of batch requests exceeds the limit of {MAX_BATCH}.")
    ids = [str(item.get("id")) for item in items]
    if len(set(ids)) != len(ids):
        raise GraphError(400, "BadRequest", "Batch request contains duplicate ids.")
    responses = []
    for item in items:
        url = str(item.get("url", ""))
        path, _, text = url.partition("?")
        headers = {k.lower(): str(v) for k, v in (item.get("headers") or {}).items()}
        sub = Request(
            method=str(item.get("method", "GET")).upper(),
            path="/" + path.lstrip("/"),
            query=parse_query(text),
            headers={**request.headers, **headers},
            body=item.get("body"),
            in_batch=True,
        )
        result = handle_item(sub)
        responses.append(
            {"id": str(item.get("id")), "status": result.status, "headers": result.headers, "body": result.body}
        )
    return Response(200, {"responses": responses})
