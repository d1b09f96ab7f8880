"""Benchmarks: revoke-ops against the published limits, the baselines, scale and memory.

The sandbox runs as a separate process with the identity-and-access limits (token buckets: 3,000
writes refilled at 20/s per app+tenant) and a lognormal latency (median 150 ms, p99 ~600 ms),
compressed by one time-scale factor so that every ratio equals the unscaled ratio.

    python -m bench.bench all --out bench/results.json      (scripts/bench runs this)
    python -m bench.bench throughput --users 10000 --time-scale 0.05

Benchmarks are never timed tests: they report figures, they do not assert them.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
WRITE_BURST, WRITE_RATE = 3000, 20.0


@dataclass
class Tenant:
    state: Path
    info: dict[str, Any]
    bundle: Path
    process: subprocess.Popen[str]

    def control(self, path: str) -> Any:
        import ssl
        import urllib.request

        ctx = ssl.create_default_context(cafile=self.info["caBundle"])
        with urllib.request.urlopen(self.info["controlEndpoint"] + path, context=ctx, timeout=60) as response:  # noqa: S310
            return json.loads(response.read())


@contextmanager
def sandbox(
    users: int,
    *,
    time_scale: float,
    throttling: bool = True,
    latency: bool = True,
    bulk_group: int = 0,
    extra: list[str] | None = None,
) -> Iterator[Tenant]:
    """A sandbox tenant in its own process, with the sandbox stack applied to it."""
    state = Path(tempfile.mkdtemp(prefix="revoke-bench-"))
    args = [
        sys.executable,
        "-m",
        "sandbox",
        "serve",
        "--state-dir",
        str(state),
        "--users",
        str(users),
        "--time-scale",
        str(time_scale),
        "--groups",
        "4",
    ]
    if latency:
        args += ["--latency-median-ms", "150", "--latency-p99-ms", "600"]
    if not throttling:
        args.append("--no-throttling")
    if bulk_group:
        args += ["--bulk-group", str(bulk_group)]
    args += extra or []
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    process = subprocess.Popen(args, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        deadline = time.time() + 600
        while not (state / "sandbox.json").exists():
            if process.poll() is not None or time.time() > deadline:
                raise RuntimeError("the sandbox did not start")
            time.sleep(0.2)
        info = json.loads((state / "sandbox.json").read_text())
        bundle = state / "bundle.json"
        subprocess.run(
            [sys.executable, "-m", "sandbox", "apply", "--state-dir", str(state), "--out", str(bundle)],
            cwd=ROOT,
            env=env,
            check=True,
            capture_output=True,
        )
        os.environ["SSL_CERT_FILE"] = os.environ["REQUESTS_CA_BUNDLE"] = info["caBundle"]
        yield Tenant(state, info, bundle, process)
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            process.kill()


def user_ids(tenant: Tenant, count: int) -> list[str]:
    """``count`` ordinary members (internal, no role), read through the control-free Graph path."""
    import ssl

    import httpx
    from azure.identity import CertificateCredential

    bundle = json.loads(tenant.bundle.read_text())
    credential = CertificateCredential(
        bundle["tenantId"],
        bundle["clientId"],
        certificate_data=(bundle["privateKeyPem"] + bundle["certificatePem"]).encode(),
        authority=bundle["authorityHost"],
        disable_instance_discovery=True,
    )
    headers = {"Authorization": f"Bearer {credential.get_token(bundle['graphScope']).token}"}
    client = httpx.Client(verify=ssl.create_default_context(cafile=tenant.info["caBundle"]), timeout=120)
    url: str | None = (
        f"{bundle['graphEndpoint']}/users?$filter=startswith(userPrincipalName,'user')&$select=id,userType&$top=999"
    )
    ids: list[str] = []
    while url and len(ids) < count:
        page = client.get(url, headers=headers)
        if page.status_code == 429:
            time.sleep(float(page.headers.get("Retry-After", "1")))
            continue
        body = page.json()
        ids += [u["id"] for u in body["value"] if u.get("userType") == "Member"]
        url = body.get("@odata.nextLink")
    return ids[:count]


def revocation_record(tenant: Tenant) -> list[dict[str, Any]]:
    return list(tenant.control("/revocations"))


async def run_tool(
    tenant: Tenant, ids: list[str], time_scale: float, *, dry_run: bool = False, journal: Path | None = None
) -> dict[str, Any]:
    from revoke_ops import EngineOptions, RevokeRequest, certificate_identity, load_bundle, revoke

    targets = tenant.state / "targets.txt"
    targets.write_text("\n".join(ids) + "\n")
    identity = certificate_identity(bundle=load_bundle(tenant.bundle))
    engine = EngineOptions(
        write_burst=WRITE_BURST,
        write_rate=WRITE_RATE / time_scale,
        concurrency=8,
        backoff_base=time_scale,
        dry_run=dry_run,
    )
    started = time.monotonic()
    try:
        result = await revoke(
            identity, RevokeRequest(files=[str(targets)], journal=journal, engine=engine, dry_run=dry_run)
        )
    finally:
        await identity.close()
    return {"seconds": time.monotonic() - started, "counts": result.summary.counts, "journal": result.journal}


async def run_sequential(tenant: Tenant, ids: list[str]) -> dict[str, Any]:
    """One user at a time with msgraph-sdk (the Graph PowerShell cmdlet / community-script pattern)."""
    from revoke_ops import certificate_identity, load_bundle
    from revoke_ops.graph import GraphSession

    identity = certificate_identity(bundle=load_bundle(tenant.bundle))
    failures = 0
    started = time.monotonic()
    async with GraphSession(identity) as session:
        client = session.client
        for user in ids:
            try:
                await client.users.by_user_id(user).revoke_sign_in_sessions.post()
            except Exception:  # noqa: BLE001  # a baseline counts failures, it does not handle them
                failures += 1
    await identity.close()
    return {"seconds": time.monotonic() - started, "failures": failures}


async def run_naive(tenant: Tenant, ids: list[str], deadline: float) -> dict[str, Any]:
    """Unpaced asyncio.gather over msgraph-sdk with its default retry handler."""
    from revoke_ops import certificate_identity, load_bundle
    from revoke_ops.graph import GraphSession

    identity = certificate_identity(bundle=load_bundle(tenant.bundle))
    started = time.monotonic()
    async with GraphSession(identity, timeout=300) as session:
        client = session.client

        outcome = {"ok": 0, "failed": 0}

        async def one(user: str) -> None:
            try:
                await client.users.by_user_id(user).revoke_sign_in_sessions.post()
            except Exception:  # noqa: BLE001
                outcome["failed"] += 1
            else:
                outcome["ok"] += 1

        finished = True
        try:
            await asyncio.wait_for(asyncio.gather(*(one(u) for u in ids)), timeout=deadline)
        except TimeoutError:
            finished = False
    await identity.close()
    return {
        "seconds": time.monotonic() - started,
        "failures": outcome["failed"],
        "completed": outcome["ok"],
        "finished": finished,
    }


def throttled_share(tenant: Tenant) -> tuple[int, int]:
    state = tenant.control("/state")
    counts = {int(k): v for k, v in state["statusCounts"].items()}
    return counts.get(429, 0), sum(counts.values())


def bench_throughput(users: int, scale: float, out: Path, naive_deadline: float) -> dict[str, Any]:
    figures: dict[str, Any] = {"users": users, "time_scale": scale, "naive_deadline_s_real": naive_deadline}

    def save() -> None:
        current = json.loads(out.read_text()) if out.exists() else {}
        current["throughput"] = figures
        out.write_text(json.dumps(current, indent=2, default=str) + "\n")

    # 1. revoke-ops
    with sandbox(users + 500, time_scale=scale) as tenant:
        ids = user_ids(tenant, users)
        before_429, before_total = throttled_share(tenant)
        journal = tenant.state / "journal.jsonl"
        tool = asyncio.run(run_tool(tenant, ids, scale, journal=journal))
        after_429, after_total = throttled_share(tenant)
        record = revocation_record(tenant)
        revoked_server = {r["userId"] for r in record}
        outcomes = [json.loads(line) for line in journal.read_text().splitlines()]
        ends = sorted(r["at"] for r in outcomes if r["type"] == "outcome" and r["outcome"] == "revoked")
        from datetime import datetime

        def ts(v: str) -> float:
            return datetime.fromisoformat(v.replace("Z", "+00:00")).timestamp()

        # Steady state: after the burst is long spent (the second half of the run), so that
        # tokens refilled while the burst was still being sent do not inflate the rate.
        half = max(WRITE_BURST, len(ends) // 2)
        steady = (len(ends) - 1 - half) / (ts(ends[-1]) - ts(ends[half])) * scale if len(ends) > half + 1 else None
        figures["tool"] = {
            "seconds_scaled": tool["seconds"],
            "seconds_unscaled": tool["seconds"] / scale,
            "theoretical_best_unscaled": max(0, users - WRITE_BURST) / WRITE_RATE,
            "steady_rate_unscaled": steady,
            "throughput_ratio": steady / WRITE_RATE if steady else None,
            "requests": after_total - before_total,
            "throttled": after_429 - before_429,
            "throttled_share": (after_429 - before_429) / max(1, after_total - before_total),
            "lost_users": len(set(ids) - revoked_server),
            "outcomes": tool["counts"],
        }
    save()

    # 2. baselines, each in a fresh tenant with full buckets
    def baseline(client: Any) -> dict[str, Any]:
        with sandbox(users + 500, time_scale=scale) as tenant:
            ids = user_ids(tenant, users)
            run = asyncio.run(client(tenant, ids))
            n429, total = throttled_share(tenant)
            lost = len(set(ids) - {r["userId"] for r in revocation_record(tenant)})
        seconds = run.pop("seconds")
        return {"seconds_unscaled": seconds / scale, **run, "throttled": n429, "requests": total, "lost_users": lost}

    figures["sequential"] = baseline(run_sequential)
    save()
    figures["naive"] = baseline(lambda tenant, ids: run_naive(tenant, ids, naive_deadline))
    best = figures["tool"]["theoretical_best_unscaled"]
    seq_s = figures["sequential"]["seconds_unscaled"]
    figures["speedup_vs_sequential"] = seq_s / figures["tool"]["seconds_unscaled"]
    figures["best_possible_speedup_vs_sequential"] = seq_s / best if best else None
    figures["speedup_vs_naive"] = figures["naive"]["seconds_unscaled"] / figures["tool"]["seconds_unscaled"]
    return figures


def peak_rss_mb(args: list[str], env: dict[str, str]) -> tuple[float, float, int]:
    """Run a command; return (its peak RSS in MB, seconds, exit code).

    The peak is the process's own high-water mark (VmHWM of its address space), sampled until it
    exits: wait4's ru_maxrss would also count the parent's RSS inherited through fork before exec.
    """
    started = time.monotonic()
    process = subprocess.Popen(args, env=env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    peak = 0.0
    status = Path(f"/proc/{process.pid}/status")
    while process.poll() is None:
        try:
            for line in status.read_text().splitlines():
                if line.startswith("VmHWM:"):
                    peak = max(peak, int(line.split()[1]) / 1024)
        except OSError:
            pass
        time.sleep(0.1)
    return peak, time.monotonic() - started, process.returncode


def bench_scale(dry_users: int, real_users: int) -> dict[str, Any]:
    figures: dict[str, Any] = {}
    exe = str(Path(sys.executable).parent / "revoke-ops")
    with sandbox(max(dry_users, real_users) + 1000, time_scale=1.0, throttling=False, latency=False) as tenant:
        env = {**os.environ}
        ids = user_ids(tenant, max(dry_users, real_users))
        targets = tenant.state / "dry.txt"
        targets.write_text("\n".join(ids[:dry_users]) + "\n")
        rss, seconds, code = peak_rss_mb(
            [
                exe,
                "revoke",
                "--credentials",
                str(tenant.bundle),
                "--from-file",
                str(targets),
                "--dry-run",
                "--output",
                "json",
            ],
            env,
        )
        figures["dry_run"] = {
            "targets": dry_users,
            "peak_rss_mb": rss,
            "seconds": seconds,
            "users_per_s": dry_users / seconds,
            "exit": code,
        }
        targets = tenant.state / "real.txt"
        targets.write_text("\n".join(ids[:real_users]) + "\n")
        rss, seconds, code = peak_rss_mb(
            [
                exe,
                "revoke",
                "--credentials",
                str(tenant.bundle),
                "--from-file",
                str(targets),
                "--yes",
                "--journal",
                str(tenant.state / "real.jsonl"),
                "--write-rate",
                "1000000",
                "--write-burst",
                "1000000",
                "--concurrency",
                "8",
            ],
            env,
        )
        figures["real_run"] = {
            "targets": real_users,
            "peak_rss_mb": rss,
            "seconds": seconds,
            "users_per_s": real_users / seconds,
            "exit": code,
        }
    return figures


def bench_first_revocation(members: int) -> dict[str, Any]:
    from revoke_ops import RevokeRequest, certificate_identity, load_bundle, revoke
    from revoke_ops.engine import Engine

    with sandbox(members + 2000, time_scale=1.0, throttling=False, latency=True, bulk_group=members) as tenant:
        group = tenant.info["groups"]["incident-bulk"]
        marks: dict[str, float] = {}

        def confirm(count: int | None, eta: float | None, details: dict[str, Any]) -> bool:
            marks["confirmed"] = time.monotonic()
            return True

        class Stop(Exception):
            pass

        class FirstOnly(Engine):
            def _record(self, outcome: str, *args: Any, **kwargs: Any) -> None:
                super()._record(outcome, *args, **kwargs)
                if outcome == "revoked" and "first" not in marks:
                    marks["first"] = time.monotonic()
                    raise Stop

        async def go() -> None:
            identity = certificate_identity(bundle=load_bundle(tenant.bundle))
            try:
                await revoke(
                    identity,
                    RevokeRequest(group=group, journal=tenant.state / "ttfr.jsonl"),
                    confirm=confirm,
                    engine_factory=FirstOnly,
                )
            except Stop:
                pass
            finally:
                await identity.close()

        asyncio.run(go())
        return {"members": members, "time_to_first_revocation_s": marks["first"] - marks["confirmed"]}


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.bench")
    parser.add_argument("what", choices=["all", "throughput", "scale", "ttfr"])
    parser.add_argument("--users", type=int, default=10000)
    parser.add_argument("--time-scale", type=float, default=0.05)
    parser.add_argument("--dry-users", type=int, default=1_000_000)
    parser.add_argument("--real-users", type=int, default=200_000)
    parser.add_argument("--group-members", type=int, default=100_000)
    parser.add_argument("--naive-deadline", type=float, default=600.0, help="real seconds the naive baseline may run")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results.json")
    args = parser.parse_args()
    results: dict[str, Any] = json.loads(args.out.read_text()) if args.out.exists() else {}
    results["machine"] = {"python": platform.python_version(), "platform": platform.platform(), "cpus": os.cpu_count()}
    if args.what in ("all", "throughput"):
        t = bench_throughput(args.users, args.time_scale, args.out, args.naive_deadline)
        results["throughput"] = t
        results.update(
            {
                "throughput_ratio": t["tool"]["throughput_ratio"],
                "throttled_share": t["tool"]["throttled_share"],
                "lost_users": t["tool"]["lost_users"],
                "speedup_vs_sequential": t["speedup_vs_sequential"],
                "best_possible_speedup_vs_sequential": t["best_possible_speedup_vs_sequential"],
                "speedup_vs_naive": t["speedup_vs_naive"],
                "time_scale": args.time_scale,
            }
        )
        args.out.write_text(json.dumps(results, indent=2, default=str) + "\n")
    if args.what in ("all", "ttfr"):
        f = bench_first_revocation(args.group_members)
        results["first_revocation"] = f
        results["time_to_first_revocation_s"] = f["time_to_first_revocation_s"]
        args.out.write_text(json.dumps(results, indent=2, default=str) + "\n")
    if args.what in ("all", "scale"):
        s = bench_scale(args.dry_users, args.real_users)
        results["scale"] = s
        results["peak_rss_mb_dry_run_1m"] = s["dry_run"]["peak_rss_mb"]
        results["peak_rss_mb_real_200k"] = s["real_run"]["peak_rss_mb"]
        args.out.write_text(json.dumps(results, indent=2, default=str) + "\n")
    print(json.dumps(results, indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
