"""revoke-ops end to end: the real CLI and API against a sandbox tenant."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from revoke_ops.bundle import ALLOW_CUSTOM_CLOUD_ENV
from tests.sandbox.conftest import AppCredentials, Running, sandbox  # noqa: F401  # the fixture

DOMAIN = "contoso-sandbox.onmicrosoft.com"
FULL = ("User.RevokeSessions.All", "User.Read.All", "GroupMember.Read.All", "RoleManagement.Read.Directory")


def write_bundle(
    run: Running,
    creds: AppCredentials,
    path: Path,
    *,
    app_roles: tuple[str, ...] = FULL,
    delegated: tuple[str, ...] = (),
    with_key: bool = True,
) -> Path:
    pem = creds.pem.decode()
    key = pem[: pem.index("-----BEGIN CERTIFICATE-----")]
    cert = pem[pem.index("-----BEGIN CERTIFICATE-----") :]
    from cryptography import x509

    from revoke_ops.facts import rfc3339, thumbprint

    parsed = x509.load_pem_x509_certificate(cert.encode())
    app = creds.app
    bundle: dict[str, Any] = {
        "schemaVersion": 1,
        "tenantId": run.info["tenantId"],
        "clientId": app.app_id,
        "applicationObjectId": app.id,
        "servicePrincipalObjectId": run.sandbox.tenant.sp_for_app(app.app_id).id,
        "cloud": "custom",
        "authorityHost": run.info["authorityHost"],
        "graphEndpoint": run.info["graphEndpoint"],
        "graphScope": run.info["graphScope"],
        "permissionMode": "both" if delegated and app_roles else "delegated" if delegated else "application",
        "applicationPermissions": list(app_roles),
        "delegatedPermissions": list(delegated),
        "certificates": [
            {
                "slot": "primary",
                "source": "generated",
                "thumbprint": thumbprint(cert),
                "thumbprintSha256": thumbprint(cert, "sha256"),
                "keyId": app.key_credentials[0]["keyId"],
                "notAfter": rfc3339(parsed.not_valid_after_utc),
            }
        ],
    }
    if with_key:
        bundle["certificatePem"] = cert
        bundle["privateKeyPem"] = key
    path.write_text(json.dumps(bundle))
    path.chmod(0o600)
    return path


@dataclass
class Ops:
    """A revoker app of the sandbox with its bundle."""

    run: Running
    creds: AppCredentials
    bundle: Path

    def user(self, alias: str) -> Any:
        return self.run.user(alias)

    def revoked_ids(self, since: int = 0) -> list[str]:
        return [r["userId"] for r in self.run.revocations()[since:]]

    def cli(
        self, *args: str, stdin: str | None = None, env: dict[str, str] | None = None, credentials: bool = True
    ) -> subprocess.CompletedProcess[str]:
        """Run the installed revoke-ops command in its own session (no controlling terminal)."""
        exe = Path(sys.executable).parent / "revoke-ops"
        command = [str(exe), *args]
        if credentials and "--credentials" not in args:
            command += ["--credentials", str(self.bundle)]
        full_env = {
            **os.environ,
            "SSL_CERT_FILE": self.run.ca,
            "REQUESTS_CA_BUNDLE": self.run.ca,
            ALLOW_CUSTOM_CLOUD_ENV: "1",  # the sandbox's bundles are cloud "custom"
            **(env or {}),
        }
        return subprocess.run(
            command,
            input=stdin,
            capture_output=True,
            text=True,
            env=full_env,
            timeout=300,
            check=False,
            start_new_session=True,
        )


@pytest.fixture(autouse=True)
def _sandbox_is_a_trusted_custom_cloud(monkeypatch: pytest.MonkeyPatch) -> None:
    """The sandbox's bundles are cloud "custom": allowed here as its instructions say (the env var)."""
    monkeypatch.setenv(ALLOW_CUSTOM_CLOUD_ENV, "1")


@pytest.fixture
def ops(sandbox: Running, tmp_path: Path, request: pytest.FixtureRequest) -> Ops:  # noqa: F811
    name = f"ops-{request.node.name}"[:60]
    creds = sandbox.app(name, app_roles=FULL)
    return Ops(sandbox, creds, write_bundle(sandbox, creds, tmp_path / "bundle.json"))


def run_async(coro: Any) -> Any:
    return asyncio.run(coro)


def signal_after_first_outcome(
    ops: Ops, users: list[Any], journal: Path, signum: int, *, rate: str, preexec_fn: Any = None
) -> tuple[int, str]:
    """Revoke ``users`` paced one batch at a time (``--write-burst 1``, ``--write-rate rate``) and send
    ``signum`` once the journal holds a first outcome; returns the exit code and stderr."""
    import time

    targets = journal.with_suffix(".targets.txt")
    targets.write_text("".join(f"{u.id}\n" for u in users))
    command = [str(Path(sys.executable).parent / "revoke-ops"), "revoke", "--credentials", str(ops.bundle)]
    command += ["--from-file", str(targets), "--yes", "--journal", str(journal)]
    command += ["--write-burst", "1", "--write-rate", rate, "--concurrency", "1"]
    env = {**os.environ, "SSL_CERT_FILE": ops.run.ca, "REQUESTS_CA_BUNDLE": ops.run.ca}
    process = subprocess.Popen(
        command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, preexec_fn=preexec_fn
    )
    try:
        deadline = time.monotonic() + 60
        while '"type":"outcome"' not in (journal.read_text() if journal.exists() else ""):
            assert process.poll() is None and time.monotonic() < deadline, process.communicate()
            time.sleep(0.05)
        process.send_signal(signum)
        _out, err = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    return process.returncode, err
