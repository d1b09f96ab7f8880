"""``--skip-inactive-days`` on group and file runs: the real CLI and API, msgraph-sdk over HTTPS to the
sandbox (docs/activity-ordering.md, "Skipping inactive targets of a group or file").

A target found in none of the tenant's activity windows up to N days had no sign-in (interactive or
not) within N days: it is journaled ``skipped_inactive``; privileged targets never are. The run goes
by activity whatever reading the windows costs, and says what it reads. If Graph stops serving a
window mid-run, the run stops without skipping anyone blind; the resumed run finishes the job.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from revoke_ops.activity import ActivityOrder, inactive_for, skip_window_days
from revoke_ops.activity_skip import skipped
from revoke_ops.errors import InputError
from revoke_ops.records import Send, Settled
from revoke_ops.request import RevokeRequest, check_sources
from sandbox import activity as sandbox_activity
from tests.revoke_ops.conftest import DOMAIN
from tests.revoke_ops.test_activity_e2e import activity_ops, internal_members, journal_lines, latest, privileged
from tests.revoke_ops.test_activity_scoped import api_run, biggest_group
from tests.sandbox.conftest import Running

DAYS = 30


def dormant(run: Running, users: list[Any], now: datetime, days: int = DAYS) -> set[str]:
    """The sandbox's ground truth: the users a skip run must skip (not privileged, inactive N+ days)."""
    tenant = run.sandbox.tenant
    return {u.id for u in users if not privileged(tenant, u) and inactive_for(latest(u), now, days)}


def skipped_records(journal: Path) -> list[dict[str, Any]]:
    return [r for r in journal_lines(journal) if r.get("outcome") == "skipped_inactive"]


def test_skip_windows_end_exactly_at_n_days() -> None:
    assert skip_window_days(30) == (1, 7, 30)
    assert skip_window_days(45) == (1, 7, 30, 45)
    assert skip_window_days(7) == (1, 7)
    assert skip_window_days(1) == (1,)
    assert skip_window_days(120) == (1, 7, 30, 90, 120)


def test_the_skip_decision_spares_privileged_users_and_the_operator_and_says_what_was_read() -> None:
    now = datetime(2026, 12, 7, 18, tzinfo=UTC)
    order = ActivityOrder(now, skip_inactive_days=DAYS)

    def send(**flags: bool) -> Send:
        return Send("u1", "u1", "a@b.c", "u1", **flags)

    unseen = skipped(order, send())
    assert isinstance(unseen, Settled) and unseen.outcome == "skipped_inactive"
    assert "no sign-in activity within 30 days" in unseen.reason and "was not read" in unseen.reason
    assert isinstance(skipped(order, send(privileged=True)), Send)
    assert isinstance(skipped(order, send(last=True)), Send)
    recent = {"signInActivity": {"lastNonInteractiveSignInDateTime": "2026-11-20T00:00:00Z"}}
    old = {"signInActivity": {"lastSignInDateTime": "2026-10-01T00:00:00Z"}}
    assert isinstance(skipped(order, send(), recent), Send)
    dated = skipped(order, send(), old)
    assert isinstance(dated, Settled) and "last sign-in activity 2026-10-01T00:00:00Z" in dated.reason
    assert skipped(ActivityOrder(now), send()) == send(), "without the option nobody is skipped"


def test_skip_inactive_days_goes_with_groups_and_files_but_not_with_filter() -> None:
    check_sources(RevokeRequest(group="g", skip_inactive_days=30))
    check_sources(RevokeRequest(users=["a@b.c"], skip_inactive_days=30))
    with pytest.raises(InputError, match="--skip-inactive-days does not go with --filter"):
        check_sources(RevokeRequest(all_users=True, filter="accountEnabled eq true", skip_inactive_days=30))


