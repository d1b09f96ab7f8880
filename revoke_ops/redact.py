"""Take secrets out of text before it is printed, logged or journaled.

Errors can carry what a misbehaving peer echoed back: a token endpoint that echoes the request body
(the client assertion), a gateway that echoes headers (``Authorization: Bearer eyJ...``), a bundle
that is a bare PEM string. Every error text revoke-ops shows or records passes through
:func:`redact`, which replaces:

- JWT-shaped strings (access tokens, ID tokens, client assertions): ``eyJ...``;
- the values of OAuth form/JSON fields that carry secrets (``client_assertion=...``,
  ``"refresh_token": "..."``, ``client_secret``, ``device_code``...);
- ``Bearer ...`` credentials;
- PEM blocks (keys and certificates), complete or cut off;
- long base64 runs that look like key material (what is left of a PEM body without its header).

Object ids, thumbprints (hex), AADSTS codes, URLs and file paths stay readable.
"""

from __future__ import annotations

import logging
import re

__all__ = ["REDACTED", "RedactingFilter", "redact"]

REDACTED = "[redacted]"

_PEM = re.compile(r"-----BEGIN [A-Z0-9 ]+-----.*?(?:-----END [A-Z0-9 ]+-----|\Z)", re.DOTALL)
_JWT = re.compile(r"\beyJ[A-Za-z0-9_-]{8,}(?:\.[A-Za-z0-9_-]*){0,2}")
_BEARER = re.compile(r"(\bBearer\s+)[^\s\"',;}]+", re.IGNORECASE)
_SECRET_FIELDS = (
    "client_assertion",
    "client_secret",
    "assertion",
    "access_token",
    "refresh_token",
    "id_token",
    "device_code",
    "system_access_token",
    "code_verifier",
    "privateKeyPem",
)
_FIELD = re.compile(
    r"(?P<name>\b(?:" + "|".join(_SECRET_FIELDS) + r"))(?P<sep>\\?[\"']?\s*[=:]\s*\\?[\"']?)(?P<value>[^&\s\"'\\,}]+)",
    re.IGNORECASE,
)
# base64 of DER (keys, certificates) in runs long enough that they cannot be a name or an id; the
# JSON-escaped body of a PEM block breaks into 64-character lines.
_BASE64 = re.compile(r"[A-Za-z0-9+/]{60,}={0,2}")


def _base64_run(match: re.Match[str]) -> str:
    run = match.group(0)
    if re.fullmatch(r"[0-9A-Fa-f]+", run):  # thumbprints and other hex: not secret
        return run
    if not (re.search(r"[a-z]", run) and re.search(r"[A-Z]", run) and re.search(r"[0-9]", run)):
        return run
    return REDACTED


def redact(text: str) -> str:
    """Return ``text`` with tokens, assertions, Bearer values, PEM blocks and key-like base64 replaced."""
    if not text:
        return text
    text = _PEM.sub("[redacted PEM block]", text)
    text = _FIELD.sub(lambda m: f"{m.group('name')}{m.group('sep')}{REDACTED}", text)
    text = _BEARER.sub(lambda m: f"{m.group(1)}{REDACTED}", text)
    text = _JWT.sub(REDACTED, text)
    return _BASE64.sub(_base64_run, text)


class RedactingFilter(logging.Filter):
    """A logging filter that redacts each record's formatted message (install it on handlers)."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        cleaned = redact(message)
        if cleaned != message:
            record.msg, record.args = cleaned, None
        return True
