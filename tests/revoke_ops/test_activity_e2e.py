"""Activity ordering end to end: the real CLI and API, msgraph-sdk over HTTPS to the sandbox.

Whole-tenant runs revoke privileged users, then users by sign-in activity window (most recent first),
then everyone else; without AuditLog.Read.All or the licence they fall back to listing order and say
why once; ``--skip-inactive-days`` is opt-in and journaled; a resumed run keeps the order and loses
nobody.
"""

from __future__ import annotations

import asyncio
import json
import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from revoke_ops.activity import inactive_for, window_of
from revoke_ops.errors import InputError
from tests.revoke_ops.conftest import DOMAIN, FULL, Ops, write_bundle
from tests.sandbox.conftest import Running

ACTIVITY = (*FULL, "AuditLog.Read.All")


def activity_ops(run: Running, tmp_path: Path, name: str, roles: tuple[str, ...] = ACTIVITY) -> Ops:
    creds = run.app(name, app_roles=roles)
    return Ops(run, creds, write_bundle(run, creds, tmp_path / "bundle.json", app_roles=roles))


def latest(user: Any) -> datetime | None:
    stamps = [s for s in (user.last_sign_in, user.last_non_interactive_sign_in) if s is not None]
    return max(stamps, default=None)


def privileged(tenant: Any, user: Any) -> bool:
    """A directory role holder: assigned, PIM-eligible, or through a role-assignable group."""
    if user.roles or getattr(user, "eligible_roles", None):
        return True
    groups = [g for g in tenant.groups.values() if getattr(g, "roles", None)]
    return any(user.id in tenant.transitive_members(g.id) for g in groups)


def rank(user: Any, now: datetime, tenant: Any = None) -> int:
    """0 privileged, 1-4 the activity windows, 5 everyone else."""
    if user.roles or (tenant is not None and privileged(tenant, user)):
        return 0
    window = window_of(latest(user), now)
    return 5 if window is None else window + 1


def internal_members(run: Running) -> list[Any]:
    """The users a whole-tenant run revokes: not guests, not B2B members."""
    return [u for u in run.sandbox.tenant.users if u.user_type == "Member" and not u.external_user_state]


def journal_lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_whole_tenant_run_revokes_privileged_then_most_recently_active_first(sandbox: Running, tmp_path: Path):
    ops = activity_ops(sandbox, tmp_path, "activity-order")
    before = len(sandbox.revocations())
    journal = tmp_path / "j.jsonl"
    args = ["revoke", "--all-users", "--yes", "--concurrency", "1", "--journal", str(journal)]
    result = ops.cli(*args, "--exclude", f"breakglass1@{DOMAIN}", "--output", "json")
    assert result.returncode == 0, result.stderr
    assert "activity ordering is off" not in result.stderr
    header = journal_lines(journal)[0]
    assert header["ordering"]["by"] == "activity"
    now = datetime.fromisoformat(header["ordering"]["now"].replace("Z", "+00:00"))
    tenant = sandbox.sandbox.tenant
    revoked = [tenant.users_by_id[i] for i in ops.revoked_ids(before)]
    members = internal_members(sandbox)
    assert {u.id for u in revoked} == {u.id for u in members} - {ops.user("breakglass1").id}
    ranks = [rank(u, now, tenant) for u in revoked]
    assert ranks == sorted(ranks), "privileged, then by activity window, then everyone else"
    assert ranks[0] == 0 and 1 in ranks and 5 in ranks
    summary = json.loads(result.stdout)["summary"]["outcomes"]
    assert summary["skipped_inactive"] == 0, "nobody is skipped unless asked"


@pytest.mark.parametrize("cause", ["permission", "licence"])
def test_without_the_permission_or_licence_the_run_falls_back_and_says_why_once(
    sandbox: Running, tmp_path: Path, cause: str
):
    roles = FULL if cause == "permission" else ACTIVITY
    ops = activity_ops(sandbox, tmp_path, f"activity-fallback-{cause}", roles)
    before = len(sandbox.revocations())
    sandbox.sandbox.tenant.premium = cause != "licence"
    try:
        result = ops.cli("revoke", "--all-users", "--yes", "--exclude", f"breakglass1@{DOMAIN}")
        skipping = ops.cli("revoke", "--all-users", "--yes", "--skip-inactive-days", "90")
    finally:
        sandbox.sandbox.tenant.premium = True
    assert result.returncode == 0, result.stderr
    assert result.stderr.count("activity ordering is off") == 1, result.stderr
    why = "AuditLog.Read.All" if cause == "permission" else "P1/P2"
    assert why in result.stderr
    members = internal_members(sandbox)
    assert len(ops.revoked_ids(before)) == len(members) - 1, "everyone is still revoked, in listing order"
    assert skipping.returncode == 2 and "--skip-inactive-days needs the tenant's sign-in activity" in skipping.stderr
    assert len(ops.revoked_ids(before)) == len(members) - 1, "refusing to skip blind changed nothing"


