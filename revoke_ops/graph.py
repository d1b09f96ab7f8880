"""Talking to Microsoft Graph through msgraph-sdk's request adapter.

Every request goes through msgraph-sdk's HTTP pipeline (authentication, telemetry, redirects) with
its retry handler switched off per request: the engine paces itself and owns retries, per item of
a ``$batch`` (kiota never retries items, and its own retries would fight the pacer).
"""

from __future__ import annotations

import asyncio
import json
import re
import ssl
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote, urlsplit

import httpcore
import httpx
from kiota_abstractions.method import Method
from kiota_abstractions.request_information import RequestInformation
from kiota_authentication_azure.azure_identity_authentication_provider import AzureIdentityAuthenticationProvider
from kiota_http.middleware.options.retry_handler_option import RetryHandlerOption
from msgraph.graph_request_adapter import GraphRequestAdapter
from msgraph.graph_request_adapter import options as graph_options
from msgraph_core import GraphClientFactory

from revoke_ops.credentials import Identity, ca_bundle
from revoke_ops.errors import RevokeOpsError

__all__ = [
    "GraphResponse",
    "GraphSession",
    "TransportError",
    "UnreadableResponseError",
    "needs_advanced_query",
    "odata_literal",
    "user_path",
]

USER_FIELDS = "id,userPrincipalName,userType,externalUserState,accountEnabled"
# kiota's transport can surface httpcore's exceptions unwrapped.
NETWORK_ERRORS = (
    httpx.TransportError,
    httpcore.NetworkError,
    httpcore.ProtocolError,
    httpcore.TimeoutException,
    ConnectionError,
    TimeoutError,
)
READ_ATTEMPTS = 6
WRITE_METHODS = frozenset({"POST", "PATCH", "PUT"})
_GUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")
# $filter forms that Microsoft Graph serves only as advanced queries on directory objects
# (ConsistencyLevel: eventual and $count=true on the request): "Advanced query capabilities on
# Microsoft Entra ID objects" lists endsWith, ne, not and $count among them.
_ADVANCED = re.compile(r"\bendswith\s*\(|\bne\b|\bnot\b|\$count\b", re.IGNORECASE)
ADVANCED_HEADERS = {"ConsistencyLevel": "eventual"}


def user_path(key: str) -> str:
    """The Graph path of one user, by object id or userPrincipalName, safe to put in a URL.

    Path segments are percent-encoded (a guest's ``#EXT#`` would otherwise end the path: the rest
    becomes a URL fragment); ``@`` and ``'`` stay as they are, as Graph's examples show them. A
    userPrincipalName that begins with ``$`` must be addressed as ``/users('$x@y')`` (Graph's
    "Get user" docs), where an apostrophe is doubled as in any OData string literal.
    """
    if _GUID.match(key):
        return f"/users/{key}"
    if key.startswith("$"):
        return f"/users({quote(odata_literal(key), safe=chr(39) + '@$')})"
    return f"/users/{quote(key, safe=chr(39) + '@')}"


def odata_literal(value: str) -> str:
    """An OData string literal: single quotes around, quotes inside doubled (``'o''brien@x'``)."""
    return "'" + value.replace("'", "''") + "'"


def needs_advanced_query(filter_text: str) -> bool:
    """Whether a ``$filter`` on users needs Graph's advanced query headers (endsWith, ne, not, $count)."""
    # String literals do not count: "displayName eq 'not me'" is a plain query.
    bare = re.sub(r"'(?:[^']|'')*'", "''", filter_text)
    return bool(_ADVANCED.search(bare))


class TransportError(Exception):
    """The request may not have reached Graph (connection error, timeout): safe to retry."""


class UnreadableResponseError(Exception):
    """Graph answered, but the answer could not be read: the change may have happened."""


@dataclass
class GraphResponse:
    status: int
    headers: dict[str, str]
    body: Any
    client_request_id: str

    @property
    def request_id(self) -> str | None:
        return self.headers.get("request-id")

    @property
    def error_code(self) -> str | None:
        if isinstance(self.body, dict) and isinstance(self.body.get("error"), dict):
            code = self.body["error"].get("code")
            return str(code) if code else None
        return None

    @property
    def error_message(self) -> str:
        if isinstance(self.body, dict) and isinstance(self.body.get("error"), dict):
            return str(self.body["error"].get("message", ""))
        return ""

    def retry_after(self, default: float = 1.0) -> float:
        value = self.headers.get("retry-after")
        try:
            return max(0.0, float(value)) if value is not None else default
        except ValueError:
            return default


@dataclass
class BatchItem:
    """One request inside a ``$batch``."""

    id: str
    method: str
    url: str  # relative to the Graph endpoint, e.g. /users/{id}/revokeSignInSessions
    body: Any = None


