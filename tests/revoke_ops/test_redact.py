"""Secrets a misbehaving peer echoes back never reach output, logs or the journal (issue 10 #6, #10)."""

from __future__ import annotations

import base64
import json
import os
import ssl
import subprocess
import sys
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

from revoke_ops.journal import Journal
from revoke_ops.redact import redact
from tests.leaks import JWT
from tests.revoke_ops.test_bundle import with_key, write

TOKEN = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ0aGUtc2VjcmV0LXN1YmplY3QifQ.c2lnbmF0dXJlLXRoYXQtaXMtc2VjcmV0"


@pytest.mark.parametrize(
    ("text", "kept"),
    [
        (f"AADSTS7000215: echo: grant_type=client_credentials&client_assertion={TOKEN}&scope=x", "AADSTS7000215"),
        (f'{{"client_assertion": "{TOKEN}", "error": "invalid_client"}}', "invalid_client"),
        (f"gateway said: Authorization: Bearer {TOKEN[:40]}", "gateway said"),
        (f"refresh_token={TOKEN[5:]}&client_id=abc", "client_id=abc"),
        ("-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASC\n-----END PRIVATE KEY-----", ""),
        ("cut off: -----BEGIN RSA PRIVATE KEY-----\nMIIEvQIBADANBgkqhkiG9w0B", "cut off"),
    ],
)
def test_redact_removes_tokens_assertions_bearer_values_and_pem(text: str, kept: str):
    cleaned = redact(text)
    assert "eyJ" not in cleaned and "MIIEvQ" not in cleaned and TOKEN[5:30] not in cleaned, cleaned
    assert kept in cleaned


def test_redact_keeps_what_an_operator_needs():
    text = (
        "could not get a token for application 0000abcd-0000-0000-0000-000000000002 with certificate "
        "FE802D6FC8F6CF0F806BD5434017B9845F96E004 (A7454AA382629FD775C83EC7EAD7B248E22420F27098FD3BC1AA281B0E1CCC3D) "
        "in tenant 5a1db0c5-0000-4000-8000-00000000beef: AADSTS700027 at https://login.microsoftonline.com, "
        "journal /home/op/.local/state/revoke-ops/journals/2026-12-07T14-00-00Z.jsonl; code Authorization_RequestDenied"
    )
    assert redact(text) == text


def test_key_like_base64_is_redacted_without_its_header():
    _cert, key = with_key()["certificatePem"], with_key()["privateKeyPem"]
    body = "".join(key.splitlines()[1:-1])
    assert body[:60] not in redact(f"value {body} is invalid")
    escaped = json.dumps(key)  # a JSON-escaped PEM: 64-character lines between \n
    assert key.splitlines()[2] not in redact(escaped)


def test_journal_reasons_are_redacted(tmp_path: Path):
    journal = Journal(tmp_path / "j.jsonl")
    journal.outcome(id="x", outcome="failed", reason=f"gateway echoed Authorization: Bearer {TOKEN}")
    journal.close()
    text = (tmp_path / "j.jsonl").read_text()
    assert "Bearer [redacted]" in text and "eyJ" not in text


# -- end to end: a token endpoint and a Graph gateway that echo what they were sent ----------------
def _tls(tmp_path: Path) -> tuple[Path, Path, Path]:
    """A CA (trusted through SSL_CERT_FILE) and a server certificate for 127.0.0.1 signed by it."""
    ca_key = rsa.generate_private_key(65537, 2048)
    now = datetime.now(UTC) - timedelta(minutes=5)
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "echo test CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    key = rsa.generate_private_key(65537, 2048)
    import ipaddress

    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False)
        .sign(ca_key, hashes.SHA256())
    )
    paths = tmp_path / "ca.pem", tmp_path / "server.pem", tmp_path / "server.key"
    paths[0].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    paths[1].write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    paths[2].write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return paths


def _fake_token() -> str:
    def part(data: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(data).encode()).decode().rstrip("=")

    claims = {"roles": ["User.RevokeSessions.All"], "tid": "5a1db0c5-0000-4000-8000-00000000beef", "exp": 9999999999}
    return f"{part({'alg': 'RS256', 'typ': 'JWT'})}.{part(claims)}.{part({'sig': 'x' * 40})}"


