"""Reliability at reduced size (the full sizes run with the benchmarks): faults and kill -9 + resume."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from revoke_ops import EngineOptions, RevokeRequest, certificate_identity, load_bundle, revoke
from sandbox.server import Sandbox, SandboxOptions
from tests.leaks import assert_no_secrets
from tests.revoke_ops.conftest import FULL, write_bundle
from tests.sandbox.conftest import Running

pytestmark = pytest.mark.slow
# CI runs 1,000 users; the full size runs with the benchmarks: RELIABILITY_USERS=10000.
USERS = int(os.environ.get("RELIABILITY_USERS", "1000"))


@pytest.fixture(scope="module")
def tenant(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Running]:
    state = tmp_path_factory.mktemp("reliability")
    # Room for the guests and admins the seeding adds, so USERS ordinary members exist.
    with Sandbox(state, SandboxOptions(users=USERS + USERS // 20 + 200, groups=3, group_size=50, seed=11)) as sb:
        os.environ["SSL_CERT_FILE"] = os.environ["REQUESTS_CA_BUNDLE"] = sb.info["caBundle"]
        yield Running(sb)


def internal_ids(run: Running, count: int) -> list[str]:
    users = [u for u in run.sandbox.tenant.users if u.user_type == "Member" and "#EXT#" not in u.user_principal_name]
    return [u.id for u in users[-count:]]


def test_faults_every_user_ends_revoked_and_the_journal_matches_the_tenant(
    tenant: Running, tmp_path: Path, caplog: pytest.LogCaptureFixture
):
    creds = tenant.app("reliability-faults", app_roles=FULL)
    bundle = write_bundle(tenant, creds, tmp_path / "b.json")
    ids = internal_ids(tenant, USERS)
    targets = tmp_path / "t.txt"
    targets.write_text("\n".join(ids) + "\n")
    timeout = 0.5
    tenant.settings(
        faults={
            "error_5xx": 0.05,
            "item_429": 0.02,
            "retry_after": 1,
            "reset": 0.01,
            "stall": 0.01,
            "stall_seconds": 2 * timeout,
        }
    )
    journal = tmp_path / "j.jsonl"
    before = len(tenant.revocations())

    async def go() -> Any:
        identity = certificate_identity(bundle=load_bundle(bundle))
        try:
            return await revoke(
                identity,
                RevokeRequest(
                    files=[str(targets)],
                    journal=journal,
                    timeout=timeout,
                    engine=EngineOptions(backoff_base=0.05, backoff_max=0.5, concurrency=4),
                ),
            )
        finally:
            await identity.close()

    caplog.set_level(logging.DEBUG)
    try:
        result = asyncio.run(go())
    finally:
        tenant.settings(faults={"error_5xx": 0.0, "item_429": 0.0, "reset": 0.0, "stall": 0.0, "stall_seconds": 0.0})
    assert len(ids) == USERS
    assert result.summary.counts["revoked"] == USERS, result.summary.not_revoked[:5]
    journal_revoked = {
        json.loads(line)["id"]
        for line in journal.read_text().splitlines()
        if json.loads(line).get("outcome") == "revoked"
    }
    server = {r["userId"] for r in tenant.revocations()[before:]}
    assert journal_revoked == server == set(ids)
    # What the run wrote under faults (DEBUG logs, retry reasons, the journal) holds no secret.
    assert_no_secrets(caplog.text + journal.read_text(), creds.pem)
    print(
        f"faults run: {USERS} users, {result.summary.requests} batches, {result.summary.throttled} throttled items, "
        f"all revoked; journal == server record"
    )


def test_kill_9_at_three_random_points_then_resume_misses_nobody(tenant: Running, tmp_path: Path):
    creds = tenant.app("reliability-crash", app_roles=FULL)
    bundle = write_bundle(tenant, creds, tmp_path / "b.json")
    ids = internal_ids(tenant, USERS)
    targets = tmp_path / "t.txt"
    targets.write_text("\n".join(ids) + "\n")
    journal = tmp_path / "crash.jsonl"
    exe = Path(sys.executable).parent / "revoke-ops"
    env = {**os.environ}
    rng = random.Random(20261125)
    points = [rng.uniform(0.05, 0.6) for _ in range(3)]  # seconds into the sending phase
    before = len(tenant.revocations())
    pace = ["--write-rate", "300", "--write-burst", "40", "--concurrency", "2"]
    first = [
        str(exe),
        "revoke",
        "--credentials",
        str(bundle),
        "--from-file",
        str(targets),
        "--yes",
        "--journal",
        str(journal),
        *pace,
    ]
    resume = [str(exe), "revoke", "--credentials", str(bundle), "--resume", str(journal), "--yes", *pace]
    first.append("--debug")
    logs = [tmp_path / f"run{n}.log" for n in range(3)]
    kills = []
    for n, delay in enumerate(points):
        attempts_before = journal.read_text().count('"type":"attempt"') if journal.exists() else 0
        with logs[n].open("w") as log:
            process = subprocess.Popen(
                first if n == 0 else [*resume, "--debug"],
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        deadline = time.time() + 60
        # kill only once this run is sending (its first attempt is in the journal)
        while time.time() < deadline and process.poll() is None:
            if journal.exists() and journal.read_text().count('"type":"attempt"') > attempts_before:
                break
            time.sleep(0.02)
        time.sleep(delay)
        process.send_signal(signal.SIGKILL)
        process.wait()
        kills.append((round(delay, 3), len(tenant.revocations()) - before))
    print(f"kill -9 points (seconds after start, revocations so far): {kills}")
    # The sandbox enforces Graph's 20 writes/s once the burst is spent: allow for it at full size.
    final = subprocess.run(
        resume, env=env, capture_output=True, text=True, timeout=max(300, USERS // 10), start_new_session=True
    )
    assert final.returncode == 0, final.stderr
    revoked = [r["userId"] for r in tenant.revocations()[before:]]
    assert set(revoked) == set(ids), "no user missed"
    twice = len(revoked) - len(set(revoked))
    written = "".join(log.read_text() for log in logs) + final.stdout + final.stderr + journal.read_text()
    assert "DEBUG" in written, "the scan covers the debug logs"
    assert_no_secrets(written, creds.pem)
    print(f"revoked twice: {twice} (bounded by what was in flight at each kill)")
    assert twice <= 3 * 2 * 20, "only batches in flight at a kill may be sent again"
