"""Benchmarks: revoke-ops against the published limits, the baselines, scale and memory.

The sandbox runs as a separate process with the identity-and-access limits (token buckets: 3,000
writes refilled at 20/s per app+tenant) and a lognormal latency (median 150 ms, p99 ~600 ms).
The published figures run at time scale 1 (real time). ``--time-scale`` compresses every modelled
duration alike for quick looks, but CPU time (the client's, the sandbox's) is not compressed, so
scaled runs favour the client that spends the least CPU per user; each run records both.

    scripts/bench                                           (every figure, about 75 minutes)
    python -m bench.bench throughput --client tool --users 10000

Benchmarks are never timed tests: they report figures, they do not assert them.

Size (~530 lines): one benchmark harness (not product code); each figure is one function.
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
from collections import Counter
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
    process: subprocess.Popen[bytes]

    def control(self, path: str) -> Any:
        import ssl
        import urllib.request

        ctx = ssl.create_default_context(cafile=self.info["caBundle"])
        request = urllib.request.Request(  # noqa: S310  # the sandbox's https control endpoint
            self.info["controlEndpoint"] + path, headers={"Authorization": f"Bearer {self.info['controlToken']}"}
        )
        with urllib.request.urlopen(request, context=ctx, timeout=60) as response:  # noqa: S310
            return json.loads(response.read())


@contextmanager
def sandbox(
    users: int,
    *,
    time_scale: float,
    throttling: bool = True,
    latency: bool = True,
    bulk_group: int = 0,
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
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    process = subprocess.Popen(args, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
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
        os.environ["REVOKE_OPS_ALLOW_CUSTOM_CLOUD"] = "1"  # the sandbox's bundles are cloud "custom"
        yield Tenant(state, info, bundle, process)
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            process.kill()


def graph_pages(bundle_path: Path, ca: str, query: str) -> Iterator[list[dict[str, Any]]]:
    """The pages of ``GET {graphEndpoint}/{query}``, signed in as the bundle's app with its certificate.

    Graph's 429s are waited out (Retry-After); any other error status raises. The one credential
    set-up of the benchmarks' own Graph reads (the client under test builds its own).
    """
    import ssl

    import httpx
    from azure.identity import CertificateCredential

    bundle = json.loads(bundle_path.read_text())
    credential = CertificateCredential(
        bundle["tenantId"],
        bundle["clientId"],
        certificate_data=(bundle["privateKeyPem"] + bundle["certificatePem"]).encode(),
        authority=bundle["authorityHost"],
        disable_instance_discovery=True,
    )
    headers = {"Authorization": f"Bearer {credential.get_token(bundle['graphScope']).token}"}
    with httpx.Client(verify=ssl.create_default_context(cafile=ca), timeout=120) as client:
        url: str | None = f"{bundle['graphEndpoint']}/{query}"
        while url:
            page = client.get(url, headers=headers)
            if page.status_code == 429:
                time.sleep(float(page.headers.get("Retry-After", "1")))
                continue
            page.raise_for_status()
            body = page.json()
            yield list(body["value"])
            url = body.get("@odata.nextLink")


def user_ids(tenant: Tenant, count: int) -> list[str]:
    """``count`` ordinary members (internal, no role), read through the control-free Graph path."""
    query = "users?$filter=startswith(userPrincipalName,'user')&$select=id,userType&$top=999"
    ids: list[str] = []
    for page in graph_pages(tenant.bundle, tenant.info["caBundle"], query):
        ids += [u["id"] for u in page if u.get("userType") == "Member"]
        if len(ids) >= count:
            break
    return ids[:count]


def revocation_record(tenant: Tenant) -> list[dict[str, Any]]:
    return list(tenant.control("/revocations"))


async def run_tool(tenant: Tenant, ids: list[str], time_scale: float, journal: Path) -> dict[str, Any]:
    from revoke_ops import EngineOptions, RevokeRequest, certificate_identity, load_bundle, revoke

    targets = tenant.state / "targets.txt"
    targets.write_text("\n".join(ids) + "\n")
    identity = certificate_identity(bundle=load_bundle(tenant.bundle))
    engine = EngineOptions(
        write_burst=WRITE_BURST, write_rate=WRITE_RATE / time_scale, concurrency=8, backoff_base=time_scale
    )
    started = time.monotonic()
    try:
        result = await revoke(identity, RevokeRequest(files=[str(targets)], journal=journal, engine=engine))
    finally:
        await identity.close()
    return {"seconds": time.monotonic() - started, "counts": result.summary.counts}


async def revoke_with_sdk(client: Any, user: str, errors: Counter[str]) -> None:
    """The baselines' one call: msgraph-sdk's revokeSignInSessions; a failure is counted by type."""
    try:
        await client.users.by_user_id(user).revoke_sign_in_sessions.post()
    except Exception as err:  # noqa: BLE001  # a baseline counts failures, it does not handle them
        errors[type(err).__name__] += 1


async def run_sequential(tenant: Tenant, ids: list[str]) -> dict[str, Any]:
    """One user at a time with msgraph-sdk (the Graph PowerShell cmdlet / community-script pattern)."""
    from revoke_ops import certificate_identity, load_bundle
    from revoke_ops.graph import GraphSession

    identity = certificate_identity(bundle=load_bundle(tenant.bundle))
    errors: Counter[str] = Counter()
    started = time.monotonic()
    try:
        async with GraphSession(identity) as session:
            for user in ids:
                await revoke_with_sdk(session.client, user, errors)
    finally:
        await identity.close()
    return {"seconds": time.monotonic() - started, "errors": errors}


async def run_naive(tenant: Tenant, ids: list[str], deadline: float) -> dict[str, Any]:
    """Unpaced asyncio.gather over msgraph-sdk with its default retry handler."""
    from revoke_ops import certificate_identity, load_bundle
    from revoke_ops.graph import GraphSession

    identity = certificate_identity(bundle=load_bundle(tenant.bundle))
    errors: Counter[str] = Counter()
    finished = True
    started = time.monotonic()
    try:
        async with GraphSession(identity, timeout=300) as session:
            calls = asyncio.gather(*(revoke_with_sdk(session.client, u, errors) for u in ids))
            try:
                await asyncio.wait_for(calls, timeout=deadline)
            except TimeoutError:
                finished = False
    finally:
        await identity.close()
    return {"seconds": time.monotonic() - started, "errors": errors, "finished": finished}


def throttled_share(tenant: Tenant) -> tuple[int, int]:
    state = tenant.control("/state")
    counts = {int(k): v for k, v in state["statusCounts"].items()}
    return counts.get(429, 0), sum(counts.values())


def process_cpu_s(pid: int) -> float:
    """User + system CPU seconds a process has used so far (``/proc/<pid>/stat``)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