@dataclass
class GraphSession:
    """msgraph-sdk's adapter and client for one identity; an async context manager."""

    identity: Identity
    timeout: float = 30.0
    _http: httpx.AsyncClient | None = field(default=None, init=False)
    adapter: GraphRequestAdapter = field(init=False)

    def __post_init__(self) -> None:
        host = urlsplit(self.identity.graph_endpoint).hostname or ""
        auth = AzureIdentityAuthenticationProvider(
            self.identity.credential, scopes=[self.identity.graph_scope], allowed_hosts=[host]
        )
        ca = ca_bundle()
        verify: Any = ssl.create_default_context(cafile=ca) if ca else True
        self._http = httpx.AsyncClient(timeout=httpx.Timeout(self.timeout), verify=verify, http2=False)
        # A custom httpx client drops msgraph's default request options (incl. the /me rewrite):
        # pass them along explicitly.
        client = GraphClientFactory.create_with_default_middleware(client=self._http, options=graph_options)
        self.adapter = GraphRequestAdapter(auth, client=client)
        # No trailing slash, or paths become /v1.0//users.
        self.adapter.base_url = self.identity.graph_endpoint.rstrip("/")

    @property
    def client(self) -> Any:
        """The fluent :class:`msgraph.graph_service_client.GraphServiceClient` on this adapter."""
        from msgraph.graph_service_client import GraphServiceClient

        return GraphServiceClient(request_adapter=self.adapter)

    async def __aenter__(self) -> GraphSession:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        if self._http is not None:
            await self._http.aclose()
            self._http = None

    async def send(
        self, method: str, url: str, body: Any = None, headers: dict[str, str] | None = None
    ) -> GraphResponse:
        """Send one request (``url`` relative to the Graph endpoint, or absolute for nextLinks).

        :raises TransportError: the request may not have arrived (safe to retry).
        :raises UnreadableResponseError: an answer came but is not readable JSON.
        """
        info = RequestInformation()
        info.http_method = Method[method.upper()]
        info.url = url if url.startswith("https://") else f"{self.adapter.base_url}{url}"
        client_request_id = str(uuid.uuid4())
        info.headers.try_add("client-request-id", client_request_id)
        info.headers.try_add("Accept", "application/json")
        for name, value in (headers or {}).items():
            info.headers.try_add(name, value)
        if body is not None:
            info.headers.try_add("Content-Type", "application/json")
            info.content = json.dumps(body).encode()
        info.add_request_options([RetryHandlerOption(max_retries=0, should_retry=False)])
        span = self.adapter.start_tracing_span(info, "revoke_ops.send")
        try:
            response = await self.adapter.get_http_response_message(info, span)
        except NETWORK_ERRORS as err:
            raise TransportError(f"{type(err).__name__}: {err}") from err
        finally:
            span.end()
        response_headers = {k.lower(): v for k, v in response.headers.items()}
        try:
            content = await response.aread()
        except NETWORK_ERRORS as err:
            raise UnreadableResponseError(f"the answer broke off: {type(err).__name__}") from err
        parsed: Any = None
        if content:
            try:
                parsed = json.loads(content)
            except ValueError:
                raise UnreadableResponseError(
                    f"HTTP {response.status_code} with an unreadable body ({len(content)} bytes, "
                    f"{response_headers.get('content-type', 'no content type')})"
                ) from None
        return GraphResponse(response.status_code, response_headers, parsed, client_request_id)

    async def batch(self, items: list[BatchItem]) -> GraphResponse:
        """POST one ``$batch`` of at most 20 requests."""
        payload = {
            "requests": [
                {
                    "id": i.id,
                    "method": i.method,
                    "url": i.url,
                    # Graph refuses a write item without a body and a Content-Type header, even when
                    # the operation takes no body ("Write request id : N does not contain
                    # Content-Type header or body."; microsoft-graph-docs#6682): send {}.
                    **(
                        {"body": {} if i.body is None else i.body, "headers": {"Content-Type": "application/json"}}
                        if i.method.upper() in WRITE_METHODS or i.body is not None
                        else {}
                    ),
                }
                for i in items
            ]
        }
        return await self.send("POST", "/$batch", payload)

    async def pages(self, url: str, headers: dict[str, str] | None = None) -> AsyncIterator[list[dict[str, Any]]]:
        """Yield each page's ``value`` of a collection, following ``@odata.nextLink``.

        :raises GraphRequestError: on an error answer.
        """
        next_url: str | None = url
        while next_url:
            response = await self.read(next_url, headers=headers)
            if response.status != 200 or not isinstance(response.body, dict):
                raise GraphRequestError(response, next_url)
            yield list(response.body.get("value", []))
            next_url = response.body.get("@odata.nextLink")

    async def read(self, url: str, headers: dict[str, str] | None = None) -> GraphResponse:
        """GET with retries on connection errors, unreadable answers, 429 (after Retry-After) and 5xx."""
        for attempt in range(1, READ_ATTEMPTS + 1):
            try:
                response = await self.send("GET", url, headers=headers)
            except (TransportError, UnreadableResponseError) as err:
                if attempt == READ_ATTEMPTS:
                    hint = (
                        f"\n  what to do: check the Graph endpoint {self.identity.graph_endpoint} (the bundle's "
                        "graphEndpoint, or --cloud), the network and any proxy (HTTPS_PROXY / NO_PROXY)"
                        if isinstance(err, TransportError)
                        else ""
                    )
                    raise RevokeOpsError(
                        f"reading {urlsplit(url).path} from Microsoft Graph failed {READ_ATTEMPTS} times: {err}{hint}"
                    ) from err
                await asyncio.sleep(min(5.0, 0.2 * 2**attempt))
                continue
            if (response.status == 429 or response.status >= 500) and attempt < READ_ATTEMPTS:
                await asyncio.sleep(response.retry_after(min(5.0, 0.2 * 2**attempt)))
                continue
            return response
        raise AssertionError("unreachable")  # pragma: no cover


class GraphRequestError(Exception):
    """A read answered with an error status."""

    def __init__(self, response: GraphResponse, url: str) -> None:
        self.response = response
        path = urlsplit(url).path
        super().__init__(
            f"GET {path} answered {response.status} {response.error_code or ''}: {response.error_message}".strip()
        )
