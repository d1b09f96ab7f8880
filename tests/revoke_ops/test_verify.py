"""verify's verdicts and the exit codes of dry runs, through the real command against the sandbox."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

from tests.revoke_ops.conftest import Ops


def test_not_found_targets_are_not_accounted_for_and_a_dry_run_says_so_first(ops: Ops, tmp_path: Path):
    real = [u for u in ops.run.sandbox.tenant.users[470:500] if u.user_type == "Member"][:2]
    ghost = str(uuid.UUID(int=0xDEAD))
    args = ["revoke", "--user", real[0].id, "--user", real[1].user_principal_name, "--user", ghost]
    # the dry run exits with the code the real run will have: 1, a target does not exist
    dry = ops.cli(*args, "--dry-run", "--output", "json")
    assert dry.returncode == 1, dry.stderr
    journal = tmp_path / "j.jsonl"
    run = ops.cli(*args, "--journal", str(journal))
    assert run.returncode == 1, run.stderr
    verify = ops.cli("verify", "--journal", str(journal))
    assert verify.returncode == 1, verify.stderr
    assert f"not_found  {ghost}" in verify.stdout
    assert "NOT every target is accounted for" in verify.stdout
    body = json.loads(ops.cli("verify", "--journal", str(journal), "--output", "json").stdout)
    assert body["verdicts"] == {"accounted": 2, "not_revoked": 0, "failed": 0, "not_found": 1, "incomplete": 0}
    assert [e["id"] for e in body["notFound"]] == [ghost]
    # the dry run of targets that all exist exits 0
    assert ops.cli(*args[:5], "--dry-run").returncode == 0


def test_a_completed_run_is_accounted_for_with_exclusions(ops: Ops, tmp_path: Path):
    people = [u for u in ops.run.sandbox.tenant.users[500:530] if u.user_type == "Member"][:3]
    journal = tmp_path / "j.jsonl"
    args = [a for u in people for a in ("--user", u.id)]
    run = ops.cli("revoke", *args, "--exclude", people[0].user_principal_name, "--journal", str(journal))
    assert run.returncode == 0, run.stderr
    verify = ops.cli("verify", "--journal", str(journal))
    assert verify.returncode == 0, verify.stderr
    assert "verified: 2;" in verify.stdout and "every target is accounted for" in verify.stdout
    assert "accounted    3" in verify.stdout