CLIENTS = ("tool", "sequential", "naive")


def bench_client(client: str, users: int, scale: float, naive_deadline: float) -> dict[str, Any]:
    """One client revoking ``users`` users in a fresh tenant (full buckets), with what it cost.

    Times are real seconds; ``seconds_unscaled`` divides by the time scale. The client's own CPU
    (this process) and the sandbox's CPU are measured too: neither is scaled, which is why the
    published figures are taken at time scale 1.
    """
    with sandbox(users + 500, time_scale=scale) as tenant:
        ids = user_ids(tenant, users)
        before_429, before_total = throttled_share(tenant)
        server_cpu = process_cpu_s(tenant.process.pid)
        client_cpu = time.process_time()
        journal = tenant.state / "journal.jsonl"
        if client == "tool":
            run = asyncio.run(run_tool(tenant, ids, scale, journal))
        elif client == "sequential":
            run = asyncio.run(run_sequential(tenant, ids))
        else:
            run = asyncio.run(run_naive(tenant, ids, naive_deadline))
        client_cpu = time.process_time() - client_cpu
        server_cpu = process_cpu_s(tenant.process.pid) - server_cpu
        after_429, after_total = throttled_share(tenant)
        revoked_server = {r["userId"] for r in revocation_record(tenant)}
        requests = after_total - before_total
        figures: dict[str, Any] = {
            "users": users,
            "time_scale": scale,
            "seconds": run["seconds"],
            "seconds_unscaled": run["seconds"] / scale,
            "client_cpu_s": client_cpu,
            "server_cpu_s": server_cpu,
            "requests": requests,
            "throttled": after_429 - before_429,
            "throttled_share": (after_429 - before_429) / max(1, requests),
            "revoked_server_side": len(revoked_server & set(ids)),
            "lost_users": len(set(ids) - revoked_server),
            "finished": run.get("finished", True),
        }
        if client == "tool":
            figures.update(tool_figures(journal, users, scale))
            figures["outcomes"] = run["counts"]
        else:
            figures["failures"] = sum(run["errors"].values())
            figures["errors"] = dict(run["errors"])
        return figures


