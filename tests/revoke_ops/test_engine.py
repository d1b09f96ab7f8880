"""The engine's pacing and retries against the sandbox's faults, with an injected clock (no real waiting)."""

from __future__ import annotations

import asyncio
import json
import random
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from revoke_ops.bundle import load_bundle
from revoke_ops.credentials import certificate_identity
from revoke_ops.engine import Engine, EngineOptions
from revoke_ops.run import RevokeRequest, revoke
from tests.revoke_ops.conftest import DOMAIN, Ops
from tests.unit.clock import FakeClock


def internal(ops: Ops, start: int, count: int) -> list[Any]:
    """``count`` ordinary member users from position ``start`` (no guests, no B2B members)."""
    users = [
        u
        for u in ops.run.sandbox.tenant.users[start:]
        if u.user_type == "Member" and "#EXT#" not in u.user_principal_name
    ]
    return users[:count]


def run_api(ops: Ops, request: RevokeRequest, clock: FakeClock | None = None) -> Any:
    def factory(*args: Any, **kwargs: Any) -> Engine:
        return Engine(*args, clock=clock, rng=random.Random(1), **kwargs)

    async def go() -> Any:
        identity = certificate_identity(bundle=load_bundle(ops.bundle))
        try:
            return await revoke(identity, request, engine_factory=factory if clock else None)
        finally:
            await identity.close()

    # Bounded: a hang (a worker waiting on a queue nobody fills) fails the test instead of the suite.
    return asyncio.run(asyncio.wait_for(go(), timeout=180))


@pytest.fixture
def trusted(ops: Ops, monkeypatch: pytest.MonkeyPatch) -> Ops:
    monkeypatch.setenv("SSL_CERT_FILE", ops.run.ca)
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", ops.run.ca)
    return ops


def test_item_level_429_is_retried_per_item_after_retry_after(trusted: Ops, tmp_path: Path):
    ops = trusted
    users = internal(ops, 300, 40)
    ops.run.settings(faults={"item_429": 0.3, "retry_after": 7})
    clock = FakeClock()
    before = len(ops.run.revocations())
    try:
        result = run_api(ops, RevokeRequest(users=[u.id for u in users], journal=tmp_path / "j.jsonl"), clock)
    finally:
        ops.run.settings(faults={"item_429": 0.0})
    assert result.summary.counts["revoked"] == 40
    assert result.summary.throttled > 0
    assert any(s >= 7 for s in clock.sleeps), "Retry-After must be honoured"
    revoked = [r["userId"] for r in ops.run.revocations()[before:]]
    assert sorted(revoked) == sorted(u.id for u in users), "throttled items are retried, not whole batches"


def test_a_whole_batch_answered_429_pauses_everyone_and_resends_it(trusted: Ops, tmp_path: Path):
    ops = trusted
    users = internal(ops, 320, 45)

    class RecoveringClock(FakeClock):
        """Graph throttles every batch until the engine has waited out a Retry-After."""

        async def sleep(self, seconds: float) -> None:
            if seconds >= 9:
                ops.run.settings(faults={"batch_429": 0.0})
            await super().sleep(seconds)

    clock = RecoveringClock()
    ops.run.settings(faults={"batch_429": 1.0, "retry_after": 9})
    before = len(ops.run.revocations())
    try:
        result = run_api(ops, RevokeRequest(users=[u.id for u in users], journal=tmp_path / "j.jsonl"), clock)
    finally:
        ops.run.settings(faults={"batch_429": 0.0, "retry_after": 1})
    assert result.summary.counts["revoked"] == 45 and result.exit_code == 0
    assert result.summary.throttled >= 1
    assert max(clock.sleeps) >= 9, "Retry-After must be honoured"
    revoked = [r["userId"] for r in ops.run.revocations()[before:]]
    assert sorted(revoked) == sorted(u.id for u in users), "each user revoked once: nothing in a throttled batch ran"


def test_5xx_and_connection_resets_end_revoked(trusted: Ops, tmp_path: Path):
    ops = trusted
    users = internal(ops, 340, 60)
    ops.run.settings(faults={"error_5xx": 0.2, "reset": 0.1})
    clock = FakeClock()
    try:
        result = run_api(ops, RevokeRequest(users=[u.id for u in users], journal=tmp_path / "j.jsonl"), clock)
    finally:
        ops.run.settings(faults={"error_5xx": 0.0, "reset": 0.0})
    assert result.summary.counts["revoked"] == 60, [(r["code"], r["reason"]) for r in result.summary.not_revoked]
    assert result.exit_code == 0
    assert clock.sleeps, "backoff happened"


