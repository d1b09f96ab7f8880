"""The request pipeline: authenticate, inject faults, throttle, route; answer in Graph's shapes.

Every request — a top-level one or an item of a ``$batch`` — goes through :meth:`Graph.handle`.
"""

from __future__ import annotations

import random
import uuid
from datetime import UTC, datetime

import jwt

from sandbox.graph import accounts, applications, consent, federated, groups, roles, users
from sandbox.graph.base import Caller, Context, Faults, GraphError, GraphSettings, Request, Response
from sandbox.graph.batch import run_batch
from sandbox.graph.costs import request_cost
from sandbox.graph.paths import split_path
from sandbox.graph.routing import Router
from sandbox.identity import IdentityPlatform
from sandbox.tenant import Tenant
from sandbox.throttle import ThrottleKind, ThrottleModel


def build_router() -> Router:
    router = Router()
    for module in (users, accounts, groups, roles, applications, federated, consent):
        module.register(router)
    return router


class Graph:
    def __init__(
        self,
        tenant: Tenant,
        identity: IdentityPlatform,
        throttle: ThrottleModel,
        base_url: str,
        faults: Faults | None = None,
        rng: random.Random | None = None,
        settings: GraphSettings | None = None,
    ) -> None:
        self.tenant = tenant
        self.identity = identity
        self.throttle = throttle
        self.base = f"{base_url}/v1.0"
        self.faults = faults or Faults()
        self.rng = rng or random.Random(7)
        self.request_count = 0
        self.status_counts: dict[int, int] = {}
        self.context = Context(tenant, identity, self.base, settings or GraphSettings())
        self.router = build_router()

    def handle(self, request: Request, authorization: str | None) -> Response:
        """Authenticate, throttle and dispatch one request (a top-level one or a batch item)."""
        request.request_id = str(uuid.uuid4())
        client_request_id = request.headers.get("client-request-id")
        try:
            if request.segments is None and request.raw_path is not None:
                request.segments = split_path(request.raw_path)
            caller = self._authenticate(authorization)
            if request.parts() == ["$batch"] and request.method == "POST" and not request.in_batch:
                if self._inject(self.faults.batch_429):
                    raise self._injected_429("Too many requests (injected, whole batch).")
                response = run_batch(request, lambda item: self.handle(item, authorization))
            else:
                response = self._admit_and_dispatch(request, caller)
        except GraphError as err:
            response = Response(
                err.status,
                {
                    "error": {
                        "code": err.code,
                        "message": err.message,
                        "innerError": {
                            "date": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S"),
                            "request-id": request.request_id,
                            "client-request-id": client_request_id or request.request_id,
                        },
                    }
                },
                dict(err.headers),
            )
        response.headers.setdefault("request-id", request.request_id)
        response.headers.setdefault("client-request-id", client_request_id or request.request_id)
        if response.body is not None:
            response.headers.setdefault("Content-Type", "application/json;odata.metadata=minimal;charset=utf-8")
        self.request_count += 1
        self.status_counts[response.status] = self.status_counts.get(response.status, 0) + 1
        return response

    def _authenticate(self, authorization: str | None) -> Caller:
        if not authorization or not authorization.lower().startswith("bearer "):
            raise GraphError(401, "InvalidAuthenticationToken", "Access token is empty.")
        try:
            claims = self.identity.verify_access_token(authorization.split(" ", 1)[1])
        except jwt.ExpiredSignatureError:
            raise GraphError(
                401, "InvalidAuthenticationToken", "Lifetime validation failed, the token is expired."
            ) from None
        except jwt.PyJWTError:
            raise GraphError(
                401, "InvalidAuthenticationToken", "Access token validation failure. Invalid audience."
            ) from None
        if claims.get("idtyp") == "user":
            user = self.tenant.users_by_id.get(claims["oid"])
            if user is None:
                raise GraphError(401, "InvalidAuthenticationToken", "The signed-in user no longer exists.")
            return Caller(claims["appid"], frozenset(claims.get("scp", "").split()), user)
        return Caller(claims["appid"], frozenset(claims.get("roles", [])), None)

    def _admit_and_dispatch(self, request: Request, caller: Caller) -> Response:
        cost = request_cost(request.method, request.parts(), request.query)
        write = cost.writes > 0
        if self._aimed(request, self.faults.error_5xx):
            raise GraphError(
                503,
                "serviceNotAvailable",
                "The service is temporarily unavailable. Please retry.",
                {"Retry-After": str(self.faults.retry_after_5xx)},
            )
        if request.in_batch and self._aimed(request, self.faults.item_429):
            raise self._injected_429("Too many requests (injected).")
        throttled = self.throttle.admit(caller.app_id, self.tenant.tenant_id, write=write, cost=cost.resource_units)
        if throttled is not None:
            raise GraphError(
                429,
                "TooManyRequests",
                "Too many requests. Please retry after the time in the Retry-After header.",
                {
                    "Retry-After": str(self.throttle.retry_after_header(throttled)),
                    "x-ms-throttle-scope": throttled.scope,
                    "x-ms-throttle-information": throttled.kind.value,
                },
            )
        response = self.router.dispatch(self.context, request, caller)
        response.headers["x-ms-resource-unit"] = str(cost.resource_units)
        percentage = self.throttle.limit_percentage(caller.app_id, self.tenant.tenant_id, write)
        if percentage is not None:
            response.headers["x-ms-throttle-limit-percentage"] = str(percentage)
        return response

    def _inject(self, probability: float) -> bool:
        return bool(probability) and self.rng.random() < probability

    def _aimed(self, request: Request, probability: float) -> bool:
        """An injection limited to the requests the faults aim at (``Faults.only``, ``Faults.limit``)."""
        if not probability or not self.faults.aims_at(f"{request.method.upper()} {'/'.join(request.parts())}"):
            return False
        hit = self._inject(probability)
        self.faults.injected += hit
        return hit

    def _injected_429(self, message: str) -> GraphError:
        headers = {
            "Retry-After": str(self.faults.retry_after),
            "x-ms-throttle-scope": "Injected",
            "x-ms-throttle-information": ThrottleKind.INJECTED.value,
        }
        return GraphError(429, "TooManyRequests", message, headers)
