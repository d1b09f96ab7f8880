"""Activity ordering beyond the whole tenant, and when Graph refuses a window's filter: the real CLI
and API, msgraph-sdk over HTTPS to the sandbox (docs/activity-ordering.md, "Groups and files").

A large group or file run goes privileged first, then the targets found in the tenant's activity
windows, most recent first, then the rest in listing (or given) order; a small group in a large
tenant keeps listing order and says why once; a resumed group run keeps the order and loses nobody.
If Graph answers 400 to the window filters, the run falls back and says why, losing nobody.
"""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from revoke_ops.engine import EngineOptions
from sandbox import activity as sandbox_activity
from tests.revoke_ops.conftest import FULL, Ops
from tests.revoke_ops.test_activity_e2e import ACTIVITY, activity_ops, internal_members, journal_lines, rank
from tests.sandbox.conftest import Running

# past the burst at once (ordering matters); one batch in flight, so the sandbox sees the sending order
FAST = EngineOptions(write_burst=1, write_rate=200, concurrency=1)


def biggest_group(run: Running) -> tuple[str, list[Any]]:
    """The seeded group with the most user members (transitive), and its internal members."""
    tenant = run.sandbox.tenant
    internal = {u.id for u in internal_members(run)}

    def users(group_id: str) -> list[Any]:
        return [tenant.users_by_id[m] for m in tenant.transitive_members(group_id) if m in tenant.users_by_id]

    group = max(tenant.groups.values(), key=lambda g: len(users(g.id)))
    return group.id, [u for u in users(group.id) if u.id in internal]


def api_run(ops: Ops, run: Running, monkeypatch: pytest.MonkeyPatch, on_confirm: Any = None, **fields: Any) -> Any:
    """One run through the Python API; returns (result, confirmation). Sign-in activity reads at
    600 a minute on both sides, so the cost weighs only what a test sets (the 10-a-minute limit has its
    own tests)."""
    from revoke_ops import RevokeRequest, certificate_identity, load_bundle, revoke

    monkeypatch.setenv("REVOKE_OPS_ALLOW_CUSTOM_CLOUD", "1")
    monkeypatch.setattr(run.sandbox.tenant, "activity_reads_per_minute", 600.0)
    seen: list[Any] = []

    async def go() -> Any:
        def confirm(confirmation: Any) -> bool:
            seen.append(confirmation)
            if on_confirm:
                on_confirm()
            return True

        identity = certificate_identity(bundle=load_bundle(ops.bundle))
        try:
            request = RevokeRequest(reason="INC-15", activity_reads_per_minute=600, **{"engine": FAST, **fields})
            return await revoke(identity, request, confirm=confirm)
        finally:
            await identity.close()

    result = asyncio.run(go())
    return result, seen[0]


def ordered_ranks(run: Running, ids: list[str], now: datetime) -> list[int]:
    tenant = run.sandbox.tenant
    return [rank(tenant.users_by_id[i], now, tenant) for i in ids]


@pytest.mark.parametrize("refusing", [[], ["count"]])
def test_a_large_group_run_goes_by_activity_and_revokes_exactly_its_members(
    sandbox: Running, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, refusing: list[str]
):
    ops = activity_ops(sandbox, tmp_path, f"activity-group-{'-'.join(refusing) or 'plain'}")
    group, members = biggest_group(sandbox)
    journal = tmp_path / "group.jsonl"
    before = len(sandbox.revocations())
    sandbox.settings(activityRefusals=refusing)  # without $count: the tenant's size bounds the cost
    try:
        result, confirmation = api_run(ops, sandbox, monkeypatch, group=group, journal=journal)
    finally:
        sandbox.settings(activityRefusals=[])
    assert result.exit_code == 0
    assert confirmation.ordering == "activity", confirmation.warnings
    assert "then the most recently active" in confirmation.question()
    header = journal_lines(journal)[0]
    assert header["ordering"]["by"] == "activity"
    now = datetime.fromisoformat(header["ordering"]["now"].replace("Z", "+00:00"))
    revoked = ops.revoked_ids(before)
    assert sorted(revoked) == sorted(u.id for u in members), "every member once, nobody else"
    ranks = ordered_ranks(sandbox, revoked, now)
    assert ranks == sorted(ranks), "privileged, then by activity window, then the rest"
    assert len(set(ranks) - {0}) >= 3, ranks


