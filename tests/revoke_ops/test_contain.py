"""`revoke-ops contain` end to end against the sandbox: block sign-in, then revoke; undo; resume."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from revoke_ops.bundle import ALLOW_CUSTOM_CLOUD_ENV
from tests.revoke_ops.conftest import DOMAIN, FULL, Ops, write_bundle
from tests.sandbox.conftest import Running

CONTAIN = (*FULL, "User.EnableDisableAccount.All")


def contain_ops(sandbox: Running, tmp_path: Path, name: str, roles: tuple[str, ...] = CONTAIN) -> Ops:
    creds = sandbox.app(name[:60], app_roles=roles)
    return Ops(sandbox, creds, write_bundle(sandbox, creds, tmp_path / "bundle.json", app_roles=roles))


def incident_group(sandbox: Running, name: str, size: int) -> tuple[str, list[Any]]:
    """A new group of ``size`` ordinary users plus break-glass 1 (the exclusion under test)."""
    tenant = sandbox.sandbox.tenant
    users = [u for u in tenant.users if u.user_principal_name.startswith("user") and not u.roles][:size]
    breakglass = sandbox.user("breakglass1")
    group = sandbox.sandbox.call(tenant.add_group, name, [*(u.id for u in users), breakglass.id])
    return group.id, users


def account_changes(sandbox: Running) -> list[dict[str, Any]]:
    return list(sandbox.control.get("/account-changes").json())


def sign_in(sandbox: Running, upn: str) -> httpx.Response:
    """A user's interactive sign-in (authorization code with PKCE) to a public client: the token answer."""
    creds = sandbox.app(f"signin-{upn[:20]}", scopes=("User.RevokeSessions.All",), public_client=True)
    base = f"{sandbox.info['authorityHost']}/{sandbox.info['tenantId']}/oauth2/v2.0"
    verifier = "v" * 50
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    redirect = "http://localhost:5555"
    code = httpx.get(
        f"{base}/authorize",
        params={
            "client_id": creds.client_id,
            "redirect_uri": redirect,
            "response_type": "code",
            "scope": sandbox.info["graphScope"],
            "code_challenge": challenge,
            "code_challenge_method": "S256",
            "login_hint": upn,
        },
        verify=sandbox.tls,
    )
    params = httpx.URL(code.headers["location"]).params
    form = {
        "grant_type": "authorization_code",
        "client_id": creds.client_id,
        "code": params["code"],
        "redirect_uri": redirect,
        "code_verifier": verifier,
    }
    return httpx.post(f"{base}/token", data=form, verify=sandbox.tls)


def journal_lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def test_contain_a_group_disables_then_revokes_all_but_the_excluded_and_undo_restores_them(
    sandbox: Running, tmp_path: Path
):
    ops = contain_ops(sandbox, tmp_path, "contain-group")
    group_id, users = incident_group(sandbox, "incident-contain", 300)
    enabled_before = {u.id for u in users if u.account_enabled}
    already_disabled = {u.id for u in users} - enabled_before
    breakglass = ops.user("breakglass1")
    changes_before, revocations_before = len(account_changes(sandbox)), len(sandbox.revocations())
    journal = tmp_path / "contain.jsonl"

    result = ops.cli(
        "contain", "--group", group_id, "--exclude", f"BreakGlass1@{DOMAIN.upper()}", "--yes",
        "--journal", str(journal), "--reason", "incident 77", "--output", "json",
    )  # fmt: skip

    assert result.returncode == 0, result.stderr
    body = json.loads(result.stdout)
    assert body["contain"]["steps"] == {"disabled": len(enabled_before), **(
        {"already_disabled": len(already_disabled)} if already_disabled else {}
    )}  # fmt: skip
    assert body["summary"]["outcomes"]["revoked"] == len(users)
    assert body["summary"]["outcomes"]["excluded"] == 1
    assert body["notContained"] == []
    # What really happened, from the sandbox's own records
    assert all(not u.account_enabled for u in users)
    assert breakglass.account_enabled
    changes = account_changes(sandbox)[changes_before:]
    assert {c["userId"] for c in changes} == enabled_before and all(c["accountEnabled"] is False for c in changes)
    assert len(changes) == len(enabled_before), "each account disabled once"
    assert {r["userId"] for r in sandbox.revocations()[revocations_before:]} == {u.id for u in users}
    # The journal: every user's before-state and disable line precede its revocation outcome
    lines = journal_lines(journal)
    assert lines[0]["spec"]["command"] == "contain" and lines[0]["reason"] == "incident 77"
    position = {(r["type"], r.get("id")): n for n, r in enumerate(lines)}
    for user in users:
        assert position[("disable", user.id)] < position[("outcome", user.id)]
    disables = {r["id"]: r for r in lines if r["type"] == "disable"}
    assert {i for i, r in disables.items() if r["before"] is True} == enabled_before
    assert breakglass.id not in disables
    # A disabled user can no longer get a token
    victim = next(u for u in users if u.id in enabled_before)
    refused = sign_in(sandbox, victim.user_principal_name)
    assert refused.status_code == 400 and refused.json()["error_codes"] == [50057]
    assert sign_in(sandbox, breakglass.user_principal_name).status_code == 200
    # verify confirms the revocations and that the accounts are still disabled
    checked = ops.cli("verify", "--journal", str(journal), "--output", "json")
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert json.loads(checked.stdout)["verdicts"]["not_disabled"] == 0

    # Someone re-enables one account in between: undo leaves it alone and says it cannot see more
    other = next(u for u in users if u.id in enabled_before and u.id != victim.id)
    sandbox.sandbox.call(setattr, other, "account_enabled", True)
    undone = ops.cli("contain", "--undo", "--journal", str(journal), "--yes", "--output", "json")
    assert undone.returncode == 0, undone.stderr
    report = json.loads(undone.stdout)
    assert report["undo"] == {"no_longer_disabled": 1, "enabled": len(enabled_before) - 1}
    assert "cannot be detected" in report["note"]
    assert {u.id for u in users if u.account_enabled} == enabled_before
    assert all(not u.account_enabled for u in users if u.id in already_disabled)
    assert sign_in(sandbox, victim.user_principal_name).status_code == 200
    # after the undo, verify says plainly that those accounts are no longer contained
    after = json.loads(ops.cli("verify", "--journal", str(journal), "--output", "json").stdout)
    assert after["verdicts"]["not_disabled"] == len(enabled_before) and not after["accountedFor"]