def test_skip_inactive_days_is_opt_in_counted_at_the_confirmation_and_journaled(
    sandbox: Running, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    from revoke_ops import RevokeRequest, certificate_identity, load_bundle, revoke

    monkeypatch.setenv("REVOKE_OPS_ALLOW_CUSTOM_CLOUD", "1")
    ops = activity_ops(sandbox, tmp_path, "activity-skip")
    journal = tmp_path / "skip.jsonl"
    asked: list[str] = []

    async def go(answer: bool) -> Any:
        def confirm(confirmation: Any) -> bool:
            asked.append(confirmation.question())
            return answer

        identity = certificate_identity(bundle=load_bundle(ops.bundle))
        try:
            request = RevokeRequest(
                all_users=True,
                skip_inactive_days=90,
                journal=journal,
                reason="INC-15",
                activity_reads_per_minute=600,  # the 10-a-minute limit has its own test
            )
            return await revoke(identity, request, confirm=confirm)
        finally:
            await identity.close()

    before = len(sandbox.revocations())
    monkeypatch.setattr(sandbox.sandbox.tenant, "activity_reads_per_minute", 600.0)
    with pytest.raises(InputError, match="stopped at the confirmation"):
        asyncio.run(go(False))
    assert len(sandbox.revocations()) == before
    assert "NOT revoking" in asked[0] and "more than 90 days" in asked[0] and "most recently active" in asked[0]

    result = asyncio.run(go(True))
    now = datetime.now(UTC)
    members = internal_members(sandbox)
    dormant = {u.id for u in members if not privileged(sandbox.sandbox.tenant, u) and inactive_for(latest(u), now, 90)}
    assert dormant and result.summary.counts["skipped_inactive"] == len(dormant)
    revoked = set(ops.revoked_ids(before))
    assert revoked == {u.id for u in members} - dormant
    assert ops.user("breakglass1").id in revoked, "a dormant Global Administrator is still revoked (privileged)"
    skipped = [r for r in journal_lines(journal) if r.get("outcome") == "skipped_inactive"]
    assert {r["id"] for r in skipped} == dormant
    assert all("--skip-inactive-days 90" in r["reason"] for r in skipped)
    counted = re.search(r"NOT revoking (?:between (\d+) and (\d+)|about (\d+))", asked[0])
    assert counted, asked[0]
    low, high = (int(counted[1]), int(counted[2])) if counted[1] else (int(counted[3]), int(counted[3]))
    assert low <= len(dormant) <= high
    assert result.exit_code == 0


def test_a_resumed_run_keeps_the_order_across_windows_and_loses_nobody(sandbox: Running, tmp_path: Path):
    ops = activity_ops(sandbox, tmp_path, "activity-resume")
    journal = tmp_path / "resume.jsonl"
    before = len(sandbox.revocations())
    sandbox.settings(faults={"error_5xx": 0.3})
    try:
        first = ops.cli(
            "revoke", "--all-users", "--yes", "--journal", str(journal), "--max-attempts", "1", "--concurrency", "1"
        )
    finally:
        sandbox.settings(faults={"error_5xx": 0.0})
    assert first.returncode == 1, first.stderr  # some users failed: Graph kept answering 503
    failed = {r["id"] for r in journal_lines(journal) if r.get("outcome") == "failed"}
    assert failed
    tenant = sandbox.sandbox.tenant
    now = datetime.now(UTC)
    assert len({rank(tenant.users_by_id[i], now, tenant) for i in failed}) > 1, "failures span several windows"
    middle = len(sandbox.revocations())
    resumed = ops.cli("revoke", "--resume", str(journal), "--yes", "--concurrency", "1")
    assert resumed.returncode == 0, resumed.stderr
    again = ops.revoked_ids(middle)
    assert set(again) == failed and len(again) == len(failed), "exactly the unsettled users, once each"
    ranks = [rank(tenant.users_by_id[i], now, tenant) for i in again]
    assert ranks == sorted(ranks), "the resumed run still goes by activity window"
    members = internal_members(sandbox)
    assert set(ops.revoked_ids(before)) == {u.id for u in members}


def test_doctor_reports_whether_activity_ordering_is_available(sandbox: Running, tmp_path: Path):
    with_it = activity_ops(sandbox, tmp_path, "activity-doctor")
    result = with_it.cli("doctor", "--output", "json")
    checks = {c["name"]: c for c in json.loads(result.stdout)}
    assert checks["activity"]["status"] == "ok", result.stdout
    sandbox.sandbox.tenant.premium = False
    try:
        unlicensed = {c["name"]: c for c in json.loads(with_it.cli("doctor", "--output", "json").stdout)}
    finally:
        sandbox.sandbox.tenant.premium = True
    assert unlicensed["activity"]["status"] == "warn" and "P1/P2" in unlicensed["activity"]["detail"]
    # doctor probes what a run probes: a filter on signInActivity Graph refuses is a warning, not "ok"
    sandbox.settings(activityRefusals=["filter"])
    try:
        refused = {c["name"]: c for c in json.loads(with_it.cli("doctor", "--output", "json").stdout)}
    finally:
        sandbox.settings(activityRefusals=[])
    assert refused["activity"]["status"] == "warn", refused["activity"]
    assert "refused the sign-in activity filter" in refused["activity"]["detail"]
    (tmp_path / "plain").mkdir()
    without = activity_ops(sandbox, tmp_path / "plain", "activity-doctor-plain", FULL)
    plain = {c["name"]: c for c in json.loads(without.cli("doctor", "--output", "json").stdout)}
    assert plain["activity"]["status"] == "warn" and "AuditLog.Read.All" in plain["activity"]["detail"]
