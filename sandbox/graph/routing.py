"""Routes: each resource module registers its own (as aiohttp sub-applications do), no router switch.

A pattern is a path below ``/v1.0`` written as segments: a literal (``users``), alternatives
(``members|transitiveMembers``) or ``{}`` for a key. Alternatives and keys are captured, in order,
and handed to the handler. The first registered route that matches wins.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from sandbox.graph.base import Caller, Context, GraphError, Request, Response, require

Handler = Callable[[Context, Request, Caller, list[str]], Response]


@dataclass(frozen=True)
class Route:
    methods: frozenset[str]
    pattern: tuple[frozenset[str] | None, ...]  # None: any key
    handler: Handler
    #: the permissions of which the caller needs one (None: the handler decides)
    permissions: frozenset[str] | None

    def match(self, method: str, parts: list[str]) -> list[str] | None:
        if method not in self.methods or len(parts) != len(self.pattern):
            return None
        captured: list[str] = []
        for part, allowed in zip(parts, self.pattern, strict=True):
            if allowed is None:
                captured.append(part)
            elif part not in allowed:
                return None
            elif len(allowed) > 1:
                captured.append(part)
        return captured


def _segment(text: str) -> frozenset[str] | None:
    return None if text == "{}" else frozenset(text.split("|"))


class Router:
    def __init__(self) -> None:
        self.routes: list[Route] = []

    def add(self, methods: str, pattern: str, handler: Handler, permissions: frozenset[str] | None = None) -> None:
        """Register ``handler`` for ``methods`` (e.g. ``"GET"`` or ``"GET PATCH"``) on ``pattern``."""
        segments = tuple(_segment(s) for s in pattern.strip("/").split("/"))
        self.routes.append(Route(frozenset(methods.split()), segments, handler, permissions))

    def dispatch(self, ctx: Context, request: Request, caller: Caller) -> Response:
        parts = request.parts()
        for route in self.routes:
            captured = route.match(request.method, parts)
            if captured is None:
                continue
            if route.permissions is not None:
                require(caller, route.permissions)
            return route.handler(ctx, request, caller, captured)
        raise GraphError(400, "BadRequest", f"Resource not found for the segment '{parts[0] if parts else ''}'.")
