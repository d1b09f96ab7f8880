"""GitHub Actions' OIDC token as the client assertion: no certificate and no secret anywhere.

A job with ``permissions: id-token: write`` gets ``ACTIONS_ID_TOKEN_REQUEST_URL`` and
``ACTIONS_ID_TOKEN_REQUEST_TOKEN``; ``GET <url>&audience=api://AzureADTokenExchange`` with the
request token as a bearer answers ``{"value": "<JWT>"}`` signed by
``https://token.actions.githubusercontent.com``. Entra accepts that JWT as the client assertion of
an application with a matching federated credential (issuer, subject such as
``repo:OWNER/REPO:environment:NAME``, audience). azure-identity's ``ClientAssertionCredential``
asks for a fresh assertion whenever it needs a token, so a run longer than the JWT's few minutes
still works. Neither the request token nor the JWT is ever logged or shown in an error.

The audience: GitHub writes whatever ``aud`` the job asks for, and Entra compares it with the
matching federated credential's (AADSTS700212 when they differ). Graph lets a credential name an
audience other than ``api://AzureADTokenExchange`` (the stack's ``federatedCredentials`` ``audience``
key), so when the bundle lists the app's federated credentials, the audience asked for is the one
of the credential whose issuer and subject are this job's (read from the first token; one more
request to GitHub, never to Entra).
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import ssl
import urllib.error
import urllib.request
from collections.abc import Mapping
from dataclasses import replace
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, urlsplit

from azure.core.exceptions import ClientAuthenticationError

from revoke_ops.credentials.identity import CredentialKind, Identity, RenewableCredential, ca_bundle
from revoke_ops.credentials.tenant import resolve_where
from revoke_ops.errors import InputError
from revoke_ops.facts import TOKEN_EXCHANGE_AUDIENCE

if TYPE_CHECKING:
    from revoke_ops.bundle import Bundle

__all__ = ["TOKEN_EXCHANGE_AUDIENCE", "ActionsTokenSource", "github_actions_identity"]

REQUEST_URL = "ACTIONS_ID_TOKEN_REQUEST_URL"
REQUEST_TOKEN = "ACTIONS_ID_TOKEN_REQUEST_TOKEN"  # noqa: S105  # a variable's name


class ActionsTokenSource:
    """Fetches the job's OIDC token from GitHub Actions' ID-token service (a callable for azure-identity).

    :param url: ``ACTIONS_ID_TOKEN_REQUEST_URL`` (https).
    :param request_token: ``ACTIONS_ID_TOKEN_REQUEST_TOKEN``.
    :param audience: the ``aud`` to ask for; Entra's federated credentials expect
        ``api://AzureADTokenExchange`` unless they name another.
    :param audiences: the app's federated credentials' audiences by (issuer, subject), from the
        bundle: when the job's token matches one whose audience is not ``audience``, the token is
        asked for again with that audience (and from then on).
    :param cafile: CA bundle to trust (``SSL_CERT_FILE``); TLS verification is never off.
    """

    def __init__(
        self,
        url: str,
        request_token: str,
        audience: str = TOKEN_EXCHANGE_AUDIENCE,
        *,
        audiences: Mapping[tuple[str, str], str] | None = None,
        cafile: str | None = None,
        timeout: float = 30,
    ) -> None:
        parts = urlsplit(url)
        if parts.scheme != "https" or not parts.hostname:
            raise InputError(f"{REQUEST_URL} must be an https URL (got a {parts.scheme or 'schemeless'} URL)")
        self._base = f"{url}{'&' if parts.query else '?'}audience="
        self.audience = audience
        self._audiences = dict(audiences or {})
        self._token = request_token
        self.host = parts.hostname
        self._context = ssl.create_default_context(cafile=cafile)
        self._timeout = timeout

    def __repr__(self) -> str:
        return f"ActionsTokenSource(host={self.host!r})"

    def __call__(self) -> str:
        """Return a fresh OIDC token, or raise ``ClientAuthenticationError`` saying why not."""
        token = self._fetch(self.audience)
        wanted = self._audiences.get(_issuer_and_subject(token)) if self._audiences else None
        if wanted is not None and wanted != self.audience:
            self.audience = wanted  # the matching federated credential's audience
            token = self._fetch(wanted)
        return token

    def _fetch(self, audience: str) -> str:
        request = urllib.request.Request(  # noqa: S310  # https checked in __init__
            self._base + quote(audience, safe=""),
            headers={"Authorization": f"bearer {self._token}", "Accept": "application/json"},
        )
        where = f"GitHub Actions' ID-token service ({REQUEST_URL}, host {self.host})"
        try:
            with urllib.request.urlopen(request, timeout=self._timeout, context=self._context) as answer:  # noqa: S310
                body: Any = json.loads(answer.read(1024 * 1024))
        except urllib.error.HTTPError as err:
            hint = (
                " (the job needs `permissions: id-token: write`, and the request token lives only as long as the job)"
                if err.code in (401, 403)
                else ""
            )
            raise ClientAuthenticationError(message=f"{where} answered HTTP {err.code}{hint}") from None
        except (urllib.error.URLError, OSError, TimeoutError) as err:
            reason = getattr(err, "reason", err)
            raise ClientAuthenticationError(message=f"{where} could not be reached: {reason}") from None
        except ValueError:
            raise ClientAuthenticationError(message=f"{where} answered something that is not JSON") from None
        value = body.get("value") if isinstance(body, dict) else None
        if not isinstance(value, str) or value.count(".") != 2:
            raise ClientAuthenticationError(message=f"{where} answered without a token in 'value'")
        return value


def _issuer_and_subject(token: str) -> tuple[str, str]:
    """The ``iss`` and ``sub`` claims of a JWT, unverified (Entra verifies it); empty if unreadable."""
    try:
        payload = token.split(".")[1]
        claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    except (IndexError, ValueError, binascii.Error):
        return "", ""
    if not isinstance(claims, dict):
        return "", ""
    return str(claims.get("iss", "")), str(claims.get("sub", ""))


def github_actions_identity(
    *,
    bundle: Bundle | None = None,
    cloud: str | None = None,
    client_id: str | None = None,
    tenant_id: str | None = None,
    environ: Mapping[str, str] | None = None,
    audience: str | None = None,
) -> Identity:
    """Sign in as the revoker app through its federated credential for this GitHub Actions job.

    The app is the bundle's (or ``--client-id`` / ``AZURE_CLIENT_ID``); the stack's
    ``federatedCredentials`` must hold this job's subject (an environment's, for a reviewed run).

    :param audience: the ``aud`` to ask GitHub for, exactly; default: the audience of the bundle's
        federated credential for this job's issuer and subject, else ``api://AzureADTokenExchange``.

    :raises InputError: the ACTIONS_* variables are missing (not in a job with ``id-token: write``),
        or no tenant or client id is known.
    """
    from azure.identity.aio import ClientAssertionCredential

    env = os.environ if environ is None else environ
    url, request_token = env.get(REQUEST_URL), env.get(REQUEST_TOKEN)
    if not (url and request_token):
        raise InputError(
            f"--credential github-actions needs {REQUEST_URL} and {REQUEST_TOKEN}: GitHub sets them in a job "
            "with `permissions: id-token: write`"
        )
    where = resolve_where(bundle=bundle, tenant_id=tenant_id, client_id=client_id, cloud=cloud, environ=env)
    tenant = where.tenant_id or env.get("AZURE_TENANT_ID") or ""
    client = where.client_id or env.get("AZURE_CLIENT_ID") or ""
    if not (tenant and client):
        raise InputError(
            "--credential github-actions needs the revoker app's tenant and client id: pass --credentials "
            "BUNDLE.json, or set AZURE_TENANT_ID and AZURE_CLIENT_ID"
        )
    verify = ca_bundle()
    known = {} if bundle is None else {(f.issuer, f.subject): f.audience for f in bundle.federated_credentials}
    source = ActionsTokenSource(
        url,
        request_token,
        audience or TOKEN_EXCHANGE_AUDIENCE,
        audiences=None if audience else known,
        cafile=verify,
    )
    extra: dict[str, Any] = {"connection_verify": verify} if verify else {}

    def make() -> Any:
        return ClientAssertionCredential(tenant, client, source, authority=where.authority_host, **extra)

    credential = RenewableCredential(make)
    return Identity.signed_in(
        replace(where, tenant_id=tenant, client_id=client),
        credential,
        kind=CredentialKind.GITHUB_ACTIONS,
        bundle=bundle,
        description=f"application {client} through GitHub Actions' OIDC token (federated credential)",
    )
