"""Credentials for Microsoft Graph, from azure-identity only.

App-only with a certificate (from the bundle, ``--certificate``, or the azure-identity environment
variables), azure-identity's managed identity / workload identity / Azure Pipelines credentials, or
delegated (an operator signs in with the device code flow or an interactive browser).

azure-core's network logging (``logging_enable``) writes client assertions and tokens: it is never
switched on here, not even under ``--debug``.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import os
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from azure.core.credentials import AccessToken
from azure.core.exceptions import ClientAuthenticationError, ServiceRequestError, ServiceResponseError
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from revoke_ops import facts
from revoke_ops.bundle import Bundle, refuse_loose_permissions
from revoke_ops.errors import AuthError, InputError
from revoke_ops.facts import CLOUDS

__all__ = [
    "Identity",
    "ca_bundle",
    "certificate_identity",
    "delegated_identity",
    "explain_auth_error",
    "platform_identity",
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
}


def ca_bundle() -> str | None:
    """The CA file to trust, from the standard variables (SSL_CERT_FILE, then REQUESTS_CA_BUNDLE)."""
    return os.environ.get("SSL_CERT_FILE") or os.environ.get("REQUESTS_CA_BUNDLE") or None


def explain_auth_error(err: Exception, what: str) -> AuthError:
    """Turn azure-identity's error into an :class:`AuthError` that says what to do (AADSTS code kept)."""
    text = str(getattr(err, "message", None) or err)
    match = re.search(r"AADSTS(\d+)", text)
    code = f"AADSTS{match.group(1)}" if match else None
    first = text.split(" Trace ID:")[0].strip()
    hint = AADSTS_HINTS.get(match.group(1)) if match else None
    message = f"could not get a token for {what}: {first}"
    if hint:
        message += f"\n  what to do: {hint}"
    return AuthError(message, code)


def unreachable_error(err: Exception, authority_host: str) -> AuthError:
    """The identity platform could not be reached (or answered nothing usable): say where and why."""
    text = re.sub(r" ssl:<[^>]*>", "", str(getattr(err, "message", None) or err)).strip()
    if "CERTIFICATE_VERIFY_FAILED" in text or "certificate verify failed" in text:
        hint = (
            "the server's TLS certificate is not trusted: point SSL_CERT_FILE (and REQUESTS_CA_BUNDLE) at the CA "
            "bundle that signs it (a TLS-inspecting proxy's CA, for instance); verification is never switched off"
        )
    else:
        hint = (
            "check the authority host (the bundle's authorityHost, or --cloud), the network, and any proxy "
            "(HTTPS_PROXY / NO_PROXY)"
        )
    return AuthError(f"could not reach the identity platform at {authority_host}: {text}\n  what to do: {hint}")


@dataclass
class Identity:
    """Who revoke-ops acts as, and where its requests go."""

    tenant_id: str
    client_id: str | None
    authority_host: str
    graph_endpoint: str
    graph_scope: str
    credential: Any  # an azure.core AsyncTokenCredential
    kind: str  # certificate | managed-identity | workload-identity | azure-pipelines | delegated
    bundle: Bundle | None = None
    certificate_thumbprint: str | None = None
    certificate_not_after: datetime | None = None
    delegated: bool = False
    description: str = ""
    _closers: list[Callable[[], Any]] = field(default_factory=list)

    async def token(self) -> AccessToken:
        """Acquire a token for Graph, or raise :class:`AuthError` explaining why not."""
        try:
            token: AccessToken = await self.credential.get_token(self.graph_scope)
        except ClientAuthenticationError as err:
            raise explain_auth_error(err, f"{self.description} in tenant {self.tenant_id}") from err
        except (ServiceRequestError, ServiceResponseError) as err:
            raise unreachable_error(err, self.authority_host) from err
        return token

    async def close(self) -> None:
        close = getattr(self.credential, "close", None)
        if close is not None:
            await close()


