"""`revoke-ops contain` the way an operator under pressure hits it: a kill while a disable batch is in
flight, `--undo` run again, and a resumed run that must still report who is not contained."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from revoke_ops.bundle import ALLOW_CUSTOM_CLOUD_ENV
from tests.revoke_ops.test_contain import account_changes, contain_ops, journal_lines
from tests.sandbox.conftest import Running


def ordinary_users(sandbox: Running, start: int, count: int) -> list[Any]:
    """Enabled ordinary users no other contain test uses (those take the first few hundred)."""
    users = [u for u in sandbox.sandbox.tenant.users if u.user_principal_name.startswith("user") and not u.roles]
    return [u for u in users[start:] if u.account_enabled][:count]


def test_kill_while_a_disable_batch_is_in_flight_then_undo_restores_every_account_the_run_disabled(
    sandbox: Running, tmp_path: Path
):
    """The before-state must be journaled before the PATCH: killed between the PATCH and its `disable`
    lines, the accounts were disabled by this run, and `--undo` (with or without a resume) restores them."""
    ops = contain_ops(sandbox, tmp_path, "contain-kill-inflight")
    users = ordinary_users(sandbox, 450, 30)
    try:
        _kill_in_flight_then_undo(sandbox, tmp_path, ops, users)
    finally:
        for user in users:  # leave the shared tenant as found
            sandbox.sandbox.call(setattr, user, "account_enabled", True)


def kill_while_a_disable_is_in_flight(sandbox: Running, ops: Any, group_id: str, journal: Path) -> None:
    """Run contain on the group and kill -9 it once a disable batch is on its way to Graph (its
    `disable-attempt` line written, its answer not yet journaled); Graph completes the request."""
    exe = Path(sys.executable).parent / "revoke-ops"
    env = {**os.environ, "SSL_CERT_FILE": sandbox.ca, "REQUESTS_CA_BUNDLE": sandbox.ca, ALLOW_CUSTOM_CLOUD_ENV: "1"}
    sandbox.settings(latency={"medianMs": 3000, "p99Ms": 3000})  # every Graph request waits 3 s, then is served
    try:
        proc = subprocess.Popen(  # our own command
            [str(exe), "contain", "--group", group_id, "--yes", "--journal", str(journal), "--concurrency", "1",
             "--credentials", str(ops.bundle)],
            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
        )  # fmt: skip
        try:
            deadline, sent = time.monotonic() + 120, False
            while time.monotonic() < deadline and not sent:
                lines = journal.read_text().splitlines() if journal.exists() else []
                sent = bool(lines) and json.loads(lines[-1])["type"] == "disable-attempt"
                time.sleep(0.02)
            assert sent, "no disable batch was sent"
            time.sleep(1.0)  # the batch has reached Graph, whose answer takes 3 s
            os.killpg(proc.pid, signal.SIGKILL)
        finally:
            proc.wait(timeout=30)
        time.sleep(4)  # Graph (the sandbox) completes the request whose client died
    finally:
        sandbox.settings(latency={"medianMs": 0, "p99Ms": 0})


def _kill_in_flight_then_undo(sandbox: Running, tmp_path: Path, ops: Any, users: list[Any]) -> None:
    group = sandbox.sandbox.call(sandbox.sandbox.tenant.add_group, "incident-inflight", sorted(u.id for u in users))
    changes_before = len(account_changes(sandbox))
    journal = tmp_path / "inflight.jsonl"
    kill_while_a_disable_is_in_flight(sandbox, ops, group.id, journal)
    first = journal_lines(journal)
    disabled_by_run = {c["userId"] for c in account_changes(sandbox)[changes_before:] if not c["accountEnabled"]}
    journaled = {r["id"] for r in first if r["type"] == "disable"}
    assert disabled_by_run - journaled, "the kill landed between the PATCH and its journal lines"

    undone = ops.cli("contain", "--undo", "--journal", str(journal), "--yes", "--output", "json")
    assert undone.returncode == 0, undone.stderr
    assert {u.id for u in users if not u.account_enabled} == set(), "undo without a resume restores them"

    # Contained again from scratch, killed in flight again, resumed: undo still restores every account
    journal2 = tmp_path / "inflight2.jsonl"
    kill_while_a_disable_is_in_flight(sandbox, ops, group.id, journal2)
    resumed = ops.cli("contain", "--resume", str(journal2), "--yes", "--output", "json")
    assert resumed.returncode == 0, resumed.stderr
    # the accounts the killed part disabled are the run's doing, not "already disabled"
    assert "already_disabled" not in json.loads(resumed.stdout)["contain"]["steps"]
    assert all(not u.account_enabled for u in users)
    undone = ops.cli("contain", "--undo", "--journal", str(journal2), "--yes", "--output", "json")
    assert undone.returncode == 0, undone.stderr
    assert json.loads(undone.stdout)["undo"] == {"enabled": len(users)}
    assert all(u.account_enabled for u in users)


def test_undo_run_again_completes_or_reports_instead_of_refusing(sandbox: Running, tmp_path: Path):
    """An undo interrupted (or simply run twice) must be runnable again: it re-reads every account."""
    ops = contain_ops(sandbox, tmp_path, "contain-undo-twice")
    users = ordinary_users(sandbox, 500, 3)
    journal = tmp_path / "twice.jsonl"
    args = [a for u in users for a in ("--user", u.id)]
    assert ops.cli("contain", *args, "--yes", "--journal", str(journal)).returncode == 0
    # "undo, but keep this one disabled": refused, not silently ignored (it would re-enable it)
    for option in (["--exclude", users[0].id], ["--filter", "department eq 'Sales'"], ["--include-external"]):
        kept = ops.cli("contain", "--undo", "--journal", str(journal), *option, "--yes")
        assert kept.returncode == 2 and f"(got {option[0]})" in kept.stderr, kept.stderr
    assert not any(u.account_enabled for u in users)
    first = ops.cli("contain", "--undo", "--journal", str(journal), "--yes", "--output", "json")
    assert first.returncode == 0, first.stderr
    assert json.loads(first.stdout)["undo"] == {"enabled": 3}
    again = ops.cli("contain", "--undo", "--journal", str(journal), "--yes", "--output", "json")
    assert again.returncode == 0, again.stderr
    report = json.loads(again.stdout)
    assert report["undo"] == {"no_longer_disabled": 3}
    assert report["journal"] != json.loads(first.stdout)["journal"], "each undo keeps its own journal"
    assert all(u.account_enabled for u in users)


def test_a_resumed_run_still_reports_the_users_the_interrupted_part_could_not_block(sandbox: Running, tmp_path: Path):
    """Killed after an admin was revoked but refused the disable (forbidden), the resume must not say
    every user is contained: the admin can still sign in (exit 1, listed in notContained)."""
    ops = contain_ops(sandbox, tmp_path, "contain-resume-report")
    admin = ops.user("admin.helpdesk")
    users = ordinary_users(sandbox, 520, 40)
    journal = tmp_path / "report.jsonl"
    exe = Path(sys.executable).parent / "revoke-ops"
    env = {**os.environ, "SSL_CERT_FILE": sandbox.ca, "REQUESTS_CA_BUNDLE": sandbox.ca, ALLOW_CUSTOM_CLOUD_ENV: "1"}
    args = [a for u in users for a in ("--user", u.id)]
    try:
        proc = subprocess.Popen(  # our own command; privileged users go first
            [str(exe), "contain", "--user", admin.id, *args, "--yes", "--journal", str(journal), "--concurrency", "1",
             "--write-burst", "4", "--write-rate", "4", "--credentials", str(ops.bundle)],
            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
        )  # fmt: skip
        try:
            deadline = time.monotonic() + 90
            while time.monotonic() < deadline:
                text = journal.read_text() if journal.exists() else ""
                if any(r["type"] == "outcome" and r["id"] == admin.id for r in map(json.loads, text.splitlines())):
                    break
                time.sleep(0.02)
            os.killpg(proc.pid, signal.SIGKILL)
        finally:
            proc.wait(timeout=30)
        first = journal_lines(journal)
        assert not any(r["type"] == "end" for r in first), "killed before the end"
        assert any(r["type"] == "disable" and r["id"] == admin.id and r["step"] == "forbidden" for r in first)
        resumed = ops.cli("contain", "--resume", str(journal), "--yes", "--output", "json")
        assert resumed.returncode == 1, resumed.stdout + resumed.stderr
        body = json.loads(resumed.stdout)
        assert [r["step"] for r in body["notContained"] if r["id"] == admin.id] == ["forbidden"]
        assert admin.account_enabled and all(not u.account_enabled for u in users)
    finally:
        for user in users:  # leave the shared tenant as found
            sandbox.sandbox.call(setattr, user, "account_enabled", True)


def test_the_signed_in_operator_is_never_disabled_even_when_graph_does_not_answer_me(
    sandbox: Running, tmp_path: Path, monkeypatch: Any
):
    """`/me` answered 503 after every retry (the run otherwise goes on: for `revoke` only the order
    depends on it): the operator is still known from the token (`oid`) and never disabled."""
    from revoke_ops import load_bundle, preflight
    from revoke_ops.contain import ContainRequest, contain
    from revoke_ops.credentials.delegated import delegated_identity
    from tests.revoke_ops.test_contain_admins import BASE, delegated_ops

    ops = delegated_ops(sandbox, tmp_path, "contain-no-me", BASE)
    operator = ops.user("operator")
    plain = ordinary_users(sandbox, 565, 1)[0]

    async def graph_did_not_answer(identity: Any, session: Any) -> tuple[None, None]:
        return None, None

    monkeypatch.setattr(preflight, "signed_in_operator", graph_did_not_answer)

    async def go() -> Any:
        identity = delegated_identity("device-code", bundle=load_bundle(ops.bundle), prompt=lambda *a: None)
        try:
            request = ContainRequest(users=[operator.id, plain.id], journal=tmp_path / "me.jsonl", reason="INC-me")
            return await contain(identity, request, confirm=lambda _: True)
        finally:
            await identity.close()

    sandbox.settings(autoApproveUser=operator.user_principal_name)
    try:
        result = asyncio.run(go())
    finally:
        sandbox.settings(autoApproveUser=None)
        sandbox.sandbox.call(setattr, operator, "account_enabled", True)
        sandbox.sandbox.call(setattr, plain, "account_enabled", True)
    assert result.contain.steps == {"disabled": 1, "operator_not_disabled": 1}
    assert operator.id not in {c["userId"] for c in account_changes(sandbox) if not c["accountEnabled"]}


def test_contain_without_user_read_all_is_refused_before_anything_changes(sandbox: Running, tmp_path: Path):
    """Graph's least-privileged pair is User.EnableDisableAccount.All *with* User.Read.All: without the
    second every disable is refused (403). The run must say so up front, not revoke everyone and then
    blame each user's admin role."""
    ops = contain_ops(
        sandbox, tmp_path, "contain-no-read", roles=("User.RevokeSessions.All", "User.EnableDisableAccount.All")
    )
    plain = ordinary_users(sandbox, 570, 1)[0]
    revocations = len(sandbox.revocations())
    result = ops.cli("contain", "--user", plain.id, "--yes", "--journal", str(tmp_path / "j.jsonl"))
    assert result.returncode == 3, result.stdout + result.stderr
    assert "User.Read.All" in result.stderr and "admin role" not in result.stdout + result.stderr
    assert len(sandbox.revocations()) == revocations and plain.account_enabled


