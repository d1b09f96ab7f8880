"""Who revoke-ops acts as: the typed :class:`Identity`, and turning token failures into our errors.

Every kind of credential (:class:`CredentialKind`) ends up as one ``Identity``: where requests go
(authority, Graph endpoint and scope), an azure-core async token credential, and what the operator
should read about it. Tokens are always requested with ``enable_cae=True``, as the Graph client
(kiota) requests them: azure-identity caches CAE and non-CAE tokens separately, so asking both ways
would sign a delegated operator in twice.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import os
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import TYPE_CHECKING, Any, Protocol

from azure.core.credentials import AccessToken
from azure.core.exceptions import ClientAuthenticationError, ServiceRequestError, ServiceResponseError

from revoke_ops.errors import AuthError, TransientAuthError
from revoke_ops.redact import redact

if TYPE_CHECKING:
    from revoke_ops.bundle import Bundle
    from revoke_ops.credentials.tenant import Where

__all__ = [
    "TOKEN_ERRORS",
    "CredentialKind",
    "Identity",
    "Renewable",
    "ThreadedCredential",
    "ca_bundle",
    "certificate_days_left",
    "explain_auth_error",
    "token_claims",
]

log = logging.getLogger(__name__)

AADSTS_HINTS = {
    "700027": "the certificate is not registered on the application (or has expired there): check the thumbprint "
    "against the bundle's certificates, or rotate (add a slot and `pulumi up`)",
    "700016": "the application does not exist in this tenant: is the bundle for this tenant, and was `pulumi up` run?",
    "7000229": "the application has no service principal in this tenant: run `pulumi up` for this stack",
    "90002": "the tenant does not exist in this cloud: check the bundle's tenantId and cloud",
    "65001": "no admin consent for the delegated permission: set permissionMode to delegated or both and `pulumi up`",
    "50105": "you are not assigned to the application: ask to be added to the stack's operatorsGroup",
    "500011": "the Graph resource was not found: the bundle's graphScope does not match this cloud",
    "700024": "the client assertion is outside its valid time range: check this machine's clock",
    # Federated credentials (workload identity federation): matched case-sensitively, issuer first.
    "700211": "no federated credential on the application trusts this token's issuer: add one to the stack's "
    "federatedCredentials (GitHub Actions: https://token.actions.githubusercontent.com) and `pulumi up`",
    "700213": "no federated credential on the application matches this job's subject: the stack's federatedCredentials "
    "must hold it exactly (GitHub: repo:OWNER/REPO:environment:NAME, or with @ids for repositories using immutable "
    "subjects), and the job must run in that environment",
    "7002138": "the subject differs from a federated credential's only in letter case: matching is case-sensitive, "
    "fix the owner, repository or environment name in the stack's federatedCredentials",
    "700212": "the token's audience (aud) is not the one the matching federated credential expects "
    "(api://AzureADTokenExchange unless the stack's federatedCredentials entry sets audience): with --credential "
    "github-actions pass --credentials with the stack's current bundle (revoke-ops then asks GitHub for the audience "
    "it lists); a token file must be issued for that audience",
}

#: What azure-identity raises when no token could be had: refused (ClientAuthenticationError), or the
#: identity platform not reached / not answering (ServiceRequestError, ServiceResponseError).
TOKEN_ERRORS = (ClientAuthenticationError, ServiceRequestError, ServiceResponseError)

#: AADSTS codes that mean "try again later": 90033 "a transient error has occurred" (Entra's error
#: code reference) and 50196 "encountered a loop", which is how Entra throttles user flows (MSAL's
#: "Client throttling" notes); a 429 or 5xx from the token endpoint is transient whatever its code.
TRANSIENT_AADSTS = frozenset({"90033", "50196"})


class CredentialKind(StrEnum):
    """How revoke-ops signs in."""

    CERTIFICATE = "certificate"
    MANAGED_IDENTITY = "managed-identity"
    WORKLOAD_IDENTITY = "workload-identity"
    AZURE_PIPELINES = "azure-pipelines"
    GITHUB_ACTIONS = "github-actions"
    KEY_VAULT = "key-vault-certificate"
    DELEGATED = "delegated"


def ca_bundle() -> str | None:
    """The CA file to trust, from the standard variables (SSL_CERT_FILE, then REQUESTS_CA_BUNDLE)."""
    return os.environ.get("SSL_CERT_FILE") or os.environ.get("REQUESTS_CA_BUNDLE") or None


def _status_of(err: Exception) -> int | None:
    response = getattr(err, "response", None)
    status = getattr(response, "status_code", None)
    return status if isinstance(status, int) else None


def explain_auth_error(err: Exception, what: str) -> AuthError | TransientAuthError:
    """Turn azure-identity's error into an :class:`AuthError` that says what to do (AADSTS code kept).

    A transient failure (the token endpoint answered 429 or 5xx, or an AADSTS code Entra documents
    as transient) becomes :class:`TransientAuthError`: retry later, nothing is wrong with the setup.
    The service's text is redacted: a misbehaving endpoint may echo the client assertion.
    """
    text = redact(str(getattr(err, "message", None) or err))
    match = re.search(r"AADSTS(\d+)", text)
    code = f"AADSTS{match.group(1)}" if match else None
    first = text.split(" Trace ID:")[0].strip()
    status = _status_of(err)
    if (match and match.group(1) in TRANSIENT_AADSTS) or (status is not None and (status == 429 or status >= 500)):
        return TransientAuthError(
            f"the identity platform failed for {what} (transient{f', HTTP {status}' if status else ''}): {first}\n"
            "  what to do: nothing is wrong with the credentials; retry in a minute",
            code or (f"HTTP{status}" if status else None),
        )
    hint = AADSTS_HINTS.get(match.group(1)) if match else None
    message = f"could not get a token for {what}: {first}"
    if hint:
        message += f"\n  what to do: {hint}"
    return AuthError(message, code)


def unreachable_error(err: Exception, authority_host: str) -> AuthError | TransientAuthError:
    """The identity platform could not be reached (or answered nothing usable): say where and why.

    An untrusted TLS certificate is a setup problem (:class:`AuthError`); anything else on the
    network is transient (:class:`TransientAuthError`).
    """
    text = redact(re.sub(r" ssl:<[^>]*>", "", str(getattr(err, "message", None) or err)).strip())
    if "CERTIFICATE_VERIFY_FAILED" in text or "certificate verify failed" in text:
        hint = (
            "the server's TLS certificate is not trusted: point SSL_CERT_FILE (and REQUESTS_CA_BUNDLE) at the CA "
            "bundle that signs it (a TLS-inspecting proxy's CA, for instance); verification is never switched off"
        )
        return AuthError(f"could not reach the identity platform at {authority_host}: {text}\n  what to do: {hint}")
    hint = (
        "check the authority host (the bundle's authorityHost, or --cloud), the network, and any proxy "
        "(HTTPS_PROXY / NO_PROXY)"
    )
    return TransientAuthError(
        f"could not reach the identity platform at {authority_host}: {text}\n  what to do: {hint}", "NetworkError"
    )


class Renewable(Protocol):
    """An async token credential that can be made to give a fresh token (:meth:`Identity.fresh_token`)."""

    async def get_token(self, *scopes: str, **kwargs: Any) -> AccessToken: ...

    async def renew(self) -> None: ...

    async def close(self) -> None: ...

    async def __aenter__(self) -> Any: ...

    async def __aexit__(self, *exc: Any) -> None: ...


@dataclass(kw_only=True)
class Identity:
    """Who revoke-ops acts as, and where its requests go.

    ``credential`` is an azure-core async token credential; ``renew`` (when set) makes a new one,
    for :meth:`fresh_token`.
    """

    tenant_id: str
    client_id: str | None
    authority_host: str
    graph_endpoint: str
    graph_scope: str
    credential: Renewable  # an azure-core AsyncTokenCredential that can also renew itself
    kind: CredentialKind
    description: str
    bundle: Bundle | None = None
    certificate_thumbprint: str | None = None
    certificate_not_after: datetime | None = None
    renew: Callable[[], Awaitable[None]] | None = field(default=None, repr=False)

    @classmethod
    def signed_in(
        cls,
        where: Where,
        credential: Renewable,
        *,
        kind: CredentialKind,
        description: str,
        bundle: Bundle | None,
        certificate_thumbprint: str | None = None,
        certificate_not_after: datetime | None = None,
    ) -> Identity:
        """The identity every kind of credential ends as: ``where`` it signs in, and its renewable credential.

        A kind that signs in as someone other than ``where`` says (a managed identity's own client id)
        passes ``dataclasses.replace(where, client_id=...)``.

        :raises ValueError: ``where`` names no tenant (each kind refuses that earlier, naming what to set).
        """
        if not where.tenant_id:
            raise ValueError("an identity needs a tenant id")
        return cls(
            tenant_id=where.tenant_id,
            client_id=where.client_id,
            authority_host=where.authority_host,
            graph_endpoint=where.graph_endpoint,
            graph_scope=where.graph_scope,
            credential=credential,
            kind=kind,
            description=description,
            bundle=bundle,
            certificate_thumbprint=certificate_thumbprint,
            certificate_not_after=certificate_not_after,
            renew=credential.renew,
        )

    @property
    def delegated(self) -> bool:
        """Whether an operator signed in (delegated permissions), rather than the app itself."""
        return self.kind is CredentialKind.DELEGATED

    async def token(self) -> AccessToken:
        """Acquire a token for Graph (the credential's cache first), or raise :class:`AuthError`.

        :raises TransientAuthError: the identity platform failed transiently (5xx, throttled, network).
        :raises AuthError: anything else, explained (AADSTS code kept).
        """
        try:
            token: AccessToken = await self.credential.get_token(self.graph_scope, enable_cae=True)
        except TOKEN_ERRORS as err:
            raise self.token_error(err) from err
        return token

    def token_error(self, err: Exception) -> AuthError | TransientAuthError:
        """The one classification of a failure to get a token (one of :data:`TOKEN_ERRORS`), wherever it happened.

        Here in :meth:`token`, and in a Graph request whose authentication asked the credential:
        unreachable -> :func:`unreachable_error`; refused -> :func:`explain_auth_error` (AADSTS hint kept).
        """
        if isinstance(err, (ServiceRequestError, ServiceResponseError)):
            return unreachable_error(err, self.authority_host)
        return explain_auth_error(err, f"{self.description} in tenant {self.tenant_id}")

    async def fresh_token(self) -> AccessToken:
        """A new token from the identity platform, not the cached one (to see newly replicated consent).

        App-only credentials are replaced by a fresh credential; a delegated sign-in is renewed with
        its refresh token, never by a new device code or browser prompt.
        """
        if self.renew is not None:
            await self.renew()
        return await self.token()

    async def close(self) -> None:
        close = getattr(self.credential, "close", None)
        if close is not None:
            await close()


class RenewableCredential:
    """An async token credential whose implementation can be replaced by a fresh one.

    Graph sessions keep a reference to this object, so a renewal reaches them too.
    """

    def __init__(self, make: Callable[[], Any]) -> None:
        self._make = make
        self._current = make()

    @property
    def current(self) -> Any:
        return self._current

    async def get_token(self, *scopes: str, **kwargs: Any) -> AccessToken:
        token: AccessToken = await self._current.get_token(*scopes, **kwargs)
        return token

    async def renew(self) -> None:
        old, self._current = self._current, self._make()
        close = getattr(old, "close", None)
        if close is not None:
            await close()

    async def close(self) -> None:
        close = getattr(self._current, "close", None)
        if close is not None:
            await close()

    async def __aenter__(self) -> RenewableCredential:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()


class ThreadedCredential:
    """An async face for a sync token credential whose token requests do blocking work of their own.

    Every call runs in a worker thread, so the event loop (and every other sender) keeps going
    while it waits: the Key Vault credential's sign call is an HTTPS request to the vault.
    """

    def __init__(self, sync: Any) -> None:
        self._sync = sync

    async def get_token(self, *scopes: str, **kwargs: Any) -> AccessToken:
        token: AccessToken = await asyncio.to_thread(self._sync.get_token, *scopes, **kwargs)
        return token

    async def close(self) -> None:
        close = getattr(self._sync, "close", None)
        if close is not None:
            await asyncio.to_thread(close)


def token_claims(token: str) -> dict[str, Any]:
    """Decode an access token's claims (for reporting what it carries; never logged)."""
    try:
        payload = token.split(".")[1]
        data: dict[str, Any] = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    except (IndexError, ValueError):
        return {}
    return data


def certificate_days_left(identity: Identity, now: datetime | None = None) -> float | None:
    """Days until the identity's certificate expires (negative: expired), or None without one."""
    if identity.certificate_not_after is None:
        return None
    return (identity.certificate_not_after - (now or datetime.now(UTC))).total_seconds() / 86400