def test_privileged_and_synced_users_are_revoked_but_reported_not_contained(sandbox: Running, tmp_path: Path):
    ops = contain_ops(sandbox, tmp_path, "contain-mixed")
    plain = next(u for u in sandbox.sandbox.tenant.users if u.user_principal_name.startswith("user0005"))
    admin, synced = ops.user("admin.users"), ops.user("hybrid.synced1")
    before = len(sandbox.revocations())
    result = ops.cli(
        "contain", "--user", admin.id, "--user", synced.user_principal_name, "--user", plain.id,
        "--yes", "--journal", str(tmp_path / "j.jsonl"), "--output", "json",
    )  # fmt: skip
    assert result.returncode == 1, result.stderr
    body = json.loads(result.stdout)
    steps = {r["id"]: r for r in body["notContained"]}
    assert steps[admin.id]["step"] == "forbidden" and "admin role" in steps[admin.id]["reason"]
    assert steps[synced.id]["step"] == "on_premises_synced"
    assert "disable the account in on-premises AD" in steps[synced.id]["reason"]
    assert plain.id not in steps
    assert admin.account_enabled and synced.account_enabled
    assert {r["userId"] for r in sandbox.revocations()[before:]} == {admin.id, synced.id, plain.id}, "all revoked"
    sandbox.sandbox.call(setattr, plain, "account_enabled", True)  # leave the shared tenant as found


def test_contain_without_the_disable_permission_changes_nothing(sandbox: Running, tmp_path: Path):
    ops = contain_ops(sandbox, tmp_path, "contain-noperm", roles=FULL)
    before = len(sandbox.revocations())
    result = ops.cli("contain", "--user", ops.user("operator").id, "--yes", "--journal", str(tmp_path / "j.jsonl"))
    assert result.returncode == 3
    assert "User.EnableDisableAccount.All" in result.stderr and "containmentPermissions" in result.stderr
    assert len(sandbox.revocations()) == before