def token_claims(token: str) -> dict[str, Any]:
    """Decode an access token's claims (for reporting what it carries; never logged)."""
    try:
        payload = token.split(".")[1]
        data: dict[str, Any] = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    except (IndexError, ValueError):
        return {}
    return data


def _endpoints(bundle: Bundle | None, cloud: str | None) -> tuple[str, str, str]:
    if bundle is not None:
        return bundle.authority_host, bundle.graph_endpoint, bundle.graph_scope
    c = CLOUDS.get(cloud or "public")
    if c is None:
        raise InputError(f"--cloud must be one of {', '.join(CLOUDS)} (got {cloud!r}); use a bundle for a custom cloud")
    return c.authority_host, c.graph_endpoint, c.graph_scope


def _read_pem(path: Path, what: str) -> bytes:
    try:
        data = path.read_bytes()
    except OSError as err:
        raise InputError(f"cannot read {what} {path}: {err.strerror}") from err
    if b"PRIVATE KEY" in data:
        refuse_loose_permissions(path, what)
    return data


def _join_key_and_certificate(pem: bytes, source: str, bundle: Bundle | None) -> tuple[bytes, str, datetime]:
    """Check a PEM holding an RSA key and its certificate; return it with the cert's thumbprint."""
    try:
        key = serialization.load_pem_private_key(pem, password=None)
    except (ValueError, TypeError) as err:
        raise InputError(f"{source} holds no readable unencrypted PEM private key ({type(err).__name__})") from None
    if not isinstance(key, rsa.RSAPrivateKey):
        raise InputError(
            f"{source}: the private key is not RSA; azure-identity certificate credentials need an RSA key"
        )
    try:
        certs = x509.load_pem_x509_certificates(pem)
    except ValueError:
        certs = []
    wanted = key.public_key().public_numbers()

    def matches(c: x509.Certificate) -> bool:
        public = c.public_key()
        return isinstance(public, rsa.RSAPublicKey) and public.public_numbers() == wanted

    cert = next((c for c in certs if matches(c)), None)
    if cert is None:
        raise InputError(f"{source} holds no certificate matching its private key")
    thumbprint = facts.thumbprint(cert.public_bytes(serialization.Encoding.DER))
    if bundle is not None and thumbprint not in {c.thumbprint for c in bundle.certificates}:
        registered = ", ".join(c.thumbprint for c in bundle.certificates)
        log.warning(
            "the certificate %s (from %s) is not among the bundle's registered certificates (%s): "
            "sign-in will fail with AADSTS700027 unless it was added since",
            thumbprint,
            source,
            registered,
        )
    return pem, thumbprint, cert.not_valid_after_utc


