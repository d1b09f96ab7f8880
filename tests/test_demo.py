"""README command one keeps working."""

from __future__ import annotations

import re
import subprocess

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
    journal = re.search(r"^journal: (\S+) \(0600", result.stdout, re.M).group(1)
    assert (ROOT / journal).exists()
    assert "BEGIN" not in result.stdout + result.stderr, "the demo must not print key material"
