"""revoke-ops --key-vault-certificate, end to end: the sandbox's loopback Key Vault (its own process)
holds a non-exportable certificate; revoke-ops reads its public part, builds the PS256 assertion
(x5t#S256) and has the vault sign its digest, authenticating to the vault as the operator; the
sandbox's token endpoint accepts it and the revocation happens. The vault's record of every
operation shows that none returned private key material."""

from __future__ import annotations

import base64
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization

from revoke_ops.credentials.keyvault import parse_certificate_url
from revoke_ops.errors import InputError
from sandbox.server import make_client_certificate
from tests.revoke_ops.conftest import FULL, Ops
from tests.sandbox.conftest import AppCredentials, Running

PRIVATE_JWK = {"d", "p", "q", "dp", "dq", "qi"}
#: Every field a successful answer of the vault may carry: the certificate bundle (public DER in
#: `cer`), the key's public JWK, a signature, and their attributes. Anything else fails the test, so a
#: key leaking under another name (a PKCS#8 blob, a secret's value) cannot pass unnoticed.
PUBLIC_FIELDS = {
    *("id", "kid", "sid", "x5t", "cer", "attributes", "policy", "key", "managed", "value"),
    *("enabled", "nbf", "exp", "created", "updated", "recoveryLevel", "exportable"),
    *("key_props", "kty", "key_size", "reuse_key", "secret_props", "contentType", "key_ops", "n", "e"),
}


class Vault:
    def __init__(self, published: dict[str, str], tls: Any) -> None:
        """``published``: what the vault wrote to keyvault.json (its URL, control endpoint and token)."""
        self.url = published["vaultUrl"]
        self.control = httpx.Client(
            base_url=published["controlEndpoint"],
            headers={"Authorization": f"Bearer {published['controlToken']}"},
            verify=tls,
            timeout=30,
        )

    def certificate(self, name: str, signers: list[str]) -> tuple[str, x509.Certificate]:
        created = self.control.post("/certificates", json={"name": name, "signers": signers}).json()
        return created["id"], x509.load_pem_x509_certificate(created["pem"].encode())

    def operations(self) -> list[dict[str, Any]]:
        return list(self.control.get("/operations").json())