def tool_figures(journal: Path, users: int, scale: float) -> dict[str, Any]:
    """The steady-state write rate from the journal's outcome times, against the model's best."""
    from datetime import datetime

    def ts(v: str) -> float:
        return datetime.fromisoformat(v.replace("Z", "+00:00")).timestamp()

    records = [json.loads(line) for line in journal.read_text().splitlines()]
    ends = sorted(ts(r["at"]) for r in records if r["type"] == "outcome" and r["outcome"] == "revoked")
    # Steady state: after the burst is long spent (the second half of the run), so that tokens
    # refilled while the burst was still being sent do not inflate the rate.
    half = max(WRITE_BURST, len(ends) // 2)
    steady = (len(ends) - 1 - half) / (ends[-1] - ends[half]) * scale if len(ends) > half + 1 else None
    after_burst = (
        (len(ends) - WRITE_BURST) / (ends[-1] - ends[WRITE_BURST - 1]) * scale if len(ends) > WRITE_BURST else None
    )
    return {
        "theoretical_best_unscaled": max(0, users - WRITE_BURST) / WRITE_RATE,
        "burst_seconds_unscaled": (ends[min(WRITE_BURST, len(ends)) - 1] - ends[0]) / scale if ends else None,
        "steady_rate_unscaled": steady,
        "rate_after_burst_unscaled": after_burst,
        "throughput_ratio": steady / WRITE_RATE if steady else None,
    }


def throughput_headline(throughput: dict[str, Any]) -> dict[str, Any]:
    """Speed-ups, once all three clients have run with the same size and time scale."""
    runs = [throughput.get(c) or {} for c in CLIENTS]
    if not all(runs) or len({(r.get("users"), r.get("time_scale")) for r in runs}) != 1:
        return {}
    tool, seq, naive = runs
    best = tool["theoretical_best_unscaled"]
    return {
        "speedup_vs_sequential": seq["seconds_unscaled"] / tool["seconds_unscaled"],
        "best_possible_speedup_vs_sequential": seq["seconds_unscaled"] / best if best else None,
        "share_of_best_possible_speedup": best / tool["seconds_unscaled"] if best else None,
        # Users revoked per second, tool over naive: the time ratio when both revoke everyone; when
        # the naive run gives up on users (or hits its deadline), a lower bound on the speed-up to
        # the same result, which the naive run never reaches.
        "speedup_vs_naive": (tool["revoked_server_side"] / tool["seconds"])
        / max(1e-9, naive["revoked_server_side"] / naive["seconds"]),
        "speedup_vs_naive_is_lower_bound": not naive["finished"] or naive["lost_users"] > 0,
    }


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
    """Peak memory and users/s of the ``revoke-ops`` command: a dry run and a real run, unthrottled."""
    exe = str(Path(sys.executable).parent / "revoke-ops")
    with sandbox(max(dry_users, real_users) + 1000, time_scale=1.0, throttling=False, latency=False) as tenant:
        ids = user_ids(tenant, max(dry_users, real_users))

        def measure(name: str, count: int, options: list[str]) -> dict[str, Any]:
            targets = tenant.state / f"{name}.txt"
            targets.write_text("\n".join(ids[:count]) + "\n")
            command = [exe, "revoke", "--credentials", str(tenant.bundle), "--from-file", str(targets), *options]
            rss, seconds, code = peak_rss_mb(command, {**os.environ})
            return {
                "targets": count,
                "peak_rss_mb": rss,
                "seconds": seconds,
                "users_per_s": count / seconds,
                "exit": code,
            }

        unpaced = ["--write-rate", "1000000", "--write-burst", "1000000", "--concurrency", "8"]
        return {
            "dry_run": measure("dry", dry_users, ["--dry-run", "--output", "json"]),
            "real_run": measure("real", real_users, ["--yes", "--journal", str(tenant.state / "real.jsonl"), *unpaced]),
        }


def bench_first_revocation(members: int) -> dict[str, Any]:
    from revoke_ops import RevokeRequest, certificate_identity, load_bundle, revoke
    from revoke_ops.engine import Engine, Outcome, Record

    with sandbox(members + 2000, time_scale=1.0, throttling=False, latency=True, bulk_group=members) as tenant:
        group = tenant.info["groups"]["incident-bulk"]
        marks: dict[str, float] = {}

        def confirm(count: int | None, eta: float | None, details: dict[str, Any]) -> bool:
            marks["confirmed"] = time.monotonic()
            return True

        class Stop(Exception):
            pass

        class FirstOnly(Engine):
            def _record(self, record: Record) -> None:
                super()._record(record)
                if record.outcome == Outcome.REVOKED and "first" not in marks:
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


def bench_pulumi() -> dict[str, Any]:
    """The Pulumi program under the mock runtime, once per stack file, each in a fresh process.

    Runs in a copy of the project, where the operator-supplied certificates the example stacks
    name (``pemFile``) are generated, as the tests do.
    """
    import shutil

    from tests.certs import make_certificate

    figures: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="revoke-bench-pulumi-") as tmp:
        project = Path(tmp)
        for name in ("__main__.py", "Pulumi.yaml"):
            shutil.copy(ROOT / name, project / name)
        shutil.copytree(ROOT / "stacks", project / "stacks")
        for path in sorted((project / "stacks").glob("Pulumi.*.yaml")):
            for line in path.read_text().splitlines():
                if "pemFile:" in line:
                    pem = project / line.split("pemFile:", 1)[1].strip()
                    pem.parent.mkdir(parents=True, exist_ok=True)
                    pem.write_text(make_certificate(days=400)[0])
            stack = path.name.removeprefix("Pulumi.").removesuffix(".yaml")
            started = time.monotonic()
            done = subprocess.run(
                [sys.executable, "-m", "provisioning.mockrun", "--stack", stack, "--project-dir", str(project)],
                cwd=ROOT,
                env={**os.environ, "PYTHONPATH": str(ROOT)},
                capture_output=True,
                text=True,
            )
            seconds = time.monotonic() - started
            resources = len(json.loads(done.stdout)["resources"]) if done.returncode == 0 else None
            figures[stack] = {"seconds": seconds, "exit": done.returncode, "resources": resources}
    return figures