def test_the_text_report_tells_the_operator_what_to_do_for_each_user_not_blocked(sandbox: Running, tmp_path: Path):
    """The table's WHY column is cut to fit: the action ("disable … in AD", "… in the Entra admin
    center") must come first, or the footer's "act on each as the table says" points at nothing."""
    ops = contain_ops(sandbox, tmp_path, "contain-text-report")
    admin, synced = ops.user("admin.password"), ops.user("hybrid.synced2")
    result = ops.cli(
        "contain", "--user", admin.id, "--user", synced.id, "--yes", "--journal", str(tmp_path / "j.jsonl")
    )
    assert result.returncode == 1, result.stderr
    table = [line for line in result.stdout.splitlines() if admin.id in line or synced.id in line]
    rows = {line.split()[0]: line for line in table}
    assert "disable the account in on-premises AD" in rows["on_premises_synced"], result.stdout
    assert "disable it in the Entra admin center" in rows["forbidden"], result.stdout


def test_a_dry_run_predicts_who_will_not_be_blocked_and_changes_nothing(sandbox: Running, tmp_path: Path):
    """The runbook asks the operator to read the dry run for the users contain cannot block: admins
    this token cannot disable, users synced from AD, accounts already disabled. The dry run said
    nothing about sign-in (`"contain": {"steps": {}}`)."""
    ops = contain_ops(sandbox, tmp_path, "contain-dry-predict")
    tenant = sandbox.sandbox.tenant
    plain, off = ordinary_users(sandbox, 571, 2)
    admin, synced = ops.user("admin.users"), ops.user("hybrid.synced1")
    sandbox.sandbox.call(setattr, off, "account_enabled", False)
    changes, revocations = len(account_changes(sandbox)), len(sandbox.revocations())
    try:
        result = ops.cli(
            "contain", "--user", admin.id, "--user", synced.id, "--user", plain.id, "--user", off.id,
            "--user", "breakglass1@contoso-sandbox.onmicrosoft.com",
            "--exclude", "breakglass1@contoso-sandbox.onmicrosoft.com", "--dry-run", "--output", "json",
        )  # fmt: skip
    finally:
        sandbox.sandbox.call(setattr, off, "account_enabled", True)
    assert result.returncode == 1, "the real run would exit 1: two users would not be blocked"
    body = json.loads(result.stdout)
    steps = {r["id"]: r for r in body["notContained"]}
    assert set(steps) == {admin.id, synced.id}, body["notContained"]
    assert steps[admin.id]["step"] == "forbidden" and "would still be revoked" in steps[admin.id]["reason"]
    assert steps[synced.id]["step"] == "on_premises_synced"
    assert steps[synced.id]["reason"].startswith("disable the account in on-premises AD")
    assert "were still revoked" not in result.stdout, "nothing was revoked: a dry run says what would happen"
    assert body["contain"]["steps"] == {"forbidden": 1, "on_premises_synced": 1, "disabled": 1, "already_disabled": 1}
    assert len(account_changes(sandbox)) == changes and len(sandbox.revocations()) == revocations
    assert plain.account_enabled and admin.account_enabled and tenant.users_by_id[synced.id].account_enabled


