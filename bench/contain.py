"""Benchmark: `revoke-ops contain` throughput against its own limit (issue 14).

Containing a user takes two writes (``PATCH accountEnabled``, then ``revokeSignInSessions``) from
the one write budget Graph gives an app in a tenant (3,000, then 20/s), so the best possible time
for N users is ``max(0, 2N - 3000) / 20`` seconds plus latency. The run goes through the Python API
(``contain()``) against a sandbox with the published limits and latency, as §1 of RESULTS.md does
for ``revoke``; the sandbox's own records (``/_control/account-changes`` and the revocation
record) are compared with the journal to count lost users.

The sandbox stack is applied with ``containmentPermissions`` added (a copy of the project in the
sandbox's state directory), so the app holds User.EnableDisableAccount.All as a real stack would.

    python -m bench.contain                       (3,000 users at time scale 1: about 3 minutes)
    python -m bench.contain --users 500 --time-scale 0.1

Benchmarks report figures, they do not assert them.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import yaml

from bench.bench import ROOT, WRITE_BURST, WRITE_RATE, Tenant, graph_pages, results_file, sandbox, throttled_share

STACK = "bench-contain"


def contain_bundle(tenant: Tenant) -> Path:
    """Apply the sandbox stack plus ``containmentPermissions`` to the tenant; its bundle."""
    project = tenant.state / "project"
    (project / "stacks").mkdir(parents=True, exist_ok=True)
    for name in ("__main__.py", "Pulumi.yaml"):
        shutil.copy(ROOT / name, project / name)
    document = yaml.safe_load((ROOT / "stacks" / "Pulumi.sandbox.yaml").read_text())
    document["config"]["revoke-sessions:containmentPermissions"] = ["User.EnableDisableAccount.All"]
    document["config"]["revoke-sessions:displayName"] = "revoke-sessions (bench contain)"
    (project / "stacks" / f"Pulumi.{STACK}.yaml").write_text(yaml.safe_dump(document))
    bundle = tenant.state / "contain-bundle.json"
    done = subprocess.run(
        [sys.executable, "-m", "sandbox", "apply", "--state-dir", str(tenant.state), "--stack", STACK,
         "--out", str(bundle), "--project-dir", str(project)],
        cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)}, check=False, capture_output=True, text=True,
    )  # fmt: skip
    if done.returncode != 0:
        raise RuntimeError(f"applying stack {STACK} failed: {done.stderr.strip()}")
    return bundle


def enabled_members(tenant: Tenant, bundle: Path, count: int) -> list[str]:
    """``count`` enabled ordinary members (no role, not synced): each takes exactly two writes."""
    query = "users?$filter=startswith(userPrincipalName,'user')&$select=id,userType,accountEnabled&$top=999"
    ids: list[str] = []
    for page in graph_pages(bundle, tenant.info["caBundle"], query):
        ids += [u["id"] for u in page if u.get("userType") == "Member" and u.get("accountEnabled")]
        if len(ids) >= count:
            break
    return ids[:count]


async def run_contain(bundle: Path, targets: Path, journal: Path, scale: float) -> dict[str, Any]:
    from revoke_ops import EngineOptions, certificate_identity, load_bundle
    from revoke_ops.contain import ContainRequest, contain

    identity = certificate_identity(bundle=load_bundle(bundle))
    engine = EngineOptions(write_burst=WRITE_BURST, write_rate=WRITE_RATE / scale, concurrency=8, backoff_base=scale)
    started = time.monotonic()
    try:
        result = await contain(
            identity, ContainRequest(files=[str(targets)], journal=journal, engine=engine, reason="bench: contain")
        )
    finally:
        await identity.close()
    return {
        "seconds": time.monotonic() - started,
        "outcomes": dict(result.summary.counts),
        "steps": dict(result.contain.steps),
        "exit": result.exit_code,
    }


def lost_users(ids: list[str], journal: Path, changes: list[dict[str, Any]], revocations: list[dict[str, Any]]) -> int:
    """Targets not both disabled and revoked by the server's record and the journal alike."""
    records = [json.loads(line) for line in journal.read_text().splitlines() if line.strip()]
    journal_disabled = {r["id"] for r in records if r["type"] == "disable" and r["step"] == "disabled"}
    journal_revoked = {r["id"] for r in records if r["type"] == "outcome" and r["outcome"] == "revoked"}
    server_disabled = {c["userId"] for c in changes if c["accountEnabled"] is False}
    server_revoked = {r["userId"] for r in revocations}
    contained = journal_disabled & journal_revoked & server_disabled & server_revoked
    return len(set(ids) - contained)


def bench_contain(users: int, scale: float) -> dict[str, Any]:
    with sandbox(users + 500, time_scale=scale) as tenant:
        bundle = contain_bundle(tenant)
        ids = enabled_members(tenant, bundle, users)
        if len(ids) < users:
            raise RuntimeError(f"the tenant has {len(ids)} enabled ordinary members, not {users}")
        targets = tenant.state / "targets.txt"
        targets.write_text("\n".join(ids) + "\n")
        journal = tenant.state / "contain.jsonl"
        before_429, before_total = throttled_share(tenant)
        run = asyncio.run(run_contain(bundle, targets, journal, scale))
        after_429, after_total = throttled_share(tenant)
        changes = list(tenant.control("/account-changes"))
        revocations = list(tenant.control("/revocations"))
        seconds = run["seconds"] / scale
        best = max(0, 2 * users - WRITE_BURST) / WRITE_RATE
        return {
            "users": users,
            "writes": 2 * users,
            "time_scale": scale,
            "seconds": seconds,
            "best_possible_seconds": best,
            "ratio": seconds / best if best else None,
            "requests": after_total - before_total,
            "throttled": after_429 - before_429,
            "disabled_server_side": len({c["userId"] for c in changes if c["accountEnabled"] is False} & set(ids)),
            "revoked_server_side": len({r["userId"] for r in revocations} & set(ids)),
            "lost_users": lost_users(ids, journal, changes, revocations),
            **run,
        }


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.contain")
    parser.add_argument("--users", type=int, default=3000)
    parser.add_argument("--time-scale", type=float, default=1.0)
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results.json")
    args = parser.parse_args()
    figures = bench_contain(args.users, args.time_scale)
    with results_file(args.out) as results:
        results["contain"] = figures
        results.update(
            contain_users=figures["users"],
            contain_seconds=figures["seconds"],
            contain_best_possible_seconds=figures["best_possible_seconds"],
            contain_ratio=figures["ratio"],
            contain_429s=figures["throttled"],
            contain_lost_users=figures["lost_users"],
        )
    print(json.dumps(figures, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