def test_kill_mid_run_then_resume_loses_nobody_and_never_disables_the_excluded(sandbox: Running, tmp_path: Path):
    ops = contain_ops(sandbox, tmp_path, "contain-resume")
    group_id, users = incident_group(sandbox, "incident-resume", 120)
    enabled_before = {u.id for u in users if u.account_enabled}
    breakglass = ops.user("breakglass1")
    changes_before = len(account_changes(sandbox))
    journal = tmp_path / "resume.jsonl"
    exe = Path(sys.executable).parent / "revoke-ops"
    env = {**os.environ, "SSL_CERT_FILE": sandbox.ca, "REQUESTS_CA_BUNDLE": sandbox.ca, ALLOW_CUSTOM_CLOUD_ENV: "1"}
    proc = subprocess.Popen(  # our own command
        [str(exe), "contain", "--group", group_id, "--exclude", breakglass.id, "--yes", "--journal", str(journal),
         "--write-burst", "20", "--write-rate", "20", "--concurrency", "1", "--credentials", str(ops.bundle)],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if journal.exists() and journal.read_text().count('"type":"disable"') >= 30:
                break
            time.sleep(0.05)
        os.killpg(proc.pid, signal.SIGKILL)
    finally:
        proc.wait(timeout=30)
    first = journal_lines(journal)
    assert not any(r["type"] == "end" for r in first), "killed before the end"
    resumed = ops.cli("contain", "--resume", str(journal), "--yes", "--output", "json")
    assert resumed.returncode == 0, resumed.stderr
    assert all(not u.account_enabled for u in users)
    assert breakglass.account_enabled
    changed = {c["userId"] for c in account_changes(sandbox)[changes_before:]}
    assert changed == enabled_before and breakglass.id not in changed
    outcomes = {r["id"]: r["outcome"] for r in journal_lines(journal) if r["type"] == "outcome"}
    assert all(outcomes[u.id] == "revoked" for u in users) and outcomes[breakglass.id] == "excluded"
    # undo after a resume still restores exactly the accounts enabled before the first run
    undone = ops.cli("contain", "--undo", "--journal", str(journal), "--yes")
    assert undone.returncode == 0, undone.stderr
    assert {u.id for u in users if u.account_enabled} == enabled_before


def test_undo_refuses_a_revoke_journal(sandbox: Running, tmp_path: Path):
    ops = contain_ops(sandbox, tmp_path, "contain-undo-refuse")
    journal = tmp_path / "r.jsonl"
    assert ops.cli("revoke", "--user", ops.user("operator").id, "--yes", "--journal", str(journal)).returncode == 0
    result = ops.cli("contain", "--undo", "--journal", str(journal), "--yes")
    assert result.returncode == 2 and "not the journal of a `revoke-ops contain` run" in result.stderr


def test_a_throttled_disable_honours_the_retry_after_cap_and_still_contains_everyone(sandbox: Running, tmp_path: Path):
    """The PATCH of accountEnabled waits like every write: Retry-After capped at --max-retry-wait.

    Was: the disable step read Retry-After as digits only and waited up to 60 s per retry whatever
    the operator's cap (an HTTP-date was read as a 2**attempt backoff).
    """
    ops = contain_ops(sandbox, tmp_path, "contain-throttled")
    group_id, users = incident_group(sandbox, "incident-throttled", 20)
    for user in users:
        sandbox.sandbox.call(setattr, user, "account_enabled", True)
    journal = tmp_path / "throttled.jsonl"
    # Aimed at the PATCHes: throttling the before-state reads as well would (rightly) leave some
    # accounts' state unknown, and undo would then leave them disabled.
    # At most 15 injections: an unlimited 50 % could throttle one user on all ten attempts (~2 % a run).
    sandbox.settings(faults={"item_429": 0.5, "retry_after": 3600, "only": "PATCH users/", "limit": 15})
    try:
        result = ops.cli(
            "contain", "--group", group_id, "--exclude", f"breakglass1@{DOMAIN}", "--yes", "-v",
            "--max-retry-wait", "0.2", "--journal", str(journal), "--output", "json",
        )  # fmt: skip
    finally:
        sandbox.settings(faults={"item_429": 0.0, "retry_after": 1, "only": "", "limit": 0})
    assert result.returncode == 0, result.stderr
    assert "accountEnabled: Graph asked to wait 3600 s; waiting 0 s (--max-retry-wait)" in result.stderr
    body = json.loads(result.stdout)
    assert body["contain"]["steps"] == {"disabled": len(users)}
    assert all(not u.account_enabled for u in users)
    undone = ops.cli("contain", "--undo", "--journal", str(journal), "--yes", "--output", "json")
    assert undone.returncode == 0, undone.stderr
    assert all(u.account_enabled for u in users)


def test_a_refused_token_while_disabling_is_renewed_not_resent(
    sandbox: Running, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    """Graph answers 401 to the disable batches while the token is the one it refused (continuous
    access evaluation revoked it, say): contain renews the token and carries on. Was: the same
    cached token resent ten times, minutes of backoff, then every account in the batch failed."""
    from sandbox.graph.base import Request, Response
    from tests.revoke_ops.test_engine_faults import Handler, count_tokens, wrap_graph

    ops = contain_ops(sandbox, tmp_path, "contain-401")
    group_id, users = incident_group(sandbox, "incident-401", 10)
    for user in users:
        sandbox.sandbox.call(setattr, user, "account_enabled", True)
    refused_token: list[str] = []
    answered = [0]

    def wrap(original: Handler, request: Request, auth: str | None) -> Response:
        patch = request.path == "/$batch" and not request.in_batch and '"PATCH"' in json.dumps(request.body)
        if patch and auth is not None and (not refused_token or auth == refused_token[0]):
            refused_token[:1] = [auth]
            answered[0] += 1
            error = {
                "code": "InvalidAuthenticationToken",
                "message": "Continuous access evaluation resulted in claims challenge",
            }
            return Response(401, {"error": error}, {"WWW-Authenticate": 'Bearer error="insufficient_claims"'})
        return original(request, auth)

    wrap_graph(ops, monkeypatch, wrap)
    tokens = count_tokens(ops, monkeypatch)
    result = ops.cli(
        "contain", "--group", group_id, "--exclude", f"breakglass1@{DOMAIN}", "--yes", "--max-retry-wait", "1",
        "--journal", str(tmp_path / "j.jsonl"), "--output", "json",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["contain"]["steps"] == {"disabled": len(users)}
    assert all(not u.account_enabled for u in users)
    assert answered[0] == 1, "the refused token was never sent again"
    assert tokens() >= 2, "a new token came from the identity platform"