def test_a_small_group_in_a_large_tenant_keeps_listing_order_and_says_why_once(sandbox: Running, tmp_path: Path):
    """At Graph's 10 reads a minute, the windows of this tenant take longer than revoking the group at
    50 a second: listing order, said once, everyone revoked."""
    ops = activity_ops(sandbox, tmp_path, "activity-small-group")
    group, members = biggest_group(sandbox)
    before = len(sandbox.revocations())
    journal = tmp_path / "small.jsonl"
    args = ["revoke", "--group", group, "--yes", "--journal", str(journal), "--write-burst", "1"]
    result = ops.cli(*args, "--write-rate", "50")
    assert result.returncode == 0, result.stderr
    assert result.stderr.count("activity ordering is off") == 1, result.stderr
    assert "reading the tenant's sign-in activity windows" in result.stderr
    assert "more than half" in result.stderr and "Graph's listing order" in result.stderr
    assert journal_lines(journal)[0]["ordering"] == {"by": "listing"}
    assert sorted(ops.revoked_ids(before)) == sorted(u.id for u in members)


def test_a_group_within_the_write_burst_keeps_listing_order_without_reading_activity(sandbox: Running, tmp_path: Path):
    ops = activity_ops(sandbox, tmp_path, "activity-burst-group")
    group, _members = biggest_group(sandbox)
    reads = sandbox.sandbox.tenant.activity_reads.get(ops.creds.client_id)
    result = ops.cli("revoke", "--group", group, "--yes")
    assert result.returncode == 0, result.stderr
    assert "activity ordering is off" not in result.stderr  # all are revoked at once: nothing to order
    assert sandbox.sandbox.tenant.activity_reads.get(ops.creds.client_id) == reads, "no signInActivity read"


