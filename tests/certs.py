"""Certificates made on the fly for tests: nothing committed can expire under the tests."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

from revoke_ops.facts import thumbprint


def make_certificate(
    *,
    key_type: str = "rsa",
    bits: int = 2048,
    days: int = 365,
    not_before: datetime | None = None,
    common_name: str = "test operator cert",
) -> tuple[str, str]:
    """Return (certificate PEM, private key PEM) for a self-signed certificate."""
    key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey
    key = ec.generate_private_key(ec.SECP256R1()) if key_type == "ec" else rsa.generate_private_key(65537, bits)
    start = not_before or datetime.now(UTC) - timedelta(minutes=5)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(start + timedelta(days=days))
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    return cert.public_bytes(serialization.Encoding.PEM).decode(), key_pem


def sha256_fingerprint(cert_pem: str) -> str:
    """Lower-case hex, as the stack loader names a supplied certificate."""
    return thumbprint(cert_pem, "sha256").lower()


def sha1_thumbprint(cert_pem: str) -> str:
    return thumbprint(cert_pem)
