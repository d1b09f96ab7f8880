"""A loopback Azure Key Vault: the small surface revoke-ops uses, in its own process.

``python -m sandbox keyvault --state-dir DIR`` serves, over HTTPS on 127.0.0.1 with the sandbox's
server certificate, next to a running sandbox (``DIR/sandbox.json``):

- ``GET /certificates/{name}[/{version}]``: the certificate bundle (``cer``: public DER, ``kid``);
- ``GET /keys/{name}[/{version}]``: the key's public JWK (what CryptographyClient reads first);
- ``POST /keys/{name}/{version}/sign``: ``{"alg": "PS256"|"RS256", "value": <digest>}`` -> signature;
- ``GET /secrets/{name}[/{version}]``: refused with 403 — the certificates are non-exportable.

Requests carry a bearer token the sandbox's identity platform issued for ``https://vault.azure.net``
(Key Vault's challenge: 401 with ``WWW-Authenticate: Bearer authorization=..., resource=...`` first,
as the real service answers). Signing needs the caller's app on the certificate's ``signers`` (the
``sign`` permission, Key Vault Crypto User). Every operation is recorded with the full response body
it returned (``GET /_control/operations``), so a test can show none returned private key material.
The private keys exist only in this process's memory. ``/_control/`` (create a certificate, read the
record) needs ``Authorization: Bearer <controlToken>``, the token in ``keyvault.json`` (0600), as the
sandbox's own control endpoint does: without it any local user could mint a certificate with any
signers.
"""

from __future__ import annotations

import base64
import json
import re
import secrets
import ssl
import sys
import urllib.request
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import jwt
from aiohttp import web
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa, utils
from cryptography.x509.oid import NameOID

from sandbox import control
from sandbox.certs import write_new
from sandbox.oauth import KEYVAULT_RESOURCE, b64url

#: api-version values Key Vault serves: 7.x and the dated versions (the SDKs' defaults since 2025).
API_VERSION = re.compile(r"^(7\.[0-6]|20\d\d-\d\d-\d\d)(-preview(\.\d+)?)?$")


