"""Every byte revoke-ops writes is free of the private key, tokens and client assertions."""

from __future__ import annotations

import os
import stat
from pathlib import Path

from tests.leaks import assert_no_secrets
from tests.revoke_ops.conftest import DOMAIN, Ops


def test_no_secret_in_output_logs_or_journal(ops: Ops, tmp_path: Path):
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
    assert "revoke-ops: DEBUG: batch 1 (10 users): HTTP 200" in runs[1].stderr, "--debug shows each batch"
    written = "".join(r.stdout + r.stderr for r in runs) + journal.read_text()
    assert_no_secrets(written, ops.creds.pem)
    assert stat.S_IMODE(os.stat(journal).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(journal.parent).st_mode) & 0o077 == tmp_path.stat().st_mode & 0o077


def test_failure_reports_leave_the_test_key_out(ops: Ops):
    # Hypothesis prints a falsifying example's fixtures into CI logs through its own pretty-printer,
    # which lists dataclass fields whatever their repr setting.
    from hypothesis.vendor.pretty import pretty

    for shown in (repr(ops), pretty(ops)):
        assert "PRIVATE KEY" not in shown and ops.creds.client_id in shown
