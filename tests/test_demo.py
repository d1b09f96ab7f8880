"""README command one keeps working."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import time
from pathlib import Path

import pytest

from tests.provisioning.conftest import ROOT


@pytest.mark.slow
def test_demo_runs_the_whole_chain_on_the_sandbox():
    result = subprocess.run(
        [str(ROOT / "scripts" / "demo")],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        start_new_session=True,
    )
    assert result.returncode == 0, result.stderr
    assert "stack sandbox applied" in result.stderr
    assert "valid bundle for tenant 5a1db0c5-0000-4000-8000-00000000beef" in result.stdout
    assert re.search(r"OK\s+permissions\s+token carries .*User.RevokeSessions.All", result.stdout)
    revoked = int(re.findall(r"^revoked\s+(\d+)$", result.stdout, re.M)[-1])  # the real run, after the dry run
    assert revoked > 200
    assert f"verified: {revoked}; settled (journal said failed, but it happened): 0; not verified: 0" in result.stdout
    assert re.search(r"^excluded\s+1$", result.stdout, re.M), "the break-glass account was excluded"
    # The dry run's excerpt names who would NOT be revoked, and why (issue 11 #24), not only counts.
    dry_run = result.stdout[: re.search(r"^would revoke\s+\d+$", result.stdout, re.M).start()]
    assert re.search(r"^excluded\s+\S+\s+breakglass1@", dry_run, re.M), dry_run
    assert re.search(r"^skipped_external\s+\S+\s+\S+#ext#@\S+\s+external user", dry_run, re.M | re.I), dry_run
    assert re.search(r"^\.\.\. \(\d+ users would be revoked; the dry run lists every one\)$", dry_run, re.M)
    journal = re.search(r"^journal: (\S+) \(0600", result.stdout, re.M).group(1)
    assert (ROOT / journal).exists()
    assert "BEGIN" not in result.stdout + result.stderr, "the demo must not print key material"


@pytest.mark.slow
def test_ctrl_c_stops_the_demo_and_its_sandbox_cleanly(tmp_path: Path):
    log = tmp_path / "stderr.log"
    temp = tmp_path / "tmp"
    temp.mkdir()
    with log.open("w") as stderr:
        demo = subprocess.Popen(
            [str(ROOT / "scripts" / "demo")],
            stdout=subprocess.DEVNULL,
            stderr=stderr,
            env={**os.environ, "TMPDIR": str(temp)},
            start_new_session=True,
        )
    deadline = time.monotonic() + 120
    while "== pulumi up" not in log.read_text() and time.monotonic() < deadline:  # the sandbox is serving
        assert demo.poll() is None, log.read_text()
        time.sleep(0.1)
    os.killpg(demo.pid, signal.SIGINT)  # what Ctrl-C at a terminal does: the whole foreground group
    assert demo.wait(timeout=60) == 130, log.read_text()
    assert "== interrupted: stopping the sandbox" in log.read_text()
    time.sleep(0.5)
    with pytest.raises(ProcessLookupError):
        os.killpg(demo.pid, 0)  # nothing of the demo is left running: the sandbox was stopped
    assert list(temp.iterdir()) == [], "the sandbox's state (its keys) was removed"