class Echo(BaseHTTPRequestHandler):
    """The token endpoint echoes the request body (server mode "bad") or issues a token ("good");
    Graph answers every request 403 with the request's Authorization header in the message."""

    def log_message(self, *args: Any) -> None:
        pass

    def _answer(self, status: int, body: Any) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_POST(self) -> None:  # http.server's naming
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0)).decode()
        token_request = self.path.endswith("/oauth2/v2.0/token")
        if token_request and getattr(self.server, "mode", "") == "bad":
            self._answer(400, {"error": "invalid_client", "error_description": f"AADSTS7000215: you sent {body}"})
        elif token_request:
            self._answer(200, {"access_token": _fake_token(), "expires_in": 3600, "token_type": "Bearer"})
        elif self.path.endswith("/$batch"):
            denied = {"code": "Authorization_RequestDenied", "message": f"echo {self.headers.get('Authorization')}"}
            items = [{"id": r["id"], "status": 403, "body": {"error": denied}} for r in json.loads(body)["requests"]]
            self._answer(200, {"responses": items})
        else:
            self.do_GET()

    def do_GET(self) -> None:
        message = f"echo Authorization: {self.headers.get('Authorization')}"
        self._answer(403, {"error": {"code": "Authorization_RequestDenied", "message": message}})


@pytest.fixture(params=["bad", "good"])
def echo(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[tuple[str, Path]]:
    ca, cert, key = _tls(tmp_path)
    server = ThreadingHTTPServer(("127.0.0.1", 0), Echo)
    server.mode = request.param  # type: ignore[attr-defined]
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"https://127.0.0.1:{server.server_address[1]}", ca
    finally:
        server.shutdown()
        server.server_close()


def _run(ca: Path, *args: str) -> subprocess.CompletedProcess[str]:
    exe = Path(sys.executable).parent / "revoke-ops"
    env = {**os.environ, "SSL_CERT_FILE": str(ca), "REQUESTS_CA_BUNDLE": str(ca), "REVOKE_OPS_ALLOW_CUSTOM_CLOUD": "1"}
    return subprocess.run(
        [str(exe), *args], capture_output=True, text=True, env=env, timeout=120, check=False, start_new_session=True
    )


def _bundle(tmp_path: Path, base: str) -> Path:
    document = {
        **with_key(),
        "cloud": "custom",
        "authorityHost": base,
        "graphEndpoint": f"{base}/v1.0",
        "graphScope": f"{base}/.default",
    }
    return write(tmp_path, document)


def _clean(text: str) -> None:
    assert not JWT.search(text), "a token or client assertion leaked"
    assert "eyJ" not in text and "PRIVATE KEY" not in text


@pytest.mark.parametrize("echo", ["bad"], indirect=True)
def test_a_token_endpoint_echoing_the_assertion_leaks_nothing(echo: tuple[str, Path], tmp_path: Path):
    base, ca = echo
    bundle = _bundle(tmp_path, base)
    doctor = _run(ca, "doctor", "--credentials", str(bundle), "--output", "json")
    table = _run(ca, "doctor", "--credentials", str(bundle))  # the table an operator reads
    revoke = _run(ca, "revoke", "--credentials", str(bundle), "--user", "0000abcd-0000-0000-0000-00000000aaaa", "--yes")
    debug = _run(ca, "revoke", "--debug", "--credentials", str(bundle), "--user", "0000abcd-0000-0000-0000-0000000aaaa")
    for result in (doctor, table, revoke, debug):
        _clean(result.stdout + result.stderr)
    assert "AADSTS7000215" in doctor.stdout and "client_assertion=[redacted]" in doctor.stdout
    assert "AADSTS7000215" in table.stdout + table.stderr, table.stdout + table.stderr
    assert revoke.returncode == 3 and "client_assertion=[redacted]" in revoke.stderr
    assert "get_token failed" not in revoke.stderr, "azure-identity's own warning stays out of the operator's way"
    assert "Traceback" in debug.stderr


@pytest.mark.parametrize("echo", ["good"], indirect=True)
def test_a_gateway_echoing_the_bearer_token_leaks_nothing(echo: tuple[str, Path], tmp_path: Path):
    base, ca = echo
    bundle = _bundle(tmp_path, base)
    journal = tmp_path / "j.jsonl"
    result = _run(
        ca,
        "revoke",
        "--credentials",
        str(bundle),
        "--user",
        "0000abcd-0000-0000-0000-00000000aaaa",
        "--yes",
        "--journal",
        str(journal),
        "--output",
        "json",
        "--max-attempts",
        "1",
    )
    written = result.stdout + result.stderr + (journal.read_text() if journal.exists() else "")
    _clean(written)
    assert "Bearer [redacted]" in written, written
