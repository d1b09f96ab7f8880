"""What every part of the Graph slice shares: the request and response, the caller, errors, faults.

A request travels through :mod:`sandbox.graph.pipeline` (authenticate, inject faults, throttle) to
the handler that :mod:`sandbox.graph.routing` finds for it; the handlers live in one module per
resource (users, groups, roles, applications, consent) and share the :class:`Context`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from sandbox.identity import IdentityPlatform
    from sandbox.tenant import Tenant, User


@dataclass
class Request:
    method: str
    path: str  # below /v1.0, starting with "/", each segment percent-decoded
    query: dict[str, str]
    headers: dict[str, str]  # lower-case names
    body: Any = None
    in_batch: bool = False
    request_id: str = ""  # set by the pipeline; Graph answers it in the request-id header
    #: the path as sent, still percent-encoded (None: ``path`` is taken as it is)
    raw_path: str | None = None
    #: the path's segments, each percent-decoded on its own (set by the pipeline)
    segments: list[str] | None = None

    def parts(self) -> list[str]:
        if self.segments is not None:
            return list(self.segments)
        return [p for p in self.path.split("/") if p]


@dataclass
class Response:
    status: int
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class Caller:
    app_id: str
    permissions: frozenset[str]
    user: User | None

    @property
    def delegated(self) -> bool:
        return self.user is not None

    def has(self, allowed: frozenset[str]) -> bool:
        return bool(self.permissions & allowed)


@dataclass
class Faults:
    """Injected faults, as fractions of Graph requests (set at start or via the control endpoint)."""

    error_5xx: float = 0.0  # 503 Service Unavailable, top-level and per batch item
    item_429: float = 0.0  # 429 for individual batch items, with Retry-After
    batch_429: float = 0.0  # 429 for a whole $batch request (nothing in it handled), with Retry-After
    retry_after: int = 1  # the Retry-After of injected 429s
    retry_after_5xx: int = 1  # the Retry-After of injected 503s
    reset: float = 0.0  # connection reset before answering (HTTP level)
    stall: float = 0.0  # answer only after stall_seconds (HTTP level)
    stall_seconds: float = 0.0  # modelled
    malformed: float = 0.0  # an unreadable answer with status 200 (HTTP level), of malformed_kind:
    # truncated JSON | html (wrong content type) | huge (8 MB, no payload) | proxy (407 + HTML, after the
    # request was handled: an unexpected status that is not Graph's)
    malformed_kind: str = "truncated"
    # Aiming error_5xx and item_429 (a test tool): only requests whose "METHOD path" contains ``only``
    # (e.g. "checkMemberGroups", or "PATCH users/" for account changes alone), and at most ``limit``
    # of them (0: no limit; ``injected`` counts them, from 0 again at every update).
    only: str = ""
    limit: int = 0
    injected: int = 0

    def update(self, values: dict[str, Any]) -> None:
        for key, value in values.items():
            if not hasattr(self, key):
                raise KeyError(key)
            setattr(self, key, type(getattr(self, key))(value))
        self.injected = 0

    def aims_at(self, request: str) -> bool:
        """Whether error_5xx and item_429 may still be injected into ``request`` ("METHOD path")."""
        return (not self.only or self.only in request) and (not self.limit or self.injected < self.limit)


class GraphError(Exception):
    def __init__(self, status: int, code: str, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message
        self.headers = headers or {}


def not_found(key: str) -> GraphError:
    return GraphError(
        404,
        "Request_ResourceNotFound",
        f"Resource '{key}' does not exist or one of its queried reference-property objects are not present.",
    )


def denied() -> GraphError:
    return GraphError(403, "Authorization_RequestDenied", "Insufficient privileges to complete the operation.")


def require(caller: Caller, allowed: frozenset[str]) -> None:
    if not caller.has(allowed):
        raise denied()


@dataclass
class GraphSettings:
    """How the emulated service behaves beyond the directory's contents."""

    #: seconds before a change shows in advanced queries (their store is eventually consistent); 0: at once
    advanced_query_lag: float = 0.0


@dataclass
class Context:
    """What handlers read and change: the tenant, the identity platform (its clock), URLs, settings."""

    tenant: Tenant
    identity: IdentityPlatform
    base: str  # https://127.0.0.1:port/v1.0
    settings: GraphSettings = field(default_factory=GraphSettings)

    def context_url(self, fragment: str) -> str:
        return f"{self.base}/$metadata#{fragment}"