def _unb64url(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


@dataclass
class VaultCertificate:
    """A non-exportable certificate: its key never leaves this process."""

    name: str
    version: str
    key: rsa.RSAPrivateKey = field(repr=False)
    cert: x509.Certificate
    signers: set[str]

    def bundle(self, base: str) -> dict[str, Any]:
        der = self.cert.public_bytes(serialization.Encoding.DER)
        return {
            "id": f"{base}/certificates/{self.name}/{self.version}",
            "kid": f"{base}/keys/{self.name}/{self.version}",
            "sid": f"{base}/secrets/{self.name}/{self.version}",
            "x5t": b64url(self.cert.fingerprint(hashes.SHA1())),  # noqa: S303  # Key Vault's x5t is SHA-1
            "cer": base64.b64encode(der).decode(),
            "attributes": {
                "enabled": True,
                "nbf": int(self.cert.not_valid_before_utc.timestamp()),
                "exp": int(self.cert.not_valid_after_utc.timestamp()),
                "created": int(self.cert.not_valid_before_utc.timestamp()),
                "updated": int(self.cert.not_valid_before_utc.timestamp()),
                "recoveryLevel": "Recoverable",
            },
            "policy": {
                "id": f"{base}/certificates/{self.name}/policy",
                "key_props": {"exportable": False, "kty": "RSA", "key_size": self.key.key_size, "reuse_key": False},
                "secret_props": {"contentType": "application/x-pem-file"},
            },
        }

    def jwk(self, base: str) -> dict[str, Any]:
        numbers = self.key.public_key().public_numbers()
        n = numbers.n.to_bytes((numbers.n.bit_length() + 7) // 8, "big")
        e = numbers.e.to_bytes((numbers.e.bit_length() + 7) // 8, "big")
        return {
            "key": {
                "kid": f"{base}/keys/{self.name}/{self.version}",
                "kty": "RSA",
                "key_ops": ["sign", "verify"],
                "n": b64url(n),
                "e": b64url(e),
            },
            "attributes": {"enabled": True, "exportable": False, "recoveryLevel": "Recoverable"},
            "managed": True,
        }


def make_certificate(name: str, days: int = 90) -> tuple[rsa.RSAPrivateKey, x509.Certificate]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.now(UTC) - timedelta(minutes=5)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + timedelta(days=days))
        .sign(key, hashes.SHA256())
    )
    return key, cert


class Vault:
    """The vault's state and its HTTP handlers."""

    def __init__(
        self, base_url: str, issuer_keys: dict[str, Any], tenant_id: str, authority: str, control_token: str
    ) -> None:
        self.base = base_url
        self.control_token = control_token
        self.keys = issuer_keys  # kid -> public key of the sandbox's identity platform
        self.tenant_id = tenant_id
        self.authority = authority
        self.certificates: dict[str, list[VaultCertificate]] = {}
        self.operations: list[dict[str, Any]] = []

    def _error(self, status: int, code: str, message: str, headers: dict[str, str] | None = None) -> web.Response:
        return web.json_response({"error": {"code": code, "message": message}}, status=status, headers=headers)

    def _caller(self, request: web.Request) -> dict[str, Any] | None:
        auth = request.headers.get("Authorization", "")
        if not auth.lower().startswith("bearer "):
            return None
        token = auth.split(" ", 1)[1]
        try:
            kid = str(jwt.get_unverified_header(token).get("kid"))
            claims: dict[str, Any] = jwt.decode(
                token, self.keys[kid], algorithms=["RS256"], audience=[KEYVAULT_RESOURCE, f"{KEYVAULT_RESOURCE}/"]
            )
        except (jwt.PyJWTError, KeyError):
            return None
        return claims if claims.get("tid") == self.tenant_id else None

    def _find(self, name: str, version: str | None) -> VaultCertificate | None:
        versions = self.certificates.get(name, [])
        if not version:
            return versions[-1] if versions else None
        return next((c for c in versions if c.version == version), None)

    @web.middleware
    async def middleware(self, request: web.Request, handler: Any) -> web.StreamResponse:
        if request.path.startswith("/_control/"):
            response: web.StreamResponse = await handler(request)
            return response
        record: dict[str, Any] = {"method": request.method, "path": request.path, "caller": None}
        if not API_VERSION.match(request.query.get("api-version", "")):
            response = self._error(400, "BadParameter", "The specified version of the api is not supported.")
        else:
            caller = self._caller(request)
            if caller is None:
                # Key Vault's challenge: the client learns the authority and resource from it.
                challenge = f'Bearer authorization="{self.authority}/{self.tenant_id}", resource="{KEYVAULT_RESOURCE}"'
                response = self._error(
                    401,
                    "Unauthorized",
                    "AKV10000: Request is missing a Bearer or PoP token.",
                    {"WWW-Authenticate": challenge},
                )
            else:
                record["caller"] = caller.get("appid")
                request["caller"] = caller
                response = await handler(request)
        record["status"] = response.status
        record["body"] = response.text if isinstance(response, web.Response) else None
        self.operations.append(record)
        return response

    async def get_certificate(self, request: web.Request) -> web.Response:
        found = self._find(request.match_info["name"], request.match_info.get("version"))
        if found is None:
            return self._error(
                404, "CertificateNotFound", f"A certificate with (name/id) {request.path} was not found."
            )
        return web.json_response(found.bundle(self.base))

    async def get_key(self, request: web.Request) -> web.Response:
        found = self._find(request.match_info["name"], request.match_info.get("version"))
        if found is None:
            return self._error(404, "KeyNotFound", f"A key with (name/id) {request.path} was not found.")
        return web.json_response(found.jwk(self.base))

    async def sign(self, request: web.Request) -> web.Response:
        found = self._find(request.match_info["name"], request.match_info["version"])
        if found is None:
            return self._error(404, "KeyNotFound", f"A key with (name/id) {request.path} was not found.")
        appid = request["caller"].get("appid")
        if appid not in found.signers:
            return self._error(
                403,
                "Forbidden",
                f"Caller is not authorized to perform action on resource. Caller: appid={appid}; "
                "Action: 'Microsoft.KeyVault/vaults/keys/sign/action'",
            )
        body = await request.json()
        algorithm = {
            "PS256": padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=32),
            "RS256": padding.PKCS1v15(),
        }.get(body.get("alg"))
        digest = _unb64url(str(body.get("value", "")))
        if algorithm is None or len(digest) != 32:
            return self._error(400, "BadParameter", "Invalid algorithm or digest (PS256/RS256 over a SHA-256 digest).")
        signature = found.key.sign(digest, algorithm, utils.Prehashed(hashes.SHA256()))
        kid = f"{self.base}/keys/{found.name}/{found.version}"
        return web.json_response({"kid": kid, "value": b64url(signature)})

    async def get_secret(self, request: web.Request) -> web.Response:
        return self._error(
            403, "Forbidden", "Operation get is not allowed on a certificate whose key is not exportable."
        )

    async def control_create(self, request: web.Request) -> web.Response:
        body = await request.json()
        name = str(body["name"])
        key, cert = make_certificate(str(body.get("subject") or name), int(body.get("days", 90)))
        created = VaultCertificate(name, secrets.token_hex(16), key, cert, set(body.get("signers", [])))
        self.certificates.setdefault(name, []).append(created)
        pem = cert.public_bytes(serialization.Encoding.PEM).decode()
        return web.json_response({"id": f"{self.base}/certificates/{name}/{created.version}", "pem": pem})

    async def control_operations(self, request: web.Request) -> web.Response:
        return web.json_response(self.operations)

    def app(self) -> web.Application:
        app = web.Application(middlewares=[control.guard(self.control_token, "keyvault.json"), self.middleware])
        app.router.add_get("/certificates/{name}", self.get_certificate)
        app.router.add_get("/certificates/{name}/", self.get_certificate)
        app.router.add_get("/certificates/{name}/{version}", self.get_certificate)
        app.router.add_get("/keys/{name}", self.get_key)
        app.router.add_get("/keys/{name}/", self.get_key)
        app.router.add_get("/keys/{name}/{version}", self.get_key)
        app.router.add_post("/keys/{name}/{version}/sign", self.sign)
        app.router.add_get("/secrets/{name}", self.get_secret)
        app.router.add_get("/secrets/{name}/{version}", self.get_secret)
        app.router.add_post("/_control/certificates", self.control_create)
        app.router.add_get("/_control/operations", self.control_operations)
        return app


