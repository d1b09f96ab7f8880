"""App-only credentials with a certificate, and what can be checked about one offline."""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from revoke_ops import facts
from revoke_ops.bundle import Bundle, refuse_untrusted_file
from revoke_ops.credentials.identity import CredentialKind, Identity, RenewableCredential, ca_bundle
from revoke_ops.credentials.tenant import resolve_where
from revoke_ops.errors import InputError

__all__ = ["KeyAndCertificate", "bundle_certificate_problems", "certificate_identity", "key_and_certificate"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class KeyAndCertificate:
    """A PEM holding an RSA private key and its certificate, as azure-identity wants it."""

    pem: bytes
    thumbprint: str  # SHA-1, upper-case hex: Entra's customKeyIdentifier
    not_before: datetime
    not_after: datetime

    def __repr__(self) -> str:
        return f"KeyAndCertificate(thumbprint={self.thumbprint!r}, not_after={self.not_after.isoformat()})"


def _read_pem(path: Path, what: str) -> bytes:
    refuse_untrusted_file(path, what)
    try:
        return path.read_bytes()
    except OSError as err:
        raise InputError(f"cannot read {what} {path}: {err.strerror}") from err


def key_and_certificate(pem: bytes, source: str) -> KeyAndCertificate:
    """Check a PEM holding an RSA key and the certificate that matches it.

    :raises InputError: no readable unencrypted key, a non-RSA key, no certificate matching the key
        (never quoting the key).
    """
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
        raise InputError(
            f"{source} holds no certificate matching its private key"
            + (f" (it holds {len(certs)} certificate(s) for other keys)" if certs else "")
        )
    thumbprint = facts.thumbprint(cert.public_bytes(serialization.Encoding.DER))
    return KeyAndCertificate(pem, thumbprint, cert.not_valid_before_utc, cert.not_valid_after_utc)


def bundle_certificate_problems(bundle: Bundle, now: datetime | None = None) -> tuple[list[str], list[str]]:
    """What can be checked offline about a bundle's key and certificate: (problems, notes).

    Problems: the key does not match the certificate, the certificate is expired or not yet
    valid, its thumbprint is not among the bundle's registered certificates. Notes: registered
    certificates that expired or expire within 30 days.
    """
    now = now or datetime.now(UTC)
    problems: list[str] = []
    notes: list[str] = []
    for info in bundle.certificates:
        try:
            not_after = datetime.strptime(info.not_after, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
        except ValueError:
            continue
        days = (not_after - now).total_seconds() / 86400
        if days <= 0:
            notes.append(f"certificate slot {info.slot} ({info.thumbprint}) expired on {info.not_after}")
        elif days < 30:
            notes.append(f"certificate slot {info.slot} ({info.thumbprint}) expires in {days:.0f} days: rotate it")
    if not (bundle.private_key_pem and bundle.certificate_pem):
        return problems, notes
    try:
        pair = key_and_certificate((bundle.private_key_pem + "\n" + bundle.certificate_pem).encode(), "the bundle")
    except InputError as err:
        return [str(err)], notes
    if pair.not_after <= now:
        problems.append(f"the bundle's certificate {pair.thumbprint} expired on {pair.not_after:%Y-%m-%d %H:%M} UTC")
    if pair.not_before > now:
        problems.append(
            f"the bundle's certificate {pair.thumbprint} is not valid before {pair.not_before:%Y-%m-%d %H:%M} UTC "
            "(check this machine's clock)"
        )
    registered = {c.thumbprint for c in bundle.certificates}
    if pair.thumbprint not in registered:
        problems.append(
            f"the bundle's certificate {pair.thumbprint} is not among its registered certificates "
            f"({', '.join(sorted(registered))}): sign-in would fail with AADSTS700027"
        )
    return problems, notes


def certificate_identity(
    *,
    bundle: Bundle | None = None,
    certificate: Path | None = None,
    cloud: str | None = None,
    tenant_id: str | None = None,
    client_id: str | None = None,
    environ: Mapping[str, str] | None = None,
) -> Identity:
    """App-only credentials with a certificate.

    From the bundle (its ``privateKeyPem`` + ``certificatePem``, or ``certificate`` when the bundle
    has no key), else from the azure-identity variables ``AZURE_TENANT_ID``, ``AZURE_CLIENT_ID``,
    ``AZURE_CLIENT_CERTIFICATE_PATH`` and ``AZURE_AUTHORITY_HOST`` (or ``tenant_id``, ``client_id``,
    ``certificate``, ``cloud``).

    :raises InputError: missing or unreadable key, a non-RSA key, a key file others can read or
        another user owns, options that conflict with the bundle.
    """
    from azure.identity.aio import CertificateCredential

    env = os.environ if environ is None else environ
    where = resolve_where(bundle=bundle, tenant_id=tenant_id, client_id=client_id, cloud=cloud, environ=env)
    if bundle is not None:
        if certificate is not None:
            pem = _read_pem(certificate, "the certificate file")
            source = str(certificate)
        elif bundle.private_key_pem and bundle.certificate_pem:
            pem = (bundle.private_key_pem + "\n" + bundle.certificate_pem).encode()
            source = "the bundle"
        else:
            raise InputError(_no_key_in_bundle(bundle))
    else:
        path_value = str(certificate) if certificate else env.get("AZURE_CLIENT_CERTIFICATE_PATH")
        missing = [
            name
            for name, value in (
                ("AZURE_TENANT_ID", where.tenant_id),
                ("AZURE_CLIENT_ID", where.client_id),
                ("AZURE_CLIENT_CERTIFICATE_PATH", path_value),
            )
            if not value
        ]
        if missing:
            raise InputError(
                f"no credentials: pass --credentials BUNDLE.json, or set {', '.join(missing)} "
                "(azure-identity's certificate variables), or choose --credential managed-identity|workload-identity|"
                "azure-pipelines, or --delegated"
            )
        path = Path(str(path_value))
        pem = _read_pem(path, "the certificate file")
        source = str(path)
    pair = key_and_certificate(pem, source)
    if bundle is not None and pair.thumbprint not in {c.thumbprint for c in bundle.certificates}:
        log.warning(
            "the certificate %s (from %s) is not among the bundle's registered certificates (%s): "
            "sign-in will fail with AADSTS700027 unless it was added since",
            pair.thumbprint,
            source,
            ", ".join(c.thumbprint for c in bundle.certificates),
        )
    tenant, client = str(where.tenant_id), str(where.client_id)
    verify = ca_bundle()
    kwargs: dict[str, Any] = {"authority": where.authority_host}
    if verify:
        kwargs["connection_verify"] = verify
    credential = RenewableCredential(lambda: CertificateCredential(tenant, client, certificate_data=pair.pem, **kwargs))
    return Identity.signed_in(
        where,
        credential,
        kind=CredentialKind.CERTIFICATE,
        bundle=bundle,
        certificate_thumbprint=pair.thumbprint,
        certificate_not_after=pair.not_after,
        description=f"application {client} with certificate {pair.thumbprint}",
    )


def _no_key_in_bundle(bundle: Bundle) -> str:
    """What to do when the bundle holds no private key: depends on how the stack lets the app sign in."""
    vault = [c.key_vault_certificate for c in bundle.certificates if c.key_vault_certificate]
    if vault:
        return (
            "the bundle holds no private key: its certificate is held by Key Vault; pass --key-vault-certificate "
            f"{vault[-1]} (the vault signs, with your own sign-in)"
        )
    if not bundle.certificates:
        return (
            "this stack has no certificate (it signs in through federated credentials only): in a GitHub Actions job "
            "use --credential github-actions, in Kubernetes --credential workload-identity, in Azure Pipelines "
            "--credential azure-pipelines"
        )
    return (
        "the bundle holds no private key (its certificates were supplied by an operator): pass "
        "--certificate KEY_AND_CERT.pem with the private key and certificate of one of the bundle's slots"
    )
