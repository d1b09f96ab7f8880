"""Talking to Microsoft Graph through msgraph-sdk's request adapter.

Every request goes through msgraph-sdk's HTTP pipeline (authentication, telemetry, redirects) with
its retry handler switched off per request: revoke_ops owns its retries (:mod:`revoke_ops.retry`),
per item of a ``$batch`` (kiota never retries items, and its own retries would fight the pacer).

Reads (:meth:`GraphSession.read`, :meth:`GraphSession.pages`, :meth:`GraphSession.batch_read`)
retry under the READ policy; an answer that is not the shape asked for (a page without ``value``)
is unreadable, retried, and then a :class:`ServiceError` — never an empty result.

The HTTP transport is a seam (``transport=``, e.g. ``httpx.MockTransport``): fast tests exercise
the same code without a server.

Size (~430 lines): one class, the only place that speaks HTTP to Graph; its read, page and batch
paths share the retry and error mapping below.
"""

from __future__ import annotations

import json
import logging
import re
import ssl
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
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
from revoke_ops.credentials.identity import TOKEN_ERRORS
from revoke_ops.errors import (
    GraphRequestError,
    ServiceError,
    TransientAuthError,
    TransportError,
    UnreadableResponseError,
)
from revoke_ops.retry import READ, Clock, RealClock, RetryPolicy, parse_retry_after

__all__ = [
    "BatchItem",
    "GraphRequestError",
    "GraphResponse",
    "GraphSession",
    "TransportError",
    "UnreadableResponseError",
    "needs_advanced_query",
    "odata_literal",
    "user_path",
]

log = logging.getLogger(__name__)

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
WRITE_METHODS = frozenset({"POST", "PATCH", "PUT"})
_GUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")
# $filter forms that Microsoft Graph serves only as advanced queries on directory objects
# (ConsistencyLevel: eventual and $count=true on the request): "Advanced query capabilities on
# Microsoft Entra ID objects" lists endsWith, ne, not and $count among them; its table of user
# properties marks every comparison with null, and any filter on the properties below, advanced only.
_ADVANCED_ONLY_PROPERTIES = (
    "companyName|employeeHireDate|employeeType|mobilePhone|officeLocation|onPremisesExtensionAttributes|"
    "onPremisesImmutableId|onPremisesLastSyncDateTime|onPremisesSamAccountName|passwordPolicies|postalCode|"
    "preferredLanguage|showInAddressList|streetAddress"
)
_ADVANCED = re.compile(
    rf"\bendswith\s*\(|\bne\b|\bnot\b|\$count\b|\bnull\b|\b(?:{_ADVANCED_ONLY_PROPERTIES})\b", re.IGNORECASE
)
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
    """Whether a ``$filter`` on users needs Graph's advanced query headers (endsWith, ne, not, $count, null...)."""
    # String literals do not count: "displayName eq 'not me'" is a plain query.
    bare = re.sub(r"'(?:[^']|'')*'", "''", filter_text)
    return bool(_ADVANCED.search(bare))


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

    def retry_after(self) -> float | None:
        """The seconds Graph's ``Retry-After`` asks for (either form), or None."""
        return parse_retry_after(self.headers.get("retry-after"))


@dataclass
class BatchItem:
    """One request inside a ``$batch``."""

    id: str
    method: str
    url: str  # relative to the Graph endpoint, e.g. /users/{id}/revokeSignInSessions
    body: Any = None