def _issuer_keys(info: dict[str, Any]) -> dict[str, Any]:
    """The sandbox identity platform's signing keys (its JWKS), to check bearer tokens."""
    context = ssl.create_default_context(cafile=info["caBundle"])
    url = f"{info['authorityHost']}/{info['tenantId']}/discovery/v2.0/keys"
    with urllib.request.urlopen(url, context=context, timeout=30) as answer:  # noqa: S310  # https, our sandbox
        jwks = json.loads(answer.read())
    return {k["kid"]: jwt.PyJWK(k).key for k in jwks["keys"]}


def serve(state_dir: Path, port: int = 0) -> int:
    """Serve the vault until interrupted; write ``keyvault.json`` (0600: vault URL, control endpoint and token)."""
    import socket

    info = json.loads((state_dir / "sandbox.json").read_text())
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", port))
    base = f"https://127.0.0.1:{sock.getsockname()[1]}"
    vault = Vault(base, _issuer_keys(info), info["tenantId"], info["authorityHost"], secrets.token_urlsafe(32))
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(state_dir / "server.pem")
    sock.listen(128)  # accept connections before anyone can read the URL
    out = state_dir / "keyvault.json"
    published = {"vaultUrl": base, "controlEndpoint": f"{base}/_control", "controlToken": vault.control_token}
    write_new(out, json.dumps(published).encode())  # 0600: it holds the control token
    print(f"keyvault: serving {base} (Ctrl-C stops)", file=sys.stderr, flush=True)
    try:
        web.run_app(vault.app(), sock=sock, ssl_context=context, print=None, access_log=None)
    finally:
        out.unlink(missing_ok=True)
    return 0