def certificate_identity(
    *,
    bundle: Bundle | None = None,
    certificate: Path | None = None,
    cloud: str | None = None,
    environ: dict[str, str] | None = None,
) -> Identity:
    """App-only credentials with a certificate.

    From the bundle (its ``privateKeyPem`` + ``certificatePem``, or ``certificate`` when the bundle
    has no key), else from the azure-identity variables ``AZURE_TENANT_ID``, ``AZURE_CLIENT_ID``,
    ``AZURE_CLIENT_CERTIFICATE_PATH`` (with ``cloud``).

    :raises InputError: missing or unreadable key, a non-RSA key, a key file others can read.
    """
    from azure.identity.aio import CertificateCredential

    env = dict(os.environ if environ is None else environ)
    if bundle is not None:
        tenant, client = bundle.tenant_id, bundle.client_id
        if certificate is not None:
            pem = _read_pem(certificate, "the certificate file")
            source = str(certificate)
        elif bundle.private_key_pem and bundle.certificate_pem:
            pem = (bundle.private_key_pem + "\n" + bundle.certificate_pem).encode()
            source = "the bundle"
        else:
            raise InputError(
                "the bundle holds no private key (its certificates were supplied by an operator): pass "
                "--certificate KEY_AND_CERT.pem with the private key and certificate of one of the bundle's slots"
            )
    else:
        missing = [k for k in ("AZURE_TENANT_ID", "AZURE_CLIENT_ID", "AZURE_CLIENT_CERTIFICATE_PATH") if not env.get(k)]
        if missing:
            raise InputError(
                f"no credentials: pass --credentials BUNDLE.json, or set {', '.join(missing)} "
                "(azure-identity's certificate variables), or choose --credential managed-identity|workload-identity|"
                "azure-pipelines, or --delegated"
            )
        tenant, client = env["AZURE_TENANT_ID"], env["AZURE_CLIENT_ID"]
        path = Path(certificate or env["AZURE_CLIENT_CERTIFICATE_PATH"])
        pem = _read_pem(path, "the certificate file")
        source = str(path)
    pem, thumbprint, not_after = _join_key_and_certificate(pem, source, bundle)
    authority, graph, scope = _endpoints(bundle, cloud)
    verify = ca_bundle()
    kwargs: dict[str, Any] = {"authority": authority}
    if verify:
        kwargs["connection_verify"] = verify
    credential = CertificateCredential(tenant, client, certificate_data=pem, **kwargs)
    return Identity(
        tenant_id=tenant,
        client_id=client,
        authority_host=authority,
        graph_endpoint=graph,
        graph_scope=scope,
        credential=credential,
        kind="certificate",
        bundle=bundle,
        certificate_thumbprint=thumbprint,
        certificate_not_after=not_after,
        description=f"application {client} with certificate {thumbprint}",
    )


def platform_identity(
    kind: str,
    *,
    bundle: Bundle | None = None,
    cloud: str | None = None,
    client_id: str | None = None,
    tenant_id: str | None = None,
) -> Identity:
    """azure-identity's own credentials for automation: no certificate, no secret.

    :param kind: ``managed-identity``, ``workload-identity`` or ``azure-pipelines``.
    """
    from azure.identity import aio

    authority, graph, scope = _endpoints(bundle, cloud)
    tenant = tenant_id or os.environ.get("AZURE_TENANT_ID") or (bundle.tenant_id if bundle else "")
    verify = ca_bundle()
    extra: dict[str, Any] = {"connection_verify": verify} if verify else {}
    credential: Any
    if kind == "managed-identity":
        # The managed identity's own client id (user-assigned) — not the revoker app's.
        mi_client = client_id or os.environ.get("AZURE_CLIENT_ID")
        credential = (
            aio.ManagedIdentityCredential(client_id=mi_client, **extra)
            if mi_client
            else aio.ManagedIdentityCredential(**extra)
        )
        description = f"managed identity {mi_client or '(system-assigned)'}"
        client = mi_client
    elif kind == "workload-identity":
        token_file = os.environ.get("AZURE_FEDERATED_TOKEN_FILE")
        client = client_id or os.environ.get("AZURE_CLIENT_ID")
        if not (tenant and client and token_file):
            raise InputError(
                "--credential workload-identity needs AZURE_TENANT_ID, AZURE_CLIENT_ID and AZURE_FEDERATED_TOKEN_FILE "
                "(set by the Kubernetes workload identity webhook)"
            )
        credential = aio.WorkloadIdentityCredential(
            tenant_id=tenant, client_id=client, token_file_path=token_file, authority=authority, **extra
        )
        description = f"workload identity {client}"
    elif kind == "azure-pipelines":
        connection = os.environ.get("AZURESUBSCRIPTION_SERVICE_CONNECTION_ID")
        client = client_id or os.environ.get("AZURESUBSCRIPTION_CLIENT_ID")
        tenant = tenant or os.environ.get("AZURESUBSCRIPTION_TENANT_ID", "")
        token = os.environ.get("SYSTEM_ACCESSTOKEN")
        if not (tenant and client and connection and token):
            raise InputError(
                "--credential azure-pipelines needs AZURESUBSCRIPTION_TENANT_ID, AZURESUBSCRIPTION_CLIENT_ID, "
                "AZURESUBSCRIPTION_SERVICE_CONNECTION_ID and SYSTEM_ACCESSTOKEN (an AzureCLI@2 task with a "
                "workload-identity service connection sets them)"
            )
        credential = aio.AzurePipelinesCredential(
            tenant_id=tenant,
            client_id=client,
            service_connection_id=connection,
            system_access_token=token,
            authority=authority,
            **extra,
        )
        description = f"Azure Pipelines service connection {connection}"
    else:
        raise InputError(
            f"--credential must be one of managed-identity, workload-identity, azure-pipelines (got {kind!r})"
        )
    if not tenant:
        raise InputError(
            f"--credential {kind} needs the tenant id: pass --credentials BUNDLE.json or set AZURE_TENANT_ID"
        )
    return Identity(tenant, client, authority, graph, scope, credential, kind, bundle, description=description)


