"""The secret scan every suite applies to what revoke-ops wrote: no key, token or client assertion."""

from __future__ import annotations

import re

JWT = re.compile(r"eyJ[A-Za-z0-9_-]{10,}\.[A-Za-z0-9_-]{10,}\.[A-Za-z0-9_-]{10,}")


def assert_no_secrets(written: str, credential_pem: bytes) -> None:
    """Fail when ``written`` holds any 24-character run of the private key, a JWT or an assertion.

    ``credential_pem`` is the private key followed by the certificate (the bundle's layout).
    """
    key_body = "".join(credential_pem.decode().split("-----BEGIN CERTIFICATE-----")[0].splitlines()[1:-1])
    assert len(key_body) > 100, "the scan needs the key to look for"
    for i in range(0, len(key_body) - 24, 24):
        assert key_body[i : i + 24] not in written, "private key material leaked"
    assert "PRIVATE KEY" not in written
    assert not JWT.search(written), "a token or client assertion leaked"
    assert "client_assertion" not in written