@pytest.mark.parametrize("refusing", [[], ["range"], ["count"]])
def test_a_group_run_skips_exactly_the_members_inactive_for_n_days(
    sandbox: Running, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, refusing: list[str]
):
    """Also when Graph refuses ranged windows (open-ended ones, the seen set dropping earlier windows'
    users) or $count (the reading estimate falls back to the tenant's size)."""
    ops = activity_ops(sandbox, tmp_path, f"skip-group-{'-'.join(refusing) or 'plain'}")
    group, members = biggest_group(sandbox)
    journal = tmp_path / "group.jsonl"
    before = len(sandbox.revocations())
    sandbox.settings(activityRefusals=refusing)
    try:
        result, confirmation = api_run(ops, sandbox, monkeypatch, group=group, journal=journal, skip_inactive_days=DAYS)
    finally:
        sandbox.settings(activityRefusals=[])
    now = datetime.now(UTC)
    assert confirmation.ordering == "activity"
    reading = [w for w in confirmation.warnings if "reads the tenant's activity windows up to 30 days" in w]
    assert len(reading) == 1 and "min at Graph's" in reading[0] and "unknown until the windows are read" in reading[0]
    question = confirmation.question()
    assert "NOT revoking an unknown number" in question and "unknown until the windows are read" in question
    header = journal_lines(journal)[0]
    assert header["ordering"] == {"by": "activity", "now": header["ordering"]["now"], "skipInactiveDays": DAYS}
    expected = dormant(sandbox, members, now)
    assert expected and len(expected) < len(members), "the seeded group holds both kinds"
    revoked = ops.revoked_ids(before)
    assert sorted(revoked) == sorted({u.id for u in members} - expected), "the active members, once each"
    tenant = sandbox.sandbox.tenant
    assert all(u.id in revoked for u in members if privileged(tenant, u))
    skipped = skipped_records(journal)
    assert {r["id"] for r in skipped} == expected and len(skipped) == len(expected)
    assert all(f"no sign-in activity within {DAYS} days" in r["reason"] for r in skipped)
    assert all("was not read" in r["reason"] and f"--skip-inactive-days {DAYS}" in r["reason"] for r in skipped)
    assert result.summary.counts["skipped_inactive"] == len(expected)
    assert result.exit_code == 0, "skipping as asked is a success, as in a whole-tenant skip run"


def test_a_small_group_with_skip_goes_by_activity_and_never_skips_a_privileged_member(sandbox: Running, tmp_path: Path):
    """Within the write burst a group run would not read activity; skipping needs it, so it does. The
    privileged members are revoked first whatever their activity (CLI, 10 reads a minute)."""
    ops = activity_ops(sandbox, tmp_path, "skip-group-cli")
    group, members = biggest_group(sandbox)
    journal = tmp_path / "cli.jsonl"
    before = len(sandbox.revocations())
    args = ["revoke", "--group", group, "--skip-inactive-days", str(DAYS), "--yes", "--journal", str(journal)]
    result = ops.cli(*args, "--output", "json")
    now = datetime.now(UTC)
    assert result.returncode == 0, result.stderr
    assert "activity ordering is off" not in result.stderr
    assert "reads the tenant's activity windows up to 30 days" in result.stderr
    expected = dormant(sandbox, members, now)
    assert sorted(ops.revoked_ids(before)) == sorted({u.id for u in members} - expected)
    assert json.loads(result.stdout)["summary"]["outcomes"]["skipped_inactive"] == len(expected)