class GraphSession:
    """msgraph-sdk's adapter and client for one identity; an async context manager.

    :param identity: who the requests are sent as (its credential gives the tokens).
    :param timeout: seconds per request.
    :param transport: the HTTP transport (default: httpx's, verifying TLS against the trusted CAs);
        tests pass ``httpx.MockTransport``.
    :param read_policy: how reads are retried (default :data:`revoke_ops.retry.READ`).
    :param clock: how retries wait (tests pass a virtual clock).
    """

    def __init__(
        self,
        identity: Identity,
        timeout: float = 30.0,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
        read_policy: RetryPolicy = READ,
        clock: Clock | None = None,
    ) -> None:
        self.identity = identity
        self.timeout = timeout
        self.read_policy = read_policy
        self.clock: Clock = clock or RealClock()
        host = urlsplit(identity.graph_endpoint).hostname or ""
        auth = AzureIdentityAuthenticationProvider(
            identity.credential, scopes=[identity.graph_scope], allowed_hosts=[host]
        )
        if transport is None:
            ca = ca_bundle()
            verify: Any = ssl.create_default_context(cafile=ca) if ca else True
            self._http: httpx.AsyncClient | None = httpx.AsyncClient(
                timeout=httpx.Timeout(timeout), verify=verify, http2=False
            )
        else:
            self._http = httpx.AsyncClient(timeout=httpx.Timeout(timeout), transport=transport)
        # A custom httpx client drops msgraph's default request options (incl. the /me rewrite):
        # pass them along explicitly.
        client = GraphClientFactory.create_with_default_middleware(client=self._http, options=graph_options)
        self.adapter = GraphRequestAdapter(auth, client=client)
        # No trailing slash, or paths become /v1.0//users.
        self.adapter.base_url = identity.graph_endpoint.rstrip("/")

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

    async def renew_token(self) -> None:
        """A new token from the identity platform, not the cached one (after Graph answered 401).

        The credential this session's Graph client holds is renewed, so the next request carries it.

        :raises TransientAuthError: the identity platform failed for now.
        :raises AuthError: the credential is refused.
        """
        await self.identity.fresh_token()

    async def send(
        self,
        method: str,
        url: str,
        body: Any = None,
        headers: dict[str, str] | None = None,
        *,
        client_request_id: str | None = None,
    ) -> GraphResponse:
        """Send one request (``url`` relative to the Graph endpoint, or absolute for nextLinks).

        :param client_request_id: the ``client-request-id`` to send (a new one when None); the
            journal records it before a write is sent.
        :raises TransportError: the request may not have arrived (safe to retry).
        :raises UnreadableResponseError: an answer came but is not readable JSON.
        :raises TransientAuthError: no token for now (the identity platform failed); nothing was sent.
        :raises AuthError: no token (the credential is refused); nothing was sent.
        """
        info = RequestInformation()
        info.http_method = Method[method.upper()]
        info.url = url if url.startswith("https://") else f"{self.adapter.base_url}{url}"
        client_request_id = client_request_id or str(uuid.uuid4())
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
        except TOKEN_ERRORS as err:  # the request's authentication asked the credential for a token
            raise self.identity.token_error(err) from err
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

    async def batch(self, items: list[BatchItem], *, client_request_id: str | None = None) -> GraphResponse:
        """POST one ``$batch`` of at most 20 requests (not retried: the caller retries per item)."""
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
        return await self.send("POST", "/$batch", payload, client_request_id=client_request_id)

    async def pages(self, url: str, headers: dict[str, str] | None = None) -> AsyncIterator[list[dict[str, Any]]]:
        """Yield each page's ``value`` of a collection, following ``@odata.nextLink``.

        A ``200`` whose body has no ``value`` list is unreadable (retried, then a ServiceError): a
        listing never ends early on a garbage answer.

        :raises GraphRequestError: on an error answer.
        :raises ServiceError: Graph kept failing or answering unreadably.
        """
        next_url: str | None = url
        while next_url:
            response = await self.read(next_url, headers=headers, page=True)
            if response.status != 200:
                raise GraphRequestError(response, next_url)
            yield list(response.body["value"])
            link = response.body.get("@odata.nextLink")
            next_url = link if isinstance(link, str) and link else None

    async def read(self, url: str, headers: dict[str, str] | None = None, *, page: bool = False) -> GraphResponse:
        """GET under the READ policy: connection errors, unreadable answers, no token for now, 429 and 5xx are retried.

        :param page: the answer must be a collection page (a JSON object with a ``value`` list).
        :returns: the last answer (an error status once the policy is exhausted on 429/5xx).
        :raises ServiceError: the request kept failing to arrive or the answers stayed unreadable
            (:class:`TransientAuthError` when no token could be had).
        """
        policy = self.read_policy
        attempt = 0
        while True:
            attempt += 1
            try:
                response = await self.send("GET", url, headers=headers)
                if page and response.status == 200 and not _is_page(response.body):
                    raise UnreadableResponseError(
                        f"HTTP 200 without a collection page ({_shape(response.body)}, no 'value' list)"
                    )
            except (TransportError, UnreadableResponseError, TransientAuthError) as err:
                if policy.is_exhausted(attempt):
                    if isinstance(err, TransientAuthError):
                        raise
                    raise self._read_failed(url, attempt, err) from err
                wait = policy.wait(attempt)
            else:
                if not policy.is_retry(response.status) or policy.is_exhausted(attempt):
                    return response
                wait = policy.wait(attempt, response.retry_after())
            _log_wait(f"GET {urlsplit(url).path}", wait.seconds, wait.asked)
            await self.clock.sleep(wait.seconds)

    def _read_failed(self, url: str, attempts: int, err: Exception) -> ServiceError:
        hint = (
            f"\n  what to do: check the Graph endpoint {self.identity.graph_endpoint} (the bundle's "
            "graphEndpoint, or --cloud), the network and any proxy (HTTPS_PROXY / NO_PROXY)"
            if isinstance(err, TransportError)
            else "; nothing was changed, try again"
        )
        return ServiceError(
            f"reading {urlsplit(url).path} from Microsoft Graph failed {attempts} times: {err}{hint}",
            code="TransportError" if isinstance(err, TransportError) else "UnreadableResponse",
        )

    async def batch_read(self, items: list[BatchItem]) -> dict[str, dict[str, Any]]:
        """Send a ``$batch`` of reads (or read-like POSTs) under the READ policy, retrying per item.

        Items answered 429, 5xx or unreadably are asked again (after Retry-After, capped); returns
        item id -> its last answer (``{"status": 0}`` when none came).
        """
        policy = self.read_policy
        answers: dict[str, dict[str, Any]] = {}
        todo = list(items)
        attempt = 0
        while todo:
            attempt += 1
            asked: float | None = None
            try:
                response = await self.batch(todo)
            except (TransportError, UnreadableResponseError, TransientAuthError) as err:
                log.debug("$batch of %d reads: %s", len(todo), err)
                retry = todo
            else:
                raw = response.body.get("responses") if isinstance(response.body, dict) else None
                if response.status != 200 or not isinstance(raw, list):
                    retry = todo
                    asked = response.retry_after()
                else:
                    by_id = {str(a.get("id")): a for a in raw if isinstance(a, dict)}
                    retry = []
                    for item in todo:
                        answer = by_id.get(item.id)
                        status = int(answer.get("status") or 0) if answer else 0
                        if answer is not None:
                            answers[item.id] = answer
                        if answer is None or status == 0 or policy.is_retry(status):
                            retry.append(item)
                            raw_headers = (answer or {}).get("headers") or {}
                            item_headers = {str(k).lower(): str(v) for k, v in raw_headers.items()}
                            after = parse_retry_after(item_headers.get("retry-after"))
                            if after is not None:
                                asked = max(asked or 0.0, after)
            todo = retry
            if not todo or policy.is_exhausted(attempt):
                break
            wait = policy.wait(attempt, asked)
            _log_wait(f"$batch of {len(todo)} reads", wait.seconds, wait.asked)
            await self.clock.sleep(wait.seconds)
        for item in todo:
            answers.setdefault(item.id, {"id": item.id, "status": 0})
        return answers


def _is_page(body: Any) -> bool:
    return isinstance(body, dict) and isinstance(body.get("value"), list)


def _shape(body: Any) -> str:
    if isinstance(body, dict):
        keys = ", ".join(sorted(str(k) for k in body)[:5])
        return f"an object with {keys}" if keys else "an empty object"
    return "no body" if body is None else f"a JSON {type(body).__name__}"


#: A pause this long is worth telling the operator about at -v.
LONG_PAUSE = 5.0


def _log_wait(what: str, seconds: float, asked: float | None) -> None:
    if asked is not None and asked > seconds:
        log.info("%s: Graph asked to wait %.0f s; waiting %.0f s (--max-retry-wait) and retrying", what, asked, seconds)
    elif seconds >= LONG_PAUSE:
        log.info("%s: waiting %.0f s before retrying", what, seconds)
    else:
        log.debug("%s: retrying in %.1f s", what, seconds)
