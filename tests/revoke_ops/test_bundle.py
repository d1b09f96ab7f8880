"""revoke-ops reads the bundle the Pulumi program exports."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from revoke_ops.bundle import load_bundle
from revoke_ops.cli import ExitCode, main
from revoke_ops.errors import InputError
from tests.certs import make_certificate

BUNDLE: dict[str, Any] = {
    "schemaVersion": 1,
    "tenantId": "5a1db0c5-0000-4000-8000-00000000beef",
    "clientId": "0000abcd-0000-0000-0000-000000000002",
    "applicationObjectId": "0000abcd-0000-0000-0000-000000000001",
    "servicePrincipalObjectId": "0000abcd-0000-0000-0000-000000000003",
    "cloud": "public",
    "authorityHost": "https://login.microsoftonline.com",
    "graphEndpoint": "https://graph.microsoft.com/v1.0",
    "graphScope": "https://graph.microsoft.com/.default",
    "permissionMode": "application",
    "applicationPermissions": ["User.RevokeSessions.All", "User.Read.All"],
    "delegatedPermissions": [],
    "certificates": [
        {
            "slot": "primary",
            "source": "generated",
            "thumbprint": "FE802D6FC8F6CF0F806BD5434017B9845F96E004",
            "thumbprintSha256": "A7454AA382629FD775C83EC7EAD7B248E22420F27098FD3BC1AA281B0E1CCC3D",
            "keyId": "0000abcd-0000-0000-0000-000000000009",
            "notAfter": "2027-12-25T13:24:53Z",
        }
    ],
}


def write(tmp_path: Path, document: dict[str, Any], mode: int = 0o600) -> Path:
    path = tmp_path / "bundle.json"
    path.write_text(json.dumps(document))
    path.chmod(mode)
    return path


def with_key(**certificate: Any) -> dict[str, Any]:
    """BUNDLE with a generated key and certificate, registered as its certificate (thumbprints match)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes

    cert, key = make_certificate(**certificate)
    parsed = x509.load_pem_x509_certificate(cert.encode())
    registered = {
        **BUNDLE["certificates"][0],
        "thumbprint": parsed.fingerprint(hashes.SHA1()).hex().upper(),
        "thumbprintSha256": parsed.fingerprint(hashes.SHA256()).hex().upper(),
        "notAfter": parsed.not_valid_after_utc.strftime("%Y-%m-%dT%H:%M:%SZ"),
    }
    return {**BUNDLE, "certificates": [registered], "certificatePem": cert, "privateKeyPem": key}


def test_valid_bundle_is_reported(tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    path = write(tmp_path, with_key())
    assert main(["bundle", "check", str(path)]) == ExitCode.OK
    out = capsys.readouterr().out
    assert "valid bundle for tenant 5a1db0c5-0000-4000-8000-00000000beef" in out
    assert "private key included" in out
    assert "BEGIN" not in out


def test_bundle_with_a_key_readable_by_others_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    path = write(tmp_path, with_key(), mode=0o644)
    assert main(["bundle", "check", str(path)]) == ExitCode.USAGE
    err = capsys.readouterr().err
    assert f"the credentials bundle {path} is accessible to group or others" in err
    assert f"chmod 600 {path}" in err


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"schemaVersion": 2}, "schemaVersion 2 is not supported by this revoke-ops"),
        ({"permissionMode": "app"}, "permissionMode: 'app' is not one of"),
        (
            {"graphEndpoint": "https://graph.microsoft.com/v1.0/"},
            "graphEndpoint: 'https://graph.microsoft.com/v1.0/' does not match",
        ),
        ({"federatedCredentials": [{"name": "gh"}]}, "federatedCredentials/0: 'issuer' is a required property"),
        ({"tenantId": None}, "tenantId: None is not of type 'string'"),
    ],
)
def test_invalid_bundle_names_the_field(tmp_path: Path, change: dict[str, Any], message: str):
    with pytest.raises(InputError) as info:
        load_bundle(write(tmp_path, {**BUNDLE, **change}))
    assert message in str(info.value)


def test_key_material_is_never_echoed(tmp_path: Path):
    document = with_key()
    document["privateKeyPem"] = "x" + document["privateKeyPem"]
    with pytest.raises(InputError) as info:
        load_bundle(write(tmp_path, document))
    assert "privateKeyPem: does not satisfy pattern" in str(info.value)
    assert "PRIVATE" not in str(info.value)
    assert document["privateKeyPem"][40:80] not in str(info.value)


def test_a_loaded_bundle_prints_without_its_key(tmp_path: Path):
    # What an operator sees printing it in a REPL or a notebook (IPython's pretty-printer protocol,
    # here through the copy Hypothesis vendors).
    from hypothesis.vendor.pretty import pretty

    document = with_key()
    bundle = load_bundle(write(tmp_path, document))
    assert bundle.private_key_pem == document["privateKeyPem"]
    for shown in (repr(bundle), str(bundle), pretty(bundle)):
        assert "PRIVATE KEY" not in shown and "BEGIN" not in shown
        assert "0000abcd-0000-0000-0000-000000000002" in shown  # the client id is shown


def test_not_json_names_the_position(tmp_path: Path):
    path = tmp_path / "b.json"
    path.write_text("{\n  oops\n}")
    path.chmod(0o600)
    with pytest.raises(InputError, match=r"is not JSON \(line 2, column 3\)"):
        load_bundle(path)


def test_installed_command_runs(tmp_path: Path):
    exe = shutil.which("revoke-ops", path=os.path.dirname(sys.executable))
    assert exe, "the revoke-ops console script is not installed (scripts/bootstrap installs it)"
    path = write(tmp_path, BUNDLE)
    result = subprocess.run([exe, "bundle", "check", str(path)], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr
    assert "no private key (supply --certificate)" in result.stdout