def test_unreadable_answer_is_failed_and_settled_by_verify(trusted: Ops, tmp_path: Path):
    from tests.revoke_ops.conftest import write_bundle

    ops = trusted
    users = internal(ops, 400, 5)
    # An app without read permissions sends the revocations as given (no reads to break).
    creds = ops.run.app("unreadable-revoker", app_roles=("User.RevokeSessions.All",))
    revoker = Ops(
        ops.run, creds, write_bundle(ops.run, creds, tmp_path / "r.json", app_roles=("User.RevokeSessions.All",))
    )
    ops.run.settings(faults={"malformed": 1.0})
    journal = tmp_path / "j.jsonl"
    try:
        result = run_api(revoker, RevokeRequest(users=[u.id for u in users], journal=journal), FakeClock())
    finally:
        ops.run.settings(faults={"malformed": 0.0})
    assert result.summary.counts["failed"] == 5
    assert result.exit_code == 1
    assert all(
        r["code"] == "UnreadableResponse" and "may have happened" in r["reason"] for r in result.summary.not_revoked
    )
    verify = ops.cli("verify", "--journal", str(journal), "--output", "json")
    assert verify.returncode == 0, verify.stdout + verify.stderr
    assert json.loads(verify.stdout)["settled"] == 5


class CrashError(Exception):
    pass


def test_resume_after_a_crash_misses_nobody(trusted: Ops, tmp_path: Path):
    ops = trusted
    users = internal(ops, 500, 100)
    targets = tmp_path / "t.txt"
    targets.write_text("\n".join(u.id for u in users) + "\n")
    journal = tmp_path / "crash.jsonl"
    before = len(ops.run.revocations())

    class CrashingEngine(Engine):
        batches = 0

        async def _send(self, batch: list[Any]) -> None:
            CrashingEngine.batches += 1
            if CrashingEngine.batches == 3:
                # the attempt is journaled, then the process dies before the answer is recorded
                self.journal.attempt(999, [{"id": i.id, "upn": i.upn or "", "target": i.target} for i in batch])
                raise CrashError
            await super()._send(batch)

    async def crash() -> None:
        identity = certificate_identity(bundle=load_bundle(ops.bundle))
        try:
            await revoke(
                identity,
                RevokeRequest(files=[str(targets)], journal=journal, engine=EngineOptions(concurrency=1)),
                engine_factory=CrashingEngine,
            )
        finally:
            await identity.close()

    with pytest.raises(CrashError):
        asyncio.run(crash())
    first = len(ops.run.revocations()) - before
    assert 0 < first < 100
    result = ops.cli("revoke", "--resume", str(journal), "--yes")
    assert result.returncode == 0, result.stderr
    revoked = [r["userId"] for r in ops.run.revocations()[before:]]
    assert set(revoked) == {u.id for u in users}, "no user missed"
    twice = len(revoked) - len(set(revoked))
    assert twice <= 20, "only what was in flight may be revoked twice"


def test_delegated_operator_goes_last_and_roles_bound_what_they_may_revoke(sandbox, tmp_path: Path):
    from tests.revoke_ops.conftest import write_bundle

    creds = sandbox.app("delegated-cli", scopes=("User.RevokeSessions.All", "User.Read.All"), public_client=True)
    bundle = write_bundle(
        sandbox, creds, tmp_path / "b.json", app_roles=(), delegated=("User.RevokeSessions.All", "User.Read.All")
    )
    ops = Ops(sandbox, creds, bundle)
    ordinary = next(
        u
        for u in sandbox.sandbox.tenant.users[560:]
        if u.user_type == "Member" and "#EXT#" not in u.user_principal_name
    )
    sandbox.settings(autoApproveUser=f"admin.helpdesk@{DOMAIN}")
    before = len(sandbox.revocations())
    try:
        result = ops.cli(
            "revoke",
            "--delegated",
            "--user",
            f"admin.helpdesk@{DOMAIN}",
            "--user",
            ordinary.id,
            "--user",
            f"admin.global@{DOMAIN}",
            "--output",
            "json",
        )
    finally:
        sandbox.settings(autoApproveUser=None)
    assert result.returncode == 1, result.stderr  # the Global Administrator is beyond a Helpdesk Administrator
    assert "device-code phishing" in result.stderr
    body = json.loads(result.stdout)
    assert body["summary"]["outcomes"]["forbidden"] == 1
    forbidden = body["notRevoked"][0]
    assert forbidden["outcome"] == "forbidden" and forbidden["code"] == "Authorization_RequestDenied"
    assert "Privileged Authentication Administrator privileged admins" in forbidden["reason"]
    revoked = [r["userId"] for r in sandbox.revocations()[before:]]
    assert revoked == [ordinary.id, sandbox.user("admin.helpdesk").id], "the signed-in operator goes last"
    assert sandbox.revocations()[-1]["byUser"] == sandbox.user("admin.helpdesk").id


def test_me_revokes_the_signed_in_operator(sandbox, tmp_path: Path):
    from tests.revoke_ops.conftest import write_bundle

    creds = sandbox.app("me-cli", scopes=("User.RevokeSessions.All",), public_client=True)
    ops = Ops(
        sandbox,
        creds,
        write_bundle(sandbox, creds, tmp_path / "b.json", app_roles=(), delegated=("User.RevokeSessions.All",)),
    )
    sandbox.settings(autoApproveUser=f"operator@{DOMAIN}")
    try:
        result = ops.cli("me", "--delegated")
    finally:
        sandbox.settings(autoApproveUser=None)
    assert result.returncode == 0, result.stderr
    assert sandbox.revocations()[-1]["userId"] == sandbox.user("operator").id