@contextmanager
def results_file(out: Path) -> Iterator[dict[str, Any]]:
    """Read-modify-write ``results.json`` under a lock, so that concurrent bench runs merge."""
    import fcntl

    out.touch()
    with out.open("r+") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        text = handle.read()
        results: dict[str, Any] = json.loads(text) if text.strip() else {}
        yield results
        results["machine"] = {
            "python": platform.python_version(),
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
        }
        handle.seek(0)
        handle.truncate()
        handle.write(json.dumps(results, indent=2, default=str) + "\n")


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.bench")
    parser.add_argument("what", choices=["throughput", "scale", "ttfr", "pulumi"])
    parser.add_argument(
        "--client", choices=[*CLIENTS, "all"], default="all", help="throughput: which client runs (default: all)"
    )
    parser.add_argument("--users", type=int, default=10000)
    parser.add_argument(
        "--time-scale",
        type=float,
        default=1.0,
        help="compresses every modelled duration; the client's and the sandbox's CPU are not scaled",
    )
    parser.add_argument("--dry-users", type=int, default=1_000_000)
    parser.add_argument("--real-users", type=int, default=200_000)
    parser.add_argument("--group-members", type=int, default=100_000)
    parser.add_argument("--naive-deadline", type=float, default=3600.0, help="real seconds the naive baseline may run")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results.json")
    args = parser.parse_args()
    if args.what == "throughput":
        for client in CLIENTS if args.client == "all" else (args.client,):
            figures = bench_client(client, args.users, args.time_scale, args.naive_deadline)
            with results_file(args.out) as results:
                throughput = results.setdefault("throughput", {})
                throughput[client] = figures
                for key in ("users", "time_scale", "naive_deadline_s_real", "speedup_vs_naive_is_lower_bound"):
                    throughput.pop(key, None)
                headline = throughput_headline(throughput)
                throughput.update(headline)
                results.update(headline)
                if client == "tool":
                    results.update(
                        throughput_ratio=figures["throughput_ratio"],
                        throttled_share=figures["throttled_share"],
                        lost_users=figures["lost_users"],
                        time_scale=args.time_scale,
                    )
            print(json.dumps({client: figures, **headline}, indent=2, default=str))
    elif args.what == "ttfr":
        first = bench_first_revocation(args.group_members)
        with results_file(args.out) as results:
            results["first_revocation"] = first
            results["time_to_first_revocation_s"] = first["time_to_first_revocation_s"]
        print(json.dumps(first, indent=2))
    elif args.what == "scale":
        scale = bench_scale(args.dry_users, args.real_users)
        with results_file(args.out) as results:
            results["scale"] = scale
            results["peak_rss_mb_dry_run_1m"] = scale["dry_run"]["peak_rss_mb"]
            results["peak_rss_mb_real_200k"] = scale["real_run"]["peak_rss_mb"]
        print(json.dumps(scale, indent=2))
    else:
        stacks = bench_pulumi()
        with results_file(args.out) as results:
            results["pulumi_mock_runtime"] = stacks
        print(json.dumps(stacks, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