def test_a_large_file_run_goes_by_activity_with_ids_and_upns(
    sandbox: Running, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    ops = activity_ops(sandbox, tmp_path, "activity-file")
    members = internal_members(sandbox)[::3]
    lines = [u.id if n % 2 else u.user_principal_name.upper() for n, u in enumerate(members)]
    lines.insert(5, "nobody.here@contoso-sandbox.onmicrosoft.com")
    targets = tmp_path / "targets.txt"
    targets.write_text("\n".join(lines) + "\n")
    journal = tmp_path / "file.jsonl"
    before = len(sandbox.revocations())
    result, confirmation = api_run(ops, sandbox, monkeypatch, files=[str(targets)], journal=journal)
    assert confirmation.ordering == "activity", confirmation.warnings
    assert result.exit_code == 1  # one target does not exist
    now = datetime.fromisoformat(journal_lines(journal)[0]["ordering"]["now"].replace("Z", "+00:00"))
    revoked = ops.revoked_ids(before)
    assert sorted(revoked) == sorted(u.id for u in members)
    ranks = ordered_ranks(sandbox, revoked, now)
    assert ranks == sorted(ranks) and len(set(ranks) - {0}) >= 3, ranks
    rest = [tenant_id for tenant_id, r in zip(revoked, ranks, strict=True) if r == 5]
    given = [u.id for u in members if u.id in set(rest)]
    assert rest == given, "targets without recent activity follow in the given order"
    missing = [r for r in journal_lines(journal) if r.get("outcome") == "not_found"]
    assert [r["target"] for r in missing] == ["nobody.here@contoso-sandbox.onmicrosoft.com"]


def test_a_resumed_group_run_keeps_the_order_across_windows_and_loses_nobody(sandbox: Running, tmp_path: Path):
    ops = activity_ops(sandbox, tmp_path, "activity-group-resume")
    group, members = biggest_group(sandbox)
    journal = tmp_path / "resume.jsonl"
    # ~86 members at 6 a second: 14 s, over twice the 6 s the windows wait for the read limit
    pace = ["--write-burst", "1", "--write-rate", "6", "--concurrency", "1"]
    before = len(sandbox.revocations())
    sandbox.settings(faults={"error_5xx": 0.3})
    try:
        first = ops.cli("revoke", "--group", group, "--yes", "--journal", str(journal), "--max-attempts", "1", *pace)
    finally:
        sandbox.settings(faults={"error_5xx": 0.0})
    assert first.returncode == 1, first.stderr
    assert "activity ordering is off" not in first.stderr
    assert journal_lines(journal)[0]["ordering"]["by"] == "activity"
    failed = {r["id"] for r in journal_lines(journal) if r.get("outcome") == "failed"}
    now = datetime.now(UTC)
    assert len(set(ordered_ranks(sandbox, sorted(failed), now))) > 1, "failures span several windows"
    middle = len(sandbox.revocations())
    resumed = ops.cli("revoke", "--resume", str(journal), "--yes", *pace)
    assert resumed.returncode == 0, resumed.stderr
    again = ops.revoked_ids(middle)
    assert set(again) == failed and len(again) == len(failed), "exactly the unsettled members, once each"
    ranks = ordered_ranks(sandbox, again, now)
    assert ranks == sorted(ranks), "the resumed run still goes by activity window"
    assert set(ops.revoked_ids(before)) == {u.id for u in members}


@pytest.mark.parametrize("cause", ["permission", "licence"])
def test_a_group_run_without_the_permission_or_licence_falls_back_and_says_why_once(
    sandbox: Running, tmp_path: Path, cause: str
):
    ops = activity_ops(sandbox, tmp_path, f"activity-group-{cause}", FULL if cause == "permission" else ACTIVITY)
    group, members = biggest_group(sandbox)
    before = len(sandbox.revocations())
    sandbox.sandbox.tenant.premium = cause != "licence"
    try:
        result = ops.cli("revoke", "--group", group, "--yes", "--write-burst", "1", "--write-rate", "100")
    finally:
        sandbox.sandbox.tenant.premium = True
    assert result.returncode == 0, result.stderr
    assert result.stderr.count("activity ordering is off") == 1, result.stderr
    assert ("AuditLog.Read.All" if cause == "permission" else "P1/P2") in result.stderr
    assert sorted(ops.revoked_ids(before)) == sorted(u.id for u in members)


# -- Graph refusing the window filters (400) --------------------------------------------------------
def test_refused_ranges_keep_activity_order_with_open_ended_windows(sandbox: Running, tmp_path: Path):
    ops = activity_ops(sandbox, tmp_path, "activity-no-ranges")
    journal = tmp_path / "ranges.jsonl"
    before = len(sandbox.revocations())
    sandbox.settings(activityRefusals=["range"])
    try:
        result = ops.cli("revoke", "--all-users", "--yes", "--journal", str(journal), "--concurrency", "1")
    finally:
        sandbox.settings(activityRefusals=[])
    assert result.returncode == 0, result.stderr
    assert result.stderr.count("listed with 'ge' alone") == 1, result.stderr
    now = datetime.fromisoformat(journal_lines(journal)[0]["ordering"]["now"].replace("Z", "+00:00"))
    revoked = ops.revoked_ids(before)
    assert sorted(revoked) == sorted(u.id for u in internal_members(sandbox))
    ranks = ordered_ranks(sandbox, revoked, now)
    assert ranks == sorted(ranks)


def test_a_refused_window_filter_falls_back_to_listing_order_before_the_run(sandbox: Running, tmp_path: Path):
    ops = activity_ops(sandbox, tmp_path, "activity-no-filter")
    journal = tmp_path / "refused.jsonl"
    before = len(sandbox.revocations())
    sandbox.settings(activityRefusals=["filter"])
    try:
        result = ops.cli("revoke", "--all-users", "--yes", "--journal", str(journal))
    finally:
        sandbox.settings(activityRefusals=[])
    assert result.returncode == 0, result.stderr
    assert result.stderr.count("activity ordering is off") == 1, result.stderr
    assert "Graph refused the sign-in activity filter" in result.stderr and "400" in result.stderr
    assert journal_lines(journal)[0]["ordering"] == {"by": "listing"}
    assert sorted(ops.revoked_ids(before)) == sorted(u.id for u in internal_members(sandbox))


def test_a_filter_refused_mid_run_falls_back_and_loses_nobody(
    sandbox: Running, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
):
    """The probe passed; Graph refuses the windows once the run started: listing order from there."""
    ops = activity_ops(sandbox, tmp_path, "activity-refused-mid-run")
    before = len(sandbox.revocations())

    def refuse() -> None:
        sandbox_activity.refuse(sandbox.sandbox.tenant, ["filter"])

    try:
        result, confirmation = api_run(
            ops, sandbox, monkeypatch, on_confirm=refuse, all_users=True, journal=tmp_path / "mid.jsonl"
        )
    finally:
        sandbox_activity.refuse(sandbox.sandbox.tenant, [])
    assert confirmation.ordering == "activity"
    assert result.exit_code == 0
    stopped = [r.getMessage() for r in caplog.records if "activity ordering stopped" in r.getMessage()]
    assert len(stopped) == 1 and "Graph refused the sign-in activity filter" in stopped[0]
    # the journal's header says what was planned; a line says what changed, and so does the report
    lines = journal_lines(tmp_path / "mid.jsonl")
    assert lines[0]["ordering"]["by"] == "activity"
    changed = [line for line in lines if line.get("type") == "ordering"]
    assert len(changed) == 1 and changed[0]["by"] == "listing" and "refused" in changed[0]["reason"], changed
    assert any("activity ordering stopped mid-run" in w for w in result.warnings), result.warnings
    revoked = ops.revoked_ids(before)
    assert sorted(revoked) == sorted(u.id for u in internal_members(sandbox)), "everyone, once"


def test_the_sandbox_names_the_refusals_it_knows(sandbox: Running) -> None:
    answer = sandbox.control.post("/settings", json={"activityRefusals": ["ranges"]})
    assert answer.status_code == 400 and "range" in json.dumps(answer.json())