def test_me_with_an_interactive_browser_sign_in(sandbox, tmp_path: Path):
    import sys

    from tests.revoke_ops.conftest import write_bundle
    from tests.sandbox.test_identity import BROWSER_SCRIPT

    creds = sandbox.app("me-browser", scopes=("User.RevokeSessions.All",), public_client=True)
    ops = Ops(
        sandbox,
        creds,
        write_bundle(sandbox, creds, tmp_path / "b.json", app_roles=(), delegated=("User.RevokeSessions.All",)),
    )
    script = tmp_path / "browser.py"
    script.write_text(BROWSER_SCRIPT)
    before = len(sandbox.revocations())
    sandbox.settings(autoApproveUser=f"operator@{DOMAIN}")
    try:
        result = ops.cli("me", "--delegated", "browser", env={"BROWSER": f"{sys.executable} {script} {sandbox.ca} %s"})
    finally:
        sandbox.settings(autoApproveUser=None)
    assert result.returncode == 0, result.stderr
    assert [r["userId"] for r in sandbox.revocations()[before:]] == [sandbox.user("operator").id]
    assert sandbox.revocations()[-1]["byUser"] == sandbox.user("operator").id


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_property_no_excluded_user_is_ever_revoked(trusted: Ops, data: st.DataObject):
    ops = trusted
    pool = ops.run.sandbox.tenant.users[440:500]
    chosen = data.draw(st.lists(st.sampled_from(pool), min_size=1, max_size=25, unique_by=lambda u: u.id))
    excluded = data.draw(st.lists(st.sampled_from(chosen + pool[:5]), max_size=8, unique_by=lambda u: u.id))
    as_upn = data.draw(
        st.lists(st.booleans(), min_size=len(chosen) + len(excluded), max_size=len(chosen) + len(excluded))
    )
    form = iter(as_upn)

    def name(u: Any) -> str:
        return u.user_principal_name.upper() if next(form) else u.id

    users = [name(u) for u in chosen]
    exclude = [name(u) for u in excluded]
    before = len(ops.run.revocations())
    result = run_api(
        ops, RevokeRequest(users=users, exclude=exclude, journal=None, engine=EngineOptions(concurrency=2)), FakeClock()
    )
    revoked = {r["userId"] for r in ops.run.revocations()[before:]}
    assert not revoked & {u.id for u in excluded}
    expected = {u.id for u in chosen} - {u.id for u in excluded}
    expected -= {u.id for u in chosen if u.user_type == "Guest" or "#EXT#" in u.user_principal_name}
    assert revoked == expected
    assert result.summary.counts["excluded"] == len({u.id for u in chosen} & {u.id for u in excluded})


@pytest.mark.parametrize("kind", ["html", "huge", "proxy"])
def test_unreadable_batch_answers_are_failed_may_have_happened(trusted: Ops, tmp_path: Path, kind: str):
    from tests.revoke_ops.conftest import write_bundle

    ops = trusted
    users = internal(ops, 410, 3)
    creds = ops.run.app(f"unreadable-{kind}", app_roles=("User.RevokeSessions.All",))
    revoker = Ops(
        ops.run, creds, write_bundle(ops.run, creds, tmp_path / "r.json", app_roles=("User.RevokeSessions.All",))
    )
    ops.run.settings(faults={"malformed": 1.0, "malformed_kind": kind})
    try:
        result = revoker.cli(
            "revoke",
            *[a for u in users for a in ("--user", u.id)],
            "--output",
            "json",
            "--journal",
            str(tmp_path / "j.jsonl"),
        )
    finally:
        ops.run.settings(faults={"malformed": 0.0, "malformed_kind": "truncated"})
    assert result.returncode == 1, result.stderr
    body = json.loads(result.stdout)
    assert body["summary"]["outcomes"]["failed"] == 3
    assert all("may have happened" in r["reason"] for r in body["notRevoked"])
    verify = ops.cli("verify", "--journal", str(tmp_path / "j.jsonl"), "--output", "json")
    assert verify.returncode == 0 and json.loads(verify.stdout)["settled"] == 3


@pytest.mark.parametrize(
    ("kind", "message"),
    [
        ("html", "HTTP 200 with an unreadable body"),
        ("proxy", "HTTP 407 with an unreadable body"),
    ],
)
def test_unreadable_answers_to_reads_are_a_clear_error_and_nothing_is_sent(
    trusted: Ops, tmp_path: Path, kind: str, message: str
):
    ops = trusted
    users = internal(ops, 420, 3)
    before = len(ops.run.revocations())
    ops.run.settings(faults={"malformed": 1.0, "malformed_kind": kind})
    try:
        result = ops.cli("revoke", *[a for u in users for a in ("--user", u.id)])
    finally:
        ops.run.settings(faults={"malformed": 0.0, "malformed_kind": "truncated"})
    assert result.returncode == 4, "a read Graph keeps answering unreadably is a service failure (exit 4)"
    assert "from Microsoft Graph failed" in result.stderr and message in result.stderr, result.stderr
    assert "Traceback" not in result.stderr
    assert len(ops.run.revocations()) == before
