"""README command one keeps working."""

from __future__ import annotations

import subprocess

import pytest

from tests.provisioning.conftest import ROOT


@pytest.mark.slow
def test_demo_runs_the_sandbox_stack_and_checks_the_bundle():
    result = subprocess.run([str(ROOT / "scripts" / "demo")], capture_output=True, text=True, timeout=300, check=False)
    assert result.returncode == 0, result.stderr
    assert "stack sandbox applied" in result.stderr
    assert "valid bundle for tenant 5a1db0c5-0000-4000-8000-00000000beef" in result.stdout
    assert "private key included" in result.stdout
    assert "BEGIN" not in result.stdout + result.stderr, "the demo must not print key material"
