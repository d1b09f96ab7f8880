"""Entra's OAuth answers, shared by the identity platform's modules: the error shape and base64url."""

from __future__ import annotations

import base64
import uuid
from datetime import UTC, datetime
from typing import Any

#: Lifetime (seconds) of the access and ID tokens the sandbox issues.
TOKEN_LIFETIME = 3600


#: the resource (audience) of Key Vault tokens
KEYVAULT_RESOURCE = "https://vault.azure.net"


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


class TokenError(Exception):
    """An OAuth error response: ``error`` code, AADSTS number and text."""

    def __init__(self, error: str, code: int, text: str, status: int = 400) -> None:
        super().__init__(f"AADSTS{code}: {text}")
        self.error = error
        self.code = code
        self.text = text
        self.status = status

    def body(self) -> dict[str, Any]:
        trace, correlation = str(uuid.uuid4()), str(uuid.uuid4())
        stamp = datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%SZ")
        return {
            "error": self.error,
            "error_description": f"AADSTS{self.code}: {self.text} Trace ID: {trace} Correlation ID: {correlation} "
            f"Timestamp: {stamp}",
            "error_codes": [self.code],
            "timestamp": stamp,
            "trace_id": trace,
            "correlation_id": correlation,
            "error_uri": f"https://login.microsoftonline.com/error?code={self.code}",
        }
