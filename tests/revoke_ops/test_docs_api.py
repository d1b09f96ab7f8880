"""The Python API sample in docs/operations.md runs as written (placeholders filled in) against the sandbox."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

from tests.provisioning.conftest import ROOT
from tests.revoke_ops.conftest import DOMAIN, Ops


def api_sample() -> str:
    text = (ROOT / "docs" / "operations.md").read_text(encoding="utf-8")
    section = text[text.index("## Python API") :]
    match = re.search(r"```python\n(.*?)```", section, re.DOTALL)
    assert match, "docs/operations.md has a Python API sample"
    return match.group(1)


def test_the_documented_python_api_sample_revokes_and_verifies(ops: Ops, tmp_path: Path):
    sample = api_sample()
    assert '"<group id>"' in sample and 'Path("bundle.json")' in sample, "the placeholders the test fills in"
    group = ops.run.sandbox.tenant.group_named("compromised-sales")
    code = sample.replace('"<group id>"', json.dumps(group.id)).replace("@contoso.com", f"@{DOMAIN}")
    script = tmp_path / "sample.py"
    script.write_text(code)
    assert ops.bundle.parent == tmp_path  # the sample reads bundle.json from its working directory
    before = len(ops.run.revocations())
    env = {
        **os.environ,
        "SSL_CERT_FILE": ops.run.ca,
        "REQUESTS_CA_BUNDLE": ops.run.ca,
        "REVOKE_OPS_ALLOW_CUSTOM_CLOUD": "1",
    }
    result = subprocess.run(
        [sys.executable, str(script)], cwd=tmp_path, capture_output=True, text=True, env=env, timeout=300, check=False
    )
    assert result.returncode == 0, result.stderr
    counts_line, verify_line = result.stdout.strip().splitlines()[-2:]
    assert "'revoked':" in counts_line and counts_line.rstrip().endswith(" 0")
    assert verify_line.strip() == "0"
    revoked = set(ops.revoked_ids(before))
    assert ops.user("breakglass1").id not in revoked and revoked
    assert (tmp_path / "inc-1234.jsonl").exists()
