"""Run the real Pulumi program under the mock runtime, one fresh process per run (DESIGN.md)."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
TENANT = "5a1db0c5-0000-4000-8000-00000000beef"


@dataclass
class Run:
    returncode: int
    stderr: str
    resources: list[dict[str, Any]]
    outputs: dict[str, Any]
    secret_outputs: list[str]

    def of_type(self, suffix: str) -> list[dict[str, Any]]:
        return [r for r in self.resources if suffix in r["type"]]

    def one(self, suffix: str) -> dict[str, Any]:
        found = self.of_type(suffix)
        assert len(found) == 1, f"expected one {suffix}, got {[r['name'] for r in found]}"
        return found[0]


def run_mockrun(
    config: dict[str, Any] | None = None,
    *,
    stack: str = "test",
    stack_file: bool = False,
    project_dir: Path = ROOT,
) -> Run:
    flat = {"azuread:tenantId": TENANT} if not stack_file else {}
    for key, value in (config or {}).items():
        name = key if ":" in key else f"revoke-sessions:{key}"
        flat[name] = value if isinstance(value, str) else json.dumps(value)
    args = [sys.executable, "-m", "provisioning.mockrun", "--stack", stack, "--project-dir", str(project_dir)]
    args += ["--config-json", json.dumps(flat)]
    if not stack_file:
        args.append("--no-stack-file")
    proc = subprocess.run(args, cwd=ROOT, capture_output=True, text=True, timeout=180, check=False)
    if proc.returncode != 0:
        return Run(proc.returncode, proc.stderr, [], {}, [])
    data = json.loads(proc.stdout)
    return Run(0, proc.stderr, data["resources"], data["outputs"], data["secretOutputs"])


@pytest.fixture(scope="session")
def program() -> Callable[..., Run]:
    """Run the program with the given config; identical configs are run once per session."""
    cache: dict[str, Run] = {}

    def run(config: dict[str, Any] | None = None, **kwargs: Any) -> Run:
        key = json.dumps([config, {k: str(v) for k, v in kwargs.items()}], sort_keys=True)
        if key not in cache:
            cache[key] = run_mockrun(config, **kwargs)
        return cache[key]

    return run