@pytest.fixture(scope="module")
def vault(sandbox: Running) -> Iterator[Vault]:
    state = Path(sandbox.sandbox.state_dir)
    (state / "keyvault.json").unlink(missing_ok=True)
    proc = subprocess.Popen(  # our own interpreter and module
        [sys.executable, "-m", "sandbox", "keyvault", "--state-dir", str(state)],
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    try:
        for _ in range(300):
            if (state / "keyvault.json").exists() or proc.poll() is not None:
                break
            time.sleep(0.1)
        assert proc.poll() is None, proc.stderr.read().decode() if proc.stderr else "the vault exited"
        yield Vault(json.loads((state / "keyvault.json").read_text()), sandbox.tls)
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(30)


def _operator(sandbox: Running, tmp_path: Path, name: str) -> tuple[AppCredentials, dict[str, str]]:
    """The operator's own identity for Key Vault (here an app with a certificate, via azure-identity's variables)."""
    creds = sandbox.app(name)
    path = tmp_path / f"{name}.pem"
    path.write_bytes(creds.pem)
    path.chmod(0o600)
    env = {
        "AZURE_TENANT_ID": sandbox.info["tenantId"],
        "AZURE_CLIENT_ID": creds.client_id,
        "AZURE_CLIENT_CERTIFICATE_PATH": str(path),
    }
    return creds, env


def _revoker_with_vault_certificate(
    sandbox: Running, tmp_path: Path, name: str, cert: x509.Certificate, url: str | None = None
) -> Ops:
    """A revoker app whose only certificate is the vault's; its bundle holds no key."""
    app = sandbox.sandbox.call(sandbox.sandbox.register_app, name, cert, app_roles=FULL)
    der = cert.public_bytes(serialization.Encoding.DER)
    bundle = {
        "schemaVersion": 1,
        "tenantId": sandbox.info["tenantId"],
        "clientId": app.app_id,
        "applicationObjectId": app.id,
        "servicePrincipalObjectId": sandbox.sandbox.tenant.sp_for_app(app.app_id).id,
        "cloud": "custom",
        "authorityHost": sandbox.info["authorityHost"],
        "graphEndpoint": sandbox.info["graphEndpoint"],
        "graphScope": sandbox.info["graphScope"],
        "permissionMode": "application",
        "applicationPermissions": list(FULL),
        "delegatedPermissions": [],
        "certificates": [
            {
                "slot": "vault",
                "source": "provided",
                "thumbprint": cert.fingerprint(hashes.SHA1()).hex().upper(),
                "thumbprintSha256": cert.fingerprint(hashes.SHA256()).hex().upper(),
                "keyId": app.key_credentials[0]["keyId"],
                "notAfter": cert.not_valid_after_utc.strftime("%Y-%m-%dT%H:%M:%SZ"),
            }
        ],
    }
    if url is not None:
        bundle["certificates"][0] |= {"source": "keyVault", "keyVaultCertificate": url}
    path = tmp_path / "bundle.json"
    path.write_text(json.dumps(bundle))
    path.chmod(0o600)
    assert base64.b64decode(app.key_credentials[0]["key"]) == der
    return Ops(sandbox, AppCredentials(app, b""), path)


def _keys(value: Any) -> set[str]:
    if isinstance(value, dict):
        return set(value) | {k for v in value.values() for k in _keys(v)}
    if isinstance(value, list):
        return {k for v in value for k in _keys(v)}
    return set()


def test_key_vault_certificate_revokes_and_no_key_material_ever_leaves_the_vault(
    sandbox: Running, vault: Vault, tmp_path: Path
):
    operator, env = _operator(sandbox, tmp_path, "kv-operator")
    url, cert = vault.certificate("revoker-kv", signers=[operator.client_id])
    ops = _revoker_with_vault_certificate(sandbox, tmp_path, "kv-revoker", cert, url)
    target = sandbox.user("operator")
    hint = ops.cli("revoke", "--user", target.id, "--yes", env=env)  # forgot the option: the bundle says which
    assert hint.returncode == 2 and f"pass --key-vault-certificate {url}" in hint.stderr
    before, seen = len(sandbox.revocations()), len(vault.operations())
    journal = tmp_path / "j.jsonl"
    result = ops.cli(
        "revoke", "--key-vault-certificate", url, "--user", target.id, "--yes", "--journal", str(journal), env=env
    )
    assert result.returncode == 0, result.stderr
    assert ops.revoked_ids(before) == [target.id]

    operations = vault.operations()[seen:]
    done = [(o["method"], o["path"].split("/")[1], o["status"]) for o in operations if o["status"] == 200]
    assert ("GET", "certificates", 200) in done and ("POST", "keys", 200) in done, operations
    assert all(o["caller"] == operator.client_id for o in operations if o["status"] == 200)
    for op in operations:
        body = json.loads(op["body"]) if op["body"] else {}
        assert not _keys(body) & PRIVATE_JWK, f"{op['method']} {op['path']} returned private key parameters"
        assert "PRIVATE KEY" not in (op["body"] or "")
        if op["status"] == 200:
            assert _keys(body) <= PUBLIC_FIELDS, f"{op['method']} {op['path']}: {_keys(body) - PUBLIC_FIELDS}"
        if "cer" in body:  # a certificate, nothing more: its DER parses as one and holds only the public key
            assert x509.load_der_x509_certificate(base64.b64decode(body["cer"])) == cert
        if "key_props" in body.get("policy", {}):
            assert body["policy"]["key_props"]["exportable"] is False
    signs = [o for o in operations if o["method"] == "POST" and o["status"] == 200]
    assert signs and all(set(json.loads(o["body"])) == {"kid", "value"} for o in signs), "sign answers a signature"
    for text in (result.stdout, result.stderr, journal.read_text(), ops.bundle.read_text()):
        assert "PRIVATE KEY" not in text and "eyJ" not in text


def test_an_operator_without_the_sign_permission_gets_a_clear_refusal(sandbox: Running, vault: Vault, tmp_path: Path):
    _, env = _operator(sandbox, tmp_path, "kv-reader")
    url, cert = vault.certificate("revoker-kv-locked", signers=["someone-else"])
    ops = _revoker_with_vault_certificate(sandbox, tmp_path, "kv-revoker-locked", cert)
    before = len(sandbox.revocations())
    result = ops.cli("revoke", "--key-vault-certificate", url, "--user", sandbox.user("operator").id, "--yes", env=env)
    assert result.returncode == 3, result.stderr
    assert "Key Vault refused to sign with certificate revoker-kv-locked" in result.stderr
    assert "HTTP 403" in result.stderr and "Key Vault Crypto User" in result.stderr
    assert len(sandbox.revocations()) == before


def test_a_certificate_the_app_does_not_know_is_aadsts700027(sandbox: Running, vault: Vault, tmp_path: Path):
    operator, env = _operator(sandbox, tmp_path, "kv-operator-2")
    url, _ = vault.certificate("revoker-kv-unregistered", signers=[operator.client_id])
    other, _key = make_client_certificate("not the vault's")
    ops = _revoker_with_vault_certificate(sandbox, tmp_path, "kv-revoker-other", other)
    result = ops.cli("revoke", "--key-vault-certificate", url, "--user", sandbox.user("operator").id, "--yes", env=env)
    assert result.returncode == 3, result.stderr
    assert "AADSTS700027" in result.stderr and "not among the bundle's registered certificates" in result.stderr


@pytest.mark.parametrize(
    "url",
    [
        "http://contoso.vault.azure.net/certificates/revoker",
        "https://contoso.example.com/certificates/revoker",
        "https://contoso.vault.azure.net/keys/revoker",
        "https://contoso.vault.azure.net/certificates/revoker/not-a-version",
    ],
)
def test_certificate_urls_are_checked(url: str):
    with pytest.raises(InputError, match="key-vault-certificate"):
        parse_certificate_url(url)
    ref = parse_certificate_url("https://contoso.vault.azure.net/certificates/revoker/" + "a" * 32)
    assert (ref.vault_url, ref.name, ref.version, ref.loopback) == (
        "https://contoso.vault.azure.net",
        "revoker",
        "a" * 32,
        False,
    )


def test_a_loopback_vault_is_the_sandboxs_only(monkeypatch: pytest.MonkeyPatch):
    """The challenge-resource check is relaxed for a loopback vault (issue 13 #3): outside the sandbox
    (no custom cloud allowed) such a URL is refused before any token is asked for."""
    from revoke_ops.credentials import key_vault_identity

    monkeypatch.delenv("REVOKE_OPS_ALLOW_CUSTOM_CLOUD", raising=False)
    url = "https://127.0.0.1:8443/certificates/revoker"
    tenant, client = "5a1db0c5-0000-4000-8000-00000000beef", "11111111-2222-4333-8444-555555555555"
    with pytest.raises(InputError) as caught:
        key_vault_identity(url, vault_credential=object(), tenant_id=tenant, client_id=client)
    assert "sandbox's emulated one" in str(caught.value) and "--allow-custom-cloud" in str(caught.value)


def test_the_vaults_control_endpoint_needs_its_token(sandbox: Running, vault: Vault):
    state = Path(sandbox.sandbox.state_dir) / "keyvault.json"
    assert state.stat().st_mode & 0o777 == 0o600, "keyvault.json holds the control token"
    for headers in (
        {},
        {"Authorization": "Bearer not-the-token"},
        {"Authorization": sandbox.control.headers["Authorization"]},
    ):
        with httpx.Client(base_url=vault.control.base_url, verify=sandbox.tls, timeout=30, headers=headers) as anyone:
            created = anyone.post("/certificates", json={"name": "minted", "signers": ["anyone"]})
            assert created.status_code == 401 and "keyvault.json" in created.json()["error"], headers.keys()
            assert anyone.get("/operations").status_code == 401
    assert vault.certificate("with-the-token", signers=[])[0].startswith(f"{vault.url}/certificates/with-the-token/")


def test_the_vault_signs_off_the_event_loop(
    sandbox: Running, vault: Vault, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    """Every sender keeps going while Key Vault signs an assertion (here: an operator credential taking 1.5 s)."""
    import asyncio
    import threading

    from azure.identity import CertificateCredential

    from revoke_ops.bundle import load_bundle
    from revoke_ops.credentials import key_vault_identity

    monkeypatch.setenv("SSL_CERT_FILE", sandbox.ca)
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", sandbox.ca)
    operator, env = _operator(sandbox, tmp_path, "kv-operator-slow")
    url, cert = vault.certificate("revoker-kv-slow", signers=[operator.client_id])
    ops = _revoker_with_vault_certificate(sandbox, tmp_path, "kv-revoker-slow", cert, url)

    class SlowOperator:
        """The operator's own credential for the vault, slow to answer (a sync credential, as azure-identity's)."""

        def __init__(self) -> None:
            self.inner = CertificateCredential(
                env["AZURE_TENANT_ID"],
                env["AZURE_CLIENT_ID"],
                env["AZURE_CLIENT_CERTIFICATE_PATH"],
                authority=sandbox.info["authorityHost"],
                disable_instance_discovery=True,  # MSAL would look the sandbox's authority up online
                connection_verify=sandbox.ca,
            )
            self.threads: list[str] = []

        def get_token(self, *scopes: str, **kwargs: Any) -> Any:
            self.threads.append(threading.current_thread().name)
            time.sleep(1.5)
            return self.inner.get_token(*scopes, **kwargs)

        def get_token_info(self, *scopes: str, options: Any = None) -> Any:
            self.threads.append(threading.current_thread().name)
            time.sleep(1.5)
            return self.inner.get_token_info(*scopes, options=options)

    slow = SlowOperator()
    identity = key_vault_identity(url, bundle=load_bundle(ops.bundle), vault_credential=slow)
    signed_before = len(slow.threads)  # reading the certificate (before any event loop)
    before = len([o for o in vault.operations() if o["method"] == "POST" and o["status"] == 200])

    async def token_while_ticking() -> tuple[str, float]:
        loop = asyncio.get_running_loop()
        gaps: list[float] = []
        done = asyncio.Event()

        async def tick() -> None:
            last = loop.time()
            while not done.is_set():
                await asyncio.sleep(0.01)
                now = loop.time()
                gaps.append(now - last)
                last = now

        ticker = asyncio.create_task(tick())
        try:
            token = await identity.token()
        finally:
            done.set()
            await ticker
            await identity.close()
        return token.token, max(gaps)

    token, longest = asyncio.run(token_while_ticking())
    assert token.count(".") == 2
    signs = [o for o in vault.operations() if o["method"] == "POST" and o["status"] == 200]
    assert len(signs) == before + 1, "the vault signed one assertion"
    assert len(slow.threads) > signed_before and "MainThread" not in slow.threads[signed_before:]
    assert longest < 1.0, f"the event loop stood still for {longest:.2f} s while the vault signed"