def test_undo_lists_the_accounts_whose_state_before_the_run_is_unknown_instead_of_hiding_them(
    sandbox: Running, tmp_path: Path, monkeypatch: Any
):
    """When the before-state read fails the account is still disabled (containment first), but undo
    cannot know whether it was enabled: it must not enable it, and must not leave it out silently."""
    from sandbox.graph.base import Request, Response

    ops = contain_ops(sandbox, tmp_path, "contain-before-unknown")
    known, unread = ordinary_users(sandbox, 490, 2)
    graph = sandbox.sandbox.graph
    original = graph.handle

    def handle(request: Request, auth: str | None) -> Response:
        if (
            request.method == "GET"
            and unread.id in request.path
            and "accountEnabled" in request.query.get("$select", "")
        ):
            return Response(200, {"id": unread.id})  # an answer without the state asked for
        return original(request, auth)

    monkeypatch.setattr(graph, "handle", handle)
    journal = tmp_path / "j.jsonl"
    result = ops.cli("contain", "--user", known.id, "--user", unread.id, "--yes", "--journal", str(journal))
    monkeypatch.setattr(graph, "handle", original)
    assert result.returncode == 0, result.stdout + result.stderr
    assert not known.account_enabled and not unread.account_enabled, "both blocked: containment first"

    undone = ops.cli("contain", "--undo", "--journal", str(journal), "--yes", "--output", "json")
    assert undone.returncode == 1, undone.stdout + undone.stderr
    report = json.loads(undone.stdout)
    assert report["undo"] == {"enabled": 1, "before_unknown": 1}, report
    row = next(r for r in report["users"] if r["id"] == unread.id)
    assert row["step"] == "before_unknown" and "check it" in row["reason"]
    assert known.account_enabled and not unread.account_enabled, "only the account known to be enabled before"
    sandbox.sandbox.call(setattr, unread, "account_enabled", True)  # leave the shared tenant as found
