"""The sandbox's own hygiene (issue 10 #16, 11 #23): its control endpoint, state directory and files."""

from __future__ import annotations

import contextlib
import os
import stat
import subprocess
import sys
import threading
from pathlib import Path

import httpx
import pytest

from sandbox.certs import write_new
from sandbox.server import Sandbox, SandboxOptions
from tests.provisioning.conftest import ROOT
from tests.sandbox.conftest import Running


def test_the_control_endpoint_needs_the_control_token(sandbox: Running):
    bare = httpx.Client(base_url=sandbox.info["controlEndpoint"], verify=sandbox.tls, timeout=30)
    assert bare.get("/state").status_code == 401
    assert bare.post("/settings", json={"throttling": False}).status_code == 401
    assert bare.post("/devicecode", json={"userCode": "X", "user": "operator"}).status_code == 401
    wrong = bare.get("/state", headers={"Authorization": "Bearer " + "x" * 43})
    assert wrong.status_code == 401 and "controlToken" in wrong.json()["error"]
    assert sandbox.sandbox.throttle.enabled, "nothing was changed without the token"
    assert sandbox.control.get("/state").status_code == 200


def test_private_files_are_created_afresh_and_never_through_a_link(tmp_path: Path):
    victim = tmp_path / "victim"
    victim.write_text("keep me")
    link = tmp_path / "server.pem"
    link.symlink_to(victim)
    write_new(link, b"secret")
    assert victim.read_text() == "keep me"
    assert not link.is_symlink() and link.read_bytes() == b"secret"
    assert stat.S_IMODE(link.stat().st_mode) == 0o600


def test_a_reader_polling_for_a_state_file_never_sees_it_empty(tmp_path: Path):
    # CI once read keyvault.json between its creation and its first byte; the write is now a rename.
    path = tmp_path / "keyvault.json"
    seen: list[bytes] = []
    stop = threading.Event()

    def poll() -> None:
        while not stop.is_set():
            with contextlib.suppress(FileNotFoundError):
                seen.append(path.read_bytes())

    reader = threading.Thread(target=poll)
    reader.start()
    try:
        for n in range(200):
            write_new(path, b'{"n": %d}' % n)
    finally:
        stop.set()
        reader.join()
    assert all(data.startswith(b'{"n": ') and data.endswith(b"}") for data in seen)
    assert [p.name for p in tmp_path.iterdir()] == ["keyvault.json"], "no temporary file is left behind"


def test_the_state_directory_is_0700_and_a_shared_one_is_refused(tmp_path: Path):
    old = os.umask(0)
    try:
        Sandbox(tmp_path / "fresh", SandboxOptions(users=60, groups=3, group_size=10))
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "fresh").stat().st_mode) == 0o700
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o777)
    with pytest.raises(RuntimeError, match="not writable by others"):
        Sandbox(shared, SandboxOptions(users=60, groups=3, group_size=10))


def test_stopping_removes_the_keys_and_the_control_token(tmp_path: Path):
    state = tmp_path / "state"
    with Sandbox(state, SandboxOptions(users=60, groups=3, group_size=10)) as sb:
        for name in ("server.pem", "deployer.pem", "sandbox.json"):
            assert stat.S_IMODE((state / name).stat().st_mode) == 0o600, name
        assert sb.info["controlToken"]
    assert sorted(p.name for p in state.iterdir()) == ["ca.pem"]


def test_help_hides_the_internal_command_and_runs_from_any_directory(tmp_path: Path):
    result = subprocess.run(
        [str(ROOT / "scripts" / "sandbox"), "--help"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env={**os.environ, "PYTHON": sys.executable},
    )
    assert result.returncode == 0, result.stderr
    assert "{serve,apply,keyvault}" in result.stdout
    assert "_apply-child" not in result.stdout and "SUPPRESS" not in result.stdout
