"""The engine under faults the sandbox's knobs do not reach, through the real ``revoke-ops`` command.

The sandbox runs in this process (its own thread), so a test wraps its Graph pipeline or its token
endpoint for a while: a 200 page without ``value`` (issue 10 #1), Retry-After far beyond the cap
(#7), a token endpoint outage or a Graph 401 mid-run (#8). Every test bounds its run (the CLI
helper's timeout) and restores the sandbox.
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from sandbox.graph.base import Request, Response
from sandbox.identity import TokenError
from tests.revoke_ops.conftest import Ops
from tests.revoke_ops.test_engine import internal

Handler = Callable[[Request, str | None], Response]


Wrapper = Callable[[Handler, Request, str | None], Response]


def wrap_graph(ops: Ops, monkeypatch: pytest.MonkeyPatch, wrap: Wrapper) -> None:
    graph = ops.run.sandbox.graph
    original: Handler = graph.handle
    monkeypatch.setattr(graph, "handle", lambda request, auth: wrap(original, request, auth))


def journal_lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def ids_file(tmp_path: Path, users: list[Any]) -> Path:
    path = tmp_path / "targets.txt"
    path.write_text("".join(f"{u.id}\n" for u in users))
    return path


def revoked_since(ops: Ops, before: int, users: list[Any]) -> list[str]:
    wanted = {u.id for u in users}
    return [r["userId"] for r in ops.run.revocations()[before:] if r["userId"] in wanted]


# -- issue 10 #1: a 200 without `value` is an unreadable answer, never "no more users" -----------


NO_VALUE = {"@odata.context": "https://graph.microsoft.com/v1.0/$metadata#users"}


def _pages_without_value(times: int | None) -> Wrapper:
    left = [times]

    def wrap(original: Handler, request: Request, auth: str | None) -> Response:
        response = original(request, auth)
        listing = request.method == "GET" and request.path.rstrip("/").split("/")[-1] in ("transitiveMembers", "users")
        if listing and response.status == 200 and left[0] != 0:
            left[0] = None if left[0] is None else left[0] - 1
            return Response(200, dict(NO_VALUE), response.headers)
        return response

    return wrap


def test_a_group_listing_answered_without_value_fails_loudly_and_revokes_nobody(
    ops: Ops, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    group = ops.run.sandbox.tenant.group_named("compromised-sales")
    before = len(ops.run.revocations())
    wrap_graph(ops, monkeypatch, _pages_without_value(None))
    result = ops.cli("revoke", "--group", group.id, "--yes", "--journal", str(tmp_path / "j.jsonl"))
    assert result.returncode == 4, result.stdout + result.stderr  # was: exit 0, every outcome 0
    assert "no 'value' list" in result.stderr and "failed 6 times" in result.stderr, result.stderr
    assert len(ops.run.revocations()) == before


def test_a_page_without_value_once_is_retried_and_the_group_run_completes(
    ops: Ops, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    tenant = ops.run.sandbox.tenant
    group = tenant.group_named("compromised-sales")
    members = {m for m in tenant.transitive_members(group.id) if m in tenant.users_by_id}
    wrap_graph(ops, monkeypatch, _pages_without_value(2))
    result = ops.cli("revoke", "--group", group.id, "--yes", "--output", "json", "--journal", str(tmp_path / "j.jsonl"))
    assert result.returncode == 0, result.stdout + result.stderr
    outcomes = json.loads(result.stdout)["summary"]["outcomes"]
    assert sum(outcomes.values()) == len(members) and outcomes["failed"] == 0, outcomes


def test_an_exclusion_lookup_answered_without_value_is_not_does_not_exist(
    ops: Ops, monkeypatch: pytest.MonkeyPatch
) -> None:
    user = internal(ops, 120, 1)[0]
    before = len(ops.run.revocations())
    wrap_graph(ops, monkeypatch, _pages_without_value(None))
    result = ops.cli("revoke", "--user", user.id, "--exclude", "breakglass1@contoso-sandbox.onmicrosoft.com")
    # Was: exit 2 "1 exclusion(s) do not exist in the tenant" — a garbage 200 read as an answer.
    assert result.returncode == 4, result.stderr
    assert "do not exist" not in result.stderr and "no 'value' list" in result.stderr
    assert len(ops.run.revocations()) == before


def test_a_target_lookup_answered_without_value_is_not_not_found(
    ops: Ops, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    users = internal(ops, 440, 3)
    targets = tmp_path / "upns.txt"
    targets.write_text("".join(f"{u.user_principal_name}\n" for u in users))
    journal = tmp_path / "j.jsonl"
    before = len(ops.run.revocations())
    wrap_graph(ops, monkeypatch, _pages_without_value(None))
    result = ops.cli("revoke", "--from-file", str(targets), "--yes", "--output", "json", "--journal", str(journal))
    # A garbage 200 to the lookup is an unreadable answer: the run fails, no user is called not_found.
    assert result.returncode == 4, result.stdout + result.stderr
    assert "no 'value' list" in result.stderr, result.stderr
    assert "not_found" not in result.stdout and "no such user" not in result.stdout + result.stderr
    outcomes = [r for r in journal_lines(journal) if r["type"] == "outcome"] if journal.exists() else []
    assert not [r for r in outcomes if r["outcome"] == "not_found"], outcomes
    assert len(ops.run.revocations()) == before


def test_a_whole_tenant_listing_answered_without_value_fails_and_revokes_nobody(
    ops: Ops, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    before = len(ops.run.revocations())
    wrap_graph(ops, monkeypatch, _pages_without_value(None))
    result = ops.cli("revoke", "--all-users", "--yes", "--journal", str(tmp_path / "j.jsonl"))
    # Was: exit 0 with a handful of users revoked, the rest of the tenant silently left out.
    assert result.returncode == 4, result.stdout + result.stderr
    assert "no 'value' list" in result.stderr, result.stderr
    assert len(ops.run.revocations()) == before


def _listing_cut_short(keep: int) -> Wrapper:
    """The first page of a whole-tenant or group listing holds only ``keep`` users and no @odata.nextLink."""

    def wrap(original: Handler, request: Request, auth: str | None) -> Response:
        response = original(request, auth)
        path = request.path.rstrip("/")
        tenant = path == "/users" and "$filter" not in request.query
        listing = request.method == "GET" and (tenant or path.endswith("/transitiveMembers"))
        if listing and response.status == 200 and isinstance(response.body, dict):
            body = {k: v for k, v in response.body.items() if k != "@odata.nextLink"}
            body["value"] = list(response.body.get("value", []))[:keep]
            return Response(200, body, response.headers)
        return response

    return wrap


def test_a_whole_tenant_listing_far_below_graphs_count_is_reported_not_success(
    ops: Ops, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    tenant_users = len(ops.run.sandbox.tenant.users)
    journal = tmp_path / "j.jsonl"
    wrap_graph(ops, monkeypatch, _listing_cut_short(10))
    result = ops.cli("revoke", "--all-users", "--yes", "--output", "json", "--journal", str(journal))
    # Was: exit 0 with 10 of the tenant's users revoked and nothing said.
    assert result.returncode == 1, result.stdout + result.stderr
    shown = re.search(
        r"the listing ended after (\d+) user\(s\) where Microsoft Graph counted about (\d+)", result.stderr
    )
    assert shown, result.stderr
    seen, counted = int(shown[1]), int(shown[2])
    assert seen < 30 < counted <= tenant_users  # the listed 10, and the privileged users sent first
    assert sum(json.loads(result.stdout)["summary"]["outcomes"].values()) == seen


def test_a_group_listing_far_below_graphs_count_is_reported_not_success(
    ops: Ops, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    group = ops.run.sandbox.tenant.group_named("compromised-sales")
    journal = tmp_path / "j.jsonl"
    wrap_graph(ops, monkeypatch, _listing_cut_short(5))
    result = ops.cli("revoke", "--group", group.id, "--yes", "--journal", str(journal))
    # Was: exit 0, a handful of the group's members revoked and nothing said.
    assert result.returncode == 1, result.stdout + result.stderr
    # Said once (it was printed twice), with the journal to resume (it said "--resume JOURNAL").
    assert result.stderr.count("where Microsoft Graph counted about") == 1, result.stderr
    assert f"run `revoke-ops revoke --resume {journal}`, and compare" in result.stderr, result.stderr


# -- issue 10 #7: Retry-After is capped, logged at -v, and counts as a failed attempt ------------


def test_retry_after_of_an_hour_is_capped_logged_and_the_run_completes(ops: Ops, tmp_path: Path) -> None:
    users = internal(ops, 130, 30)
    before = len(ops.run.revocations())
    journal = tmp_path / "j.jsonl"
    ops.run.settings(faults={"item_429": 0.3, "retry_after": 3600})
    try:
        result = ops.cli(
            "revoke",
            "--from-file",
            str(ids_file(tmp_path, users)),
            "--yes",
            "-v",
            "--max-retry-wait",
            "0.5",
            "--journal",
            str(journal),
        )
    finally:
        ops.run.settings(faults={"item_429": 0.0, "retry_after": 1})
    # Was: a pause of an hour (this test's subprocess would time out).
    assert result.returncode == 0, result.stderr
    assert sorted(revoked_since(ops, before, users)) == sorted(u.id for u in users)
    assert "Graph asked to wait 3600 s; waiting 0 s (--max-retry-wait)" in result.stderr, result.stderr
    pauses = [r for r in journal_lines(journal) if r["type"] == "pause"]
    assert pauses and all(p["reason"] == "retry-after-capped" and p["asked"] == 3600 for p in pauses)


def test_max_retry_wait_and_write_rate_are_validated_before_any_token(
    ops: Ops, monkeypatch: pytest.MonkeyPatch
) -> None:
    tokens = count_tokens(ops, monkeypatch)
    for option, value in (("--write-rate", "0"), ("--max-retry-wait", "-1"), ("--concurrency", "0")):
        result = ops.cli("revoke", "--user", internal(ops, 0, 1)[0].id, option, value, "--yes")
        assert result.returncode == 2, result.stderr
        assert f"{option} must be" in result.stderr and "Traceback" not in result.stderr
    assert tokens() == 0, "refused before a token was fetched"


# -- issue 10 #8: token endpoint outage mid-run; Graph 401 mid-run --------------------------------


def count_tokens(ops: Ops, monkeypatch: pytest.MonkeyPatch) -> Callable[[], int]:
    identity = ops.run.sandbox.identity
    original = identity.token
    seen = [0]

    def token(form: dict[str, str], url: str) -> dict[str, Any]:
        if form.get("client_id") == ops.creds.client_id:
            seen[0] += 1
        return original(form, url)

    monkeypatch.setattr(identity, "token", token)
    return lambda: seen[0]


TRANSIENT = "A transient error has occurred. Please try again."


def token_outage(ops: Ops, monkeypatch: pytest.MonkeyPatch, seconds: float | None) -> dict[str, int]:
    """Tokens of this app live 2 s; once revocations began, the token endpoint fails for ``seconds`` (None: always).

    The outage outlasts a token, so the tool must get a new one during it (azure-identity hides a
    failed refresh while the cached token is still valid). 502 (a gateway in front of the identity
    platform) with AADSTS90033: azure-core does not retry a POST on 502 itself.
    """
    identity = ops.run.sandbox.identity
    original = identity.token
    state = {"failed": 0, "issued": 0}
    began: list[float] = []
    lock = threading.Lock()
    start = len(ops.run.sandbox.tenant.revocations)

    def token(form: dict[str, str], url: str) -> dict[str, Any]:
        if form.get("client_id") != ops.creds.client_id:
            return original(form, url)
        with lock:
            if not began and len(ops.run.sandbox.tenant.revocations) > start:
                began.append(time.monotonic())
            if began and (seconds is None or time.monotonic() - began[0] < seconds):
                state["failed"] += 1
                raise TokenError("temporarily_unavailable", 90033, TRANSIENT, 502)
            state["issued"] += 1
        body = original(form, url)
        body["expires_in"] = body["ext_expires_in"] = 2
        return body

    monkeypatch.setattr(identity, "token", token)
    return state


def test_a_token_outage_mid_run_pauses_journals_and_completes(
    ops: Ops, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    users = internal(ops, 160, 200)
    before = len(ops.run.revocations())
    journal = tmp_path / "j.jsonl"
    state = token_outage(ops, monkeypatch, seconds=8)  # azure-identity itself retries for ~5 s first
    result = ops.cli(
        "revoke",
        "--from-file",
        str(ids_file(tmp_path, users)),
        "--yes",
        "--write-rate",
        "40",
        "--write-burst",
        "20",
        "--output",
        "json",
        "--journal",
        str(journal),
    )
    # Was: "unexpected ClientAuthenticationError", exit 1, no summary, most users without an outcome.
    assert result.returncode == 0, result.stderr
    assert state["failed"] >= 1, state
    assert sorted(revoked_since(ops, before, users)) == sorted(u.id for u in users), "each user revoked once"
    pauses = [r for r in journal_lines(journal) if r["type"] == "pause"]
    assert pauses and pauses[0]["reason"] == "token-unavailable" and pauses[0]["code"] == "AADSTS90033"
    summary = json.loads(result.stdout)["summary"]
    assert summary["outcomes"]["revoked"] == len(users) and summary["tokenPauses"] >= 1


def test_a_token_outage_that_persists_ends_with_the_summary_and_a_resume_that_completes(
    ops: Ops, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    users = internal(ops, 160, 200)
    before = len(ops.run.revocations())
    journal = tmp_path / "j.jsonl"
    targets = ids_file(tmp_path, users)
    token_outage(ops, monkeypatch, seconds=None)
    common = ("--yes", "--write-rate", "40", "--write-burst", "20", "--max-attempts", "3", "--output", "json")
    result = ops.cli("revoke", "--from-file", str(targets), *common, "--journal", str(journal))
    assert result.returncode == 1, result.stderr
    assert "the identity platform kept failing" in result.stderr
    assert f"revoke-ops revoke --resume {journal}" in result.stderr, result.stderr
    summary = json.loads(result.stdout)["summary"]
    sent = revoked_since(ops, before, users)
    assert 0 < summary["outcomes"]["revoked"] == len(sent) < len(users)
    assert summary["outcomes"]["failed"] == 0, "users never sent are not called failed: a resume sends them"
    end = journal_lines(journal)[-1]
    assert end["type"] == "end" and end["completed"] is False and "identity platform" in end["stoppedBy"]

    monkeypatch.undo()  # the outage is over
    resumed = ops.cli("revoke", "--resume", str(journal), "--yes")
    assert resumed.returncode == 0, resumed.stderr
    assert sorted(revoked_since(ops, before, users)) == sorted(u.id for u in users), "each user revoked once"


def test_a_graph_401_mid_run_stops_sending_renews_the_token_and_fails_nobody(
    ops: Ops, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    users = internal(ops, 380, 120)
    before = len(ops.run.revocations())
    start = len(ops.run.sandbox.tenant.revocations)
    refused = [0]
    lock = threading.Lock()

    def wrap(original: Handler, request: Request, auth: str | None) -> Response:
        batch = request.method == "POST" and request.path == "/$batch" and not request.in_batch
        with lock:
            refuse = batch and len(ops.run.sandbox.tenant.revocations) - start >= 20 and refused[0] < 2
            refused[0] += refuse
        if refuse:
            error = {"code": "InvalidAuthenticationToken", "message": "Lifetime validation failed."}
            return Response(401, {"error": error}, {"WWW-Authenticate": 'Bearer error="invalid_token"'})
        return original(request, auth)

    wrap_graph(ops, monkeypatch, wrap)
    tokens = count_tokens(ops, monkeypatch)
    journal = tmp_path / "j.jsonl"
    targets = ids_file(tmp_path, users)
    result = ops.cli("revoke", "--from-file", str(targets), "--yes", "--write-rate", "200", "--journal", str(journal))
    # Was: every user of each refused batch failed (exit 1).
    assert result.returncode == 0, result.stderr
    assert refused[0] == 2
    assert tokens() >= 2, "a new token was fetched from the identity platform after the 401, not the cached one"
    assert sorted(revoked_since(ops, before, users)) == sorted(u.id for u in users)
    assert any(r["type"] == "pause" and r["reason"] == "token-refused" for r in journal_lines(journal))


# -- the journal's attempt lines carry the client-request-id each $batch was sent with ---------


def test_attempt_lines_carry_the_client_request_id_graph_saw(ops: Ops, tmp_path: Path) -> None:
    users = internal(ops, 60, 45)
    journal = tmp_path / "j.jsonl"
    result = ops.cli("revoke", "--from-file", str(ids_file(tmp_path, users)), "--yes", "--journal", str(journal))
    assert result.returncode == 0, result.stderr
    lines = journal_lines(journal)
    sent = {u["id"]: a["clientRequestId"] for a in lines if a["type"] == "attempt" for u in a["users"]}
    assert all(sent.values()), "was: clientRequestId null on every attempt line"
    seen = {r["userId"]: r["clientRequestId"] for r in ops.run.revocations() if r["userId"] in sent}
    assert seen == sent
    outcomes = {r["id"]: r["clientRequestId"] for r in lines if r["type"] == "outcome"}
    assert outcomes == sent
