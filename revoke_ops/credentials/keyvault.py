"""A certificate whose private key never leaves Azure Key Vault: the vault signs each client assertion.

``--key-vault-certificate https://VAULT.vault.azure.net/certificates/NAME[/VERSION]``: revoke-ops
reads the certificate's public part from the vault, builds the client assertion itself as Entra's
certificate-credential docs specify (a JWT with ``alg: PS256`` and the ``x5t#S256`` header, the
SHA-256 thumbprint of the certificate, base64url; ``aud`` the token endpoint, ``iss`` = ``sub`` = the
client id, ``jti``, ``nbf``, ``exp``) and has Key Vault sign its SHA-256 digest with the key's
``sign`` operation (azure-keyvault-keys ``CryptographyClient``). azure-identity's
``ClientAssertionCredential`` calls back for a fresh assertion whenever it needs a token.

That callback is synchronous in azure-identity's async credential too, so the vault's async client
cannot be awaited in it, and a sync sign call there would stop the event loop (every sender) for a
round trip to the vault. The sync ``ClientAssertionCredential`` is used instead, each token request
in a worker thread (:class:`~revoke_ops.credentials.identity.ThreadedCredential`).

The operator authenticates to Key Vault with their *own* azure-identity credential
(``DefaultAzureCredential``: ``az login``, environment variables, managed identity, ...), so every
signature is an audited Key Vault operation that RBAC and PIM can gate. The private key is never in
this process, on disk, or in Pulumi state.
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import time
import uuid
from collections.abc import Mapping
from datetime import datetime
from typing import TYPE_CHECKING, Any

from azure.core.exceptions import ClientAuthenticationError, HttpResponseError, ServiceRequestError

from revoke_ops.bundle import custom_cloud_allowed
from revoke_ops.credentials.identity import (
    CredentialKind,
    Identity,
    RenewableCredential,
    ThreadedCredential,
    ca_bundle,
)
from revoke_ops.credentials.tenant import resolve_where
from revoke_ops.errors import AuthError, InputError
from revoke_ops.facts import CLOUDS, KeyVaultCertificateRef, parse_key_vault_certificate
from revoke_ops.facts import thumbprint as certificate_thumbprint

if TYPE_CHECKING:
    from revoke_ops.bundle import Bundle

__all__ = ["KeyVaultCertificateRef", "KeyVaultSigner", "key_vault_identity", "parse_certificate_url"]

log = logging.getLogger(__name__)

ASSERTION_LIFETIME = 600


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def parse_certificate_url(url: str) -> KeyVaultCertificateRef:
    """Check a ``--key-vault-certificate`` URL.

    :raises InputError: not https, not a Key Vault host (nor a loopback test vault), or not
        ``/certificates/NAME[/VERSION]``; your own sign-in token is sent to that host.
    """
    try:
        return parse_key_vault_certificate(url)
    except ValueError as err:
        raise InputError(f"--key-vault-certificate {err}") from None


class KeyVaultSigner:
    """Builds client assertions signed by Key Vault (a callable for ``ClientAssertionCredential``).

    :param crypto: an azure-keyvault-keys ``CryptographyClient`` for the certificate's key.
    :param certificate_der: the certificate (public) whose SHA-256 thumbprint goes in ``x5t#S256``.
    """

    def __init__(self, crypto: Any, certificate_der: bytes, client_id: str, token_endpoint: str, where: str) -> None:
        self._crypto = crypto
        self.x5t_s256 = _b64url(hashlib.sha256(certificate_der).digest())
        self._client_id = client_id
        self._audience = token_endpoint
        self._where = where

    def __repr__(self) -> str:
        return f"KeyVaultSigner({self._where})"

    def __call__(self) -> str:
        from azure.keyvault.keys.crypto import SignatureAlgorithm

        now = int(time.time())
        header = {"alg": "PS256", "typ": "JWT", "x5t#S256": self.x5t_s256}
        claims = {
            "aud": self._audience,
            "iss": self._client_id,
            "sub": self._client_id,
            "jti": str(uuid.uuid4()),
            "iat": now,
            "nbf": now,
            "exp": now + ASSERTION_LIFETIME,
        }
        signing_input = ".".join(_b64url(json.dumps(part, separators=(",", ":")).encode()) for part in (header, claims))
        digest = hashlib.sha256(signing_input.encode()).digest()
        try:
            result = self._crypto.sign(SignatureAlgorithm.ps256, digest)
        except ClientAuthenticationError as err:
            raise ClientAuthenticationError(
                message=f"could not sign in to Key Vault with your own credential for {self._where}: "
                f"{str(err).splitlines()[0]}"
            ) from None
        except HttpResponseError as err:
            raise ClientAuthenticationError(message=_vault_refusal(err, "sign with", self._where)) from None
        except ServiceRequestError as err:
            raise ClientAuthenticationError(message=f"could not reach Key Vault for {self._where}: {err}") from None
        return f"{signing_input}.{_b64url(result.signature)}"


def _vault_refusal(err: HttpResponseError, action: str, where: str) -> str:
    status = getattr(err, "status_code", None)
    code = getattr(getattr(err, "error", None), "code", None) or ""
    text = f"Key Vault refused to {action} {where} (HTTP {status} {code})".strip()
    if status == 403:
        text += ": you need the key's sign and the certificate's get permission (Key Vault Crypto User and Key "
        "Vault Certificate User, or an access policy); activate your PIM role if it is eligible"
    elif status == 404:
        text += ": no such certificate (or version) in this vault"
    return text


def key_vault_identity(
    certificate_url: str,
    *,
    bundle: Bundle | None = None,
    cloud: str | None = None,
    client_id: str | None = None,
    tenant_id: str | None = None,
    environ: Mapping[str, str] | None = None,
    vault_credential: Any = None,
    allow_custom_cloud: bool | None = None,
) -> Identity:
    """Sign in as the revoker app with a certificate held (non-exportable) in Key Vault.

    :param certificate_url: ``https://VAULT.vault.azure.net/certificates/NAME[/VERSION]``.
    :param vault_credential: the operator's sync azure-identity credential for Key Vault
        (default: ``DefaultAzureCredential`` on the bundle's authority, no interactive browser).
    :param allow_custom_cloud: a loopback vault (the sandbox's emulated one) is accepted only when
        custom clouds are (``--allow-custom-cloud``; default ``REVOKE_OPS_ALLOW_CUSTOM_CLOUD=1``).
    :raises InputError: a malformed URL, a loopback vault outside the sandbox, no tenant or client id.
    :raises AuthError: Key Vault could not be signed in to, refused, or holds no such certificate.
    """
    from azure.identity import ClientAssertionCredential
    from azure.keyvault.certificates import CertificateClient
    from azure.keyvault.keys.crypto import CryptographyClient

    ref = parse_certificate_url(certificate_url)
    if ref.loopback and not custom_cloud_allowed(allow_custom_cloud):
        raise InputError(
            f"--key-vault-certificate {certificate_url}: a vault on this machine is the sandbox's emulated one; "
            "your own Key Vault token is sent there only with --allow-custom-cloud (or REVOKE_OPS_ALLOW_CUSTOM_CLOUD=1)"
        )
    where = resolve_where(bundle=bundle, tenant_id=tenant_id, client_id=client_id, cloud=cloud, environ=environ)
    if not (where.tenant_id and where.client_id):
        raise InputError(
            "--key-vault-certificate needs the revoker app's tenant and client id: pass --credentials BUNDLE.json, "
            "or --tenant-id and --client-id"
        )
    tenant, client = where.tenant_id, where.client_id
    verify = ca_bundle()
    transport: dict[str, Any] = {"connection_verify": verify} if verify else {}
    if vault_credential is None:
        from azure.identity import DefaultAzureCredential

        known = {c.authority_host for c in CLOUDS.values()}
        vault_credential = DefaultAzureCredential(
            authority=where.authority_host,
            exclude_interactive_browser_credential=True,
            # MSAL validates authorities it does not know (a custom cloud, the sandbox) unless told not to.
            disable_instance_discovery=where.authority_host not in known,
            **transport,
        )
    # Key Vault's challenge names the resource (vault.azure.net); a loopback test vault is not on that
    # domain, so only there is the SDK's resource check relaxed.
    options: dict[str, Any] = {"verify_challenge_resource": not ref.loopback, **transport}
    label = f"certificate {ref.name} in {ref.vault_url}"
    try:
        certificates = CertificateClient(ref.vault_url, vault_credential, **options)
        found = (
            certificates.get_certificate_version(ref.name, ref.version)
            if ref.version
            else certificates.get_certificate(ref.name)
        )
    except ClientAuthenticationError as err:
        raise AuthError(
            f"could not sign in to Key Vault with your own credential for {label}: {str(err).splitlines()[0]}\n"
            "  what to do: `az login` (or set azure-identity's variables) as an operator allowed to use the key"
        ) from err
    except HttpResponseError as err:
        raise AuthError(_vault_refusal(err, "read", label)) from err
    except ServiceRequestError as err:
        raise AuthError(f"could not reach Key Vault at {ref.vault_url}: {err}") from err
    if not found.cer or not found.key_id:
        raise AuthError(f"Key Vault returned {label} without its certificate or key id (still pending?)")
    der = bytes(found.cer)
    thumbprint = certificate_thumbprint(der)  # Entra's thumbprint is SHA-1
    if bundle is not None and thumbprint not in {c.thumbprint for c in bundle.certificates}:
        log.warning(
            "the Key Vault certificate %s (%s) is not among the bundle's registered certificates: sign-in will fail "
            "with AADSTS700027 unless it was added since (a keyVaultCertificate slot, then `pulumi up`)",
            thumbprint,
            label,
        )
    crypto = CryptographyClient(found.key_id, vault_credential, **options)
    token_endpoint = f"{where.authority_host.rstrip('/')}/{tenant}/oauth2/v2.0/token"
    signer = KeyVaultSigner(crypto, der, client, token_endpoint, label)

    def make() -> Any:
        # sync: the signer's call to the vault runs in the worker thread, not on the event loop
        sync = ClientAssertionCredential(tenant, client, signer, authority=where.authority_host, **transport)
        return ThreadedCredential(sync)

    credential = RenewableCredential(make)
    not_after: datetime | None = getattr(found.properties, "expires_on", None)
    return Identity.signed_in(
        where,
        credential,
        kind=CredentialKind.KEY_VAULT,
        bundle=bundle,
        description=f"application {client} with Key Vault {label} (thumbprint {thumbprint})",
        certificate_thumbprint=thumbprint,
        certificate_not_after=not_after,
    )