def test_a_file_run_skips_exactly_the_inactive_targets_and_never_a_dormant_admin(
    sandbox: Running, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    ops = activity_ops(sandbox, tmp_path, "skip-file")
    admin = ops.user("breakglass1")
    members = [u for u in internal_members(sandbox)[::3] if u.id != admin.id]
    lines = [u.id if n % 2 else u.user_principal_name.upper() for n, u in enumerate(members)]
    lines.insert(3, f"breakglass1@{DOMAIN}")
    lines.insert(5, "nobody.here@contoso-sandbox.onmicrosoft.com")
    targets = tmp_path / "targets.txt"
    targets.write_text("\n".join(lines) + "\n")
    journal = tmp_path / "file.jsonl"
    before = len(sandbox.revocations())
    result, confirmation = api_run(
        ops, sandbox, monkeypatch, files=[str(targets)], journal=journal, skip_inactive_days=DAYS
    )
    now = datetime.now(UTC)
    assert confirmation.ordering == "activity"
    assert inactive_for(latest(admin), now, DAYS), "the break-glass admin is dormant in the seeded tenant"
    expected = dormant(sandbox, members, now)
    assert expected and len(expected) < len(members)
    revoked = ops.revoked_ids(before)
    assert sorted(revoked) == sorted({u.id for u in members} - expected | {admin.id}), "once each"
    skipped = skipped_records(journal)
    assert {r["id"] for r in skipped} == expected
    assert all(f"no sign-in activity within {DAYS} days" in r["reason"] for r in skipped)
    missing = [r for r in journal_lines(journal) if r.get("outcome") == "not_found"]
    assert [r["target"] for r in missing] == ["nobody.here@contoso-sandbox.onmicrosoft.com"]
    assert result.summary.counts["skipped_inactive"] == len(expected)
    assert result.exit_code == 1  # one target does not exist: as any run


def test_a_window_refused_mid_run_stops_the_skip_run_without_skipping_blind_and_resume_finishes(
    sandbox: Running, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    """The probe passed; Graph refuses the windows once the run started. A run that only orders falls
    back to listing order; a skip run cannot tell the inactive from the unread, so it stops (as the
    whole-tenant skip run does). The resumed run reads the windows from a fresh now and finishes."""
    ops = activity_ops(sandbox, tmp_path, "skip-refused")
    group, members = biggest_group(sandbox)
    journal = tmp_path / "refused.jsonl"
    before = len(sandbox.revocations())

    def refuse() -> None:
        sandbox_activity.refuse(sandbox.sandbox.tenant, ["filter"])

    try:
        stopped, _ = api_run(
            ops, sandbox, monkeypatch, on_confirm=refuse, group=group, journal=journal, skip_inactive_days=DAYS
        )
    finally:
        sandbox_activity.refuse(sandbox.sandbox.tenant, [])
    # Users were already revoked: the run reports itself stopped (exit 1, resume), not "nothing changed".
    assert stopped.exit_code == 1
    assert "stopped serving sign-in activity mid-run" in stopped.incomplete
    assert "Graph refused the sign-in activity filter" in stopped.incomplete
    assert f"--resume {journal}" in stopped.incomplete
    assert skipped_records(journal) == [], "nobody skipped blind"
    tenant = sandbox.sandbox.tenant
    first = ops.revoked_ids(before)
    assert first, "the privileged members were revoked before the windows"
    assert set(first) <= {u.id for u in members if privileged(tenant, u)}, "only the privileged, before any window"
    end = journal_lines(journal)[-1]
    assert end.get("completed") is False and "reading the targets failed part-way" in end.get("stoppedBy", ""), end

    middle = len(sandbox.revocations())
    resumed = ops.cli("revoke", "--resume", str(journal), "--yes")
    now = datetime.now(UTC)
    assert resumed.returncode == 0, resumed.stderr
    expected = dormant(sandbox, members, now)
    again = ops.revoked_ids(middle)
    assert not set(again) & set(first), "users already settled stay settled"
    assert sorted(first + again) == sorted({u.id for u in members} - expected)
    assert {r["id"] for r in skipped_records(journal)} == expected


def test_a_dry_run_lists_who_would_be_skipped(sandbox: Running, tmp_path: Path):
    ops = activity_ops(sandbox, tmp_path, "skip-dry")
    group, members = biggest_group(sandbox)
    before = len(sandbox.revocations())
    result = ops.cli("revoke", "--group", group, "--skip-inactive-days", str(DAYS), "--dry-run", "--output", "json")
    now = datetime.now(UTC)
    assert result.returncode == 0, result.stderr
    assert len(sandbox.revocations()) == before, "a dry run changes nothing"
    document = json.loads(result.stdout)
    expected = dormant(sandbox, members, now)
    listed = [r for r in document["notRevoked"] if r["outcome"] == "skipped_inactive"]
    assert {r["id"] for r in listed} == expected and len(listed) == len(expected)
    assert all(f"no sign-in activity within {DAYS} days" in r["reason"] for r in listed)
    assert document["summary"]["outcomes"]["skipped_inactive"] == len(expected)
    assert document["summary"]["wouldRevoke"] == len(members) - len(expected), document["summary"]


def test_skipping_refuses_to_run_when_privileged_users_cannot_be_identified(sandbox: Running, tmp_path: Path):
    """Without RoleManagement.Read.Directory a dormant Global Administrator would look like anyone else:
    the run refuses before changing anything rather than risk skipping them."""
    roles = ("User.RevokeSessions.All", "User.Read.All", "GroupMember.Read.All", "AuditLog.Read.All")
    ops = activity_ops(sandbox, tmp_path, "skip-no-roles", roles)
    before = len(sandbox.revocations())
    result = ops.cli("revoke", "--user", f"breakglass1@{DOMAIN}", "--skip-inactive-days", str(DAYS), "--yes")
    assert result.returncode == 2, result.stderr
    assert "--skip-inactive-days needs RoleManagement.Read.Directory" in result.stderr
    assert len(sandbox.revocations()) == before
