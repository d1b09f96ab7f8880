"""Every byte revoke-ops writes is free of the private key, tokens and client assertions."""

from __future__ import annotations

import os
import re
import stat
from pathlib import Path

from tests.revoke_ops.conftest import DOMAIN, Ops

JWT = re.compile(r"eyJ[A-Za-z0-9_-]{10,}\.[A-Za-z0-9_-]{10,}\.[A-Za-z0-9_-]{10,}")


def test_no_secret_in_output_logs_or_journal(ops: Ops, tmp_path: Path):
    key_body = "".join(ops.creds.pem.decode().split("-----BEGIN CERTIFICATE-----")[0].splitlines()[1:-1])
    journal = tmp_path / "j.jsonl"
    users = [u for u in ops.run.sandbox.tenant.users[560:600] if u.user_type == "Member"][:10]
    runs = [
        ops.cli("--version", credentials=False),
        ops.cli(
            "revoke",
            "--debug",
            "-v",
            "--journal",
            str(journal),
            "--yes",
            "--exclude",
            f"breakglass2@{DOMAIN}",
            *[a for u in users for a in ("--user", u.id)],
            "--user",
            f"breakglass2@{DOMAIN}",
        ),
        ops.cli("verify", "--debug", "--journal", str(journal)),
        ops.cli("doctor", "--debug", "--output", "json"),
        ops.cli("revoke", "--debug", "--user", "not-a-user"),
    ]
    assert runs[1].returncode == 0, runs[1].stderr
    written = "".join(r.stdout + r.stderr for r in runs) + journal.read_text()
    for i in range(0, len(key_body) - 24, 24):
        assert key_body[i : i + 24] not in written, "private key material leaked"
    assert "PRIVATE KEY" not in written
    assert not JWT.search(written), "a token or client assertion leaked"
    assert "client_assertion" not in written
    assert stat.S_IMODE(os.stat(journal).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(journal.parent).st_mode) & 0o077 == tmp_path.stat().st_mode & 0o077
