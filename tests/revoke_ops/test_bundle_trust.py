"""A bundle decides where tokens and client assertions go: it is trusted only when it deserves it (issue 10 #3)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from revoke_ops.bundle import ALLOW_CUSTOM_CLOUD_ENV, load_bundle
from revoke_ops.cli import ExitCode, main
from revoke_ops.errors import InputError
from tests.revoke_ops.conftest import Ops, write_bundle
from tests.revoke_ops.test_bundle import BUNDLE, with_key, write


def test_a_public_bundle_pointing_graph_elsewhere_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    path = write(tmp_path, {**BUNDLE, "graphEndpoint": "https://localhost:47443/v1.0"})
    assert main(["bundle", "check", str(path)]) == ExitCode.USAGE
    err = capsys.readouterr().err
    assert "graphEndpoint must be on graph.microsoft.com for cloud public" in err
    assert "https://localhost:47443/v1.0" in err


def test_userinfo_authority_passes_the_schema_but_is_refused(tmp_path: Path):
    path = write(tmp_path, {**BUNDLE, "authorityHost": "https://login.microsoftonline.com@127.0.0.1"})
    with pytest.raises(InputError, match="authorityHost must not carry a user name"):
        load_bundle(path)


def test_a_scope_of_another_cloud_is_refused(tmp_path: Path):
    path = write(tmp_path, {**BUNDLE, "graphScope": "https://graph.microsoft.us/.default"})
    with pytest.raises(InputError, match=r"graphScope 'https://graph\.microsoft\.us/\.default' is not"):
        load_bundle(path)


def custom(tmp_path: Path) -> Path:
    return write(
        tmp_path,
        {
            **BUNDLE,
            "cloud": "custom",
            "authorityHost": "https://127.0.0.1:8443",
            "graphEndpoint": "https://127.0.0.1:8443/v1.0",
            "graphScope": "https://127.0.0.1:8443/.default",
        },
    )


def test_custom_cloud_needs_an_explicit_opt_in(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
):
    monkeypatch.delenv(ALLOW_CUSTOM_CLOUD_ENV, raising=False)
    path = custom(tmp_path)
    assert main(["bundle", "check", str(path)]) == ExitCode.USAGE
    err = capsys.readouterr().err
    assert "cloud 'custom' sends your tokens and client assertions to endpoints that are not Microsoft's" in err
    assert "--allow-custom-cloud" in err and f"{ALLOW_CUSTOM_CLOUD_ENV}=1" in err
    assert main(["bundle", "check", "--allow-custom-cloud", str(path)]) == ExitCode.OK
    assert "custom cloud: tokens and client assertions go to identity platform https://127.0.0.1:8443" in caplog.text
    caplog.clear()
    for value in ("0", "true", "yes", ""):  # only the documented value opts in
        monkeypatch.setenv(ALLOW_CUSTOM_CLOUD_ENV, value)
        assert main(["bundle", "check", str(path)]) == ExitCode.USAGE, value
    monkeypatch.setenv(ALLOW_CUSTOM_CLOUD_ENV, "1")
    assert main(["bundle", "check", str(path)]) == ExitCode.OK
    assert "Microsoft Graph https://127.0.0.1:8443/v1.0" in caplog.text


def test_a_keyless_bundle_others_can_write_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    path = write(tmp_path, BUNDLE, mode=0o666)
    assert main(["bundle", "check", str(path)]) == ExitCode.USAGE
    err = capsys.readouterr().err
    assert f"the credentials bundle {path} is accessible to group or others (mode -rw-rw-rw-)" in err
    assert f"chmod 600 {path}" in err


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() != 0, reason="needs root to give the file away")
def test_a_bundle_owned_by_another_user_is_refused(tmp_path: Path):
    path = write(tmp_path, BUNDLE)
    os.chown(path, 65534, 65534)
    with pytest.raises(InputError, match=r"is owned by another user \(uid 65534\)"):
        load_bundle(path)


def test_sandbox_bundle_without_opt_in_sends_nothing(ops: Ops):
    """Through the real command: no token is requested, no revocation happens, exit 2."""
    state = ops.run.control.get("/state").json()
    user = ops.run.sandbox.tenant.users[250].id
    result = ops.cli("revoke", "--yes", "--user", user, env={ALLOW_CUSTOM_CLOUD_ENV: ""})
    assert result.returncode == ExitCode.USAGE, result.stderr
    assert "--allow-custom-cloud" in result.stderr
    assert ops.run.control.get("/state").json()["requests"] == state["requests"], "nothing reached Graph"
    allowed = ops.cli("revoke", "--yes", "--user", user, "--allow-custom-cloud", env={ALLOW_CUSTOM_CLOUD_ENV: ""})
    assert allowed.returncode == ExitCode.OK, allowed.stderr
    assert f"custom cloud: tokens and client assertions go to identity platform {ops.run.info['authorityHost']}" in (
        allowed.stderr
    )
    assert ops.revoked_ids()[-1] == user


def test_world_writable_keyless_bundle_is_refused_end_to_end(ops: Ops, tmp_path: Path):
    keyless = write_bundle(ops.run, ops.creds, tmp_path / "keyless.json", with_key=False)
    keyless.chmod(0o666)
    key = tmp_path / "key.pem"
    key.write_bytes(ops.creds.pem)
    key.chmod(0o600)
    before = len(ops.run.revocations())
    result = ops.cli(
        "revoke",
        "--yes",
        "--user",
        ops.run.sandbox.tenant.users[251].id,
        "--credentials",
        str(keyless),
        "--certificate",
        str(key),
    )
    assert result.returncode == ExitCode.USAGE
    assert "is accessible to group or others" in result.stderr
    assert len(ops.run.revocations()) == before


def test_invalid_utf8_is_a_usage_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    path = tmp_path / "b.json"
    path.write_bytes(b'{"tenantId": "\xff\xfe"}')
    path.chmod(0o600)
    assert main(["bundle", "check", str(path)]) == ExitCode.USAGE
    assert f"{path} is not UTF-8 text (invalid byte at offset 14)" in capsys.readouterr().err


def test_a_bare_pem_bundle_never_quotes_the_key(tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    key = with_key()["privateKeyPem"]
    path = tmp_path / "key.json"
    path.write_text(json.dumps(key))  # what `pulumi stack output --json --show-secrets privateKeyPem` prints
    path.chmod(0o600)
    assert main(["bundle", "check", str(path)]) == ExitCode.USAGE
    captured = capsys.readouterr()
    shown = captured.out + captured.err
    assert "holds a single JSON string (it looks like key material: its content is not shown)" in shown
    assert "PRIVATE" not in shown and key.splitlines()[1][:40] not in shown


def test_export_without_show_secrets_says_how_to_re_export(tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    document: dict[str, Any] = {**with_key(), "privateKeyPem": "[secret]"}
    path = write(tmp_path, document)
    assert main(["bundle", "check", str(path)]) == ExitCode.USAGE
    err = capsys.readouterr().err
    assert "privateKeyPem hold Pulumi's placeholder '[secret]'" in err
    assert "pulumi stack output --json --show-secrets" in err


@pytest.mark.parametrize(
    ("case", "message"),
    [
        ("mismatch", "holds no certificate matching its private key"),
        ("expired", "expired on"),
        ("not-yet-valid", "is not valid before"),
        ("unregistered", "is not among its registered certificates"),
    ],
)
def test_bundle_check_checks_key_and_certificate_offline(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], case: str, message: str
):
    from datetime import UTC, datetime, timedelta

    document = with_key()
    if case == "mismatch":
        document["privateKeyPem"] = with_key()["privateKeyPem"]
    elif case == "expired":
        document = with_key(not_before=datetime.now(UTC) - timedelta(days=400), days=30)
    elif case == "not-yet-valid":
        document = with_key(not_before=datetime.now(UTC) + timedelta(days=2))
    else:
        document["certificates"] = BUNDLE["certificates"]
    assert main(["bundle", "check", str(write(tmp_path, document))]) == ExitCode.USAGE
    captured = capsys.readouterr()
    assert message in captured.err
    assert "valid bundle" not in captured.out
    assert "PRIVATE" not in captured.err


def test_tenant_or_cloud_beside_a_bundle_is_a_usage_error(ops: Ops):
    for extra, named in (
        (("--tenant-id", "11111111-2222-4333-8444-555555555555"), "--tenant-id 11111111-2222-4333-8444-555555555555"),
        (("--cloud", "china"), "--cloud china (the bundle's cloud is custom)"),
    ):
        result = ops.cli("doctor", *extra)
        assert result.returncode == ExitCode.USAGE, result.stderr
        assert "conflict with --credentials" in result.stderr and named in result.stderr