class _ThreadedSyncCredential:
    """An async face for a sync azure-identity credential: every call runs in a worker thread.

    Delegated credentials exist only in the sync library; calling one on the event loop would
    block it, so the engine only ever awaits this wrapper.
    """

    def __init__(self, credential: Any) -> None:
        self._credential = credential

    async def get_token(self, *scopes: str, **kwargs: Any) -> AccessToken:
        token: AccessToken = await asyncio.to_thread(self._credential.get_token, *scopes, **kwargs)
        return token

    async def close(self) -> None:
        close = getattr(self._credential, "close", None)
        if close is not None:
            await asyncio.to_thread(close)

    async def __aenter__(self) -> _ThreadedSyncCredential:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()


def delegated_identity(
    method: str,
    *,
    bundle: Bundle | None = None,
    client_id: str | None = None,
    tenant_id: str | None = None,
    cloud: str | None = None,
    prompt: Callable[[str, str, datetime], None] | None = None,
) -> Identity:
    """An operator signs in (device code, or an interactive browser) with the app's client id.

    The token is acquired before the engine starts (:meth:`Identity.token` is called by the
    caller first); refreshes later run in a worker thread.
    """
    from azure.identity import DeviceCodeCredential, InteractiveBrowserCredential

    client = client_id or (bundle.client_id if bundle else None)
    tenant = tenant_id or (bundle.tenant_id if bundle else None)
    if not client or not tenant:
        raise InputError("--delegated needs the app's client id and tenant: pass --credentials BUNDLE.json")
    if bundle is not None and not bundle.delegated_permissions:
        raise AuthError(
            "this stack granted no delegated permission (permissionMode application): operators cannot sign in "
            "with it; "
            "set revoke-sessions:permissionMode to delegated or both and run `pulumi up`",
            code="NoDelegatedConsent",
        )
    authority, graph, scope = _endpoints(bundle, cloud)
    common: dict[str, Any] = {"tenant_id": tenant, "authority": authority, "disable_instance_discovery": True}
    sync: Any
    if method == "device-code":
        sync = (
            DeviceCodeCredential(client, prompt_callback=prompt, **common)
            if prompt
            else DeviceCodeCredential(client, **common)
        )
    elif method == "browser":
        sync = InteractiveBrowserCredential(client_id=client, **common)
    else:
        raise InputError(f"--delegated must be device-code or browser (got {method!r})")
    return Identity(
        tenant,
        client,
        authority,
        graph,
        scope,
        _ThreadedSyncCredential(sync),
        "delegated",
        bundle,
        delegated=True,
        description=f"your sign-in to application {client}",
    )


def certificate_days_left(identity: Identity, now: datetime | None = None) -> float | None:
    if identity.certificate_not_after is None:
        return None
    return (identity.certificate_not_after - (now or datetime.now(UTC))).total_seconds() / 86400
