"""``python -m sandbox serve|apply|keyvault``: run the emulated tenant, apply a stack to it, run a vault.

The sandbox is not installed (the wheel is revoke_ops only), so ``python -m sandbox`` finds it only
with the checkout on the module path: from the checkout's root, or from anywhere through
``scripts/sandbox`` (which puts it there). Relative paths given to it are the caller's either way.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
from pathlib import Path

from sandbox.apply import FAILED_MARKER
from sandbox.graph import Faults
from sandbox.server import Latency, Sandbox, SandboxOptions


def _serve(args: argparse.Namespace) -> int:
    faults = Faults(
        error_5xx=args.fault_5xx,
        item_429=args.fault_item_429,
        batch_429=args.fault_batch_429,
        reset=args.fault_reset,
        stall=args.fault_stall,
        stall_seconds=args.stall_seconds,
        malformed=args.fault_malformed,
    )
    options = SandboxOptions(
        users=args.users,
        groups=args.groups,
        group_size=args.group_size,
        bulk_group=args.bulk_group,
        seed=args.seed,
        time_scale=args.time_scale,
        throttling=not args.no_throttling,
        latency=Latency(args.latency_median_ms, args.latency_p99_ms),
        faults=faults,
        consent_delay=args.consent_delay,
        auto_approve_user=args.auto_approve_user,
        port=args.port,
        p1_licence=not args.no_p1_licence,
        p2_licence=not args.no_p2_licence,
        advanced_query_lag=args.advanced_query_lag,
    )
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    sandbox = Sandbox(args.state_dir, options)
    info = sandbox.start()
    # sandbox.json (0600) holds everything; the control token is not printed.
    print(json.dumps({k: v for k, v in info.items() if k != "controlToken"}, indent=2), flush=True)
    print(f"sandbox: serving tenant {info['tenantId']} at {info['authorityHost']} (Ctrl-C stops)", file=sys.stderr)
    try:
        # Wake up now and then: a signal the kernel delivers to the server thread only runs its
        # Python handler when the main thread next executes bytecode, and a bare wait() never
        # returns to do so (the demo's Ctrl-C then hung at random).
        while not stop.wait(0.2):
            pass
    finally:
        sandbox.stop()
        (Path(args.state_dir) / "sandbox.json").unlink(missing_ok=True)
        print("sandbox: stopped", file=sys.stderr)
    return 0


def _apply(args: argparse.Namespace) -> int:
    from sandbox.apply import ApplyError, apply

    replaced: list[str] = []
    try:
        outputs = apply(Path(args.state_dir), args.stack, Path(args.out), args.project_dir, replaced=replaced)
    except ApplyError as err:
        print(f"sandbox apply: error: {err}", file=sys.stderr)
        return 1
    for object_id in replaced:
        print(
            f"sandbox apply: stack {args.stack} was applied before: its application (object id {object_id}) was "
            "deleted and created anew",
            file=sys.stderr,
        )
    print(
        f"sandbox apply: stack {args.stack} applied; client id {outputs['clientId']}, "
        f"bundle written to {args.out} (mode 0600)",
        file=sys.stderr,
    )
    return 0


def _apply_child(args: argparse.Namespace) -> int:
    from sandbox.apply import run_in_subprocess

    try:
        result = run_in_subprocess(Path(args.state_dir), args.stack, args.project_dir)
    except Exception as err:  # noqa: BLE001  # reported to the parent in full (every config problem)
        print(f"{FAILED_MARKER}\n{type(err).__name__}: {err}", file=sys.stderr)
        return 1
    json.dump(result, sys.stdout, default=str)
    return 0


def _keyvault(args: argparse.Namespace) -> int:
    from sandbox.keyvault import serve

    return serve(Path(args.state_dir), args.port)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m sandbox", description="A local emulated Entra tenant.")
    # The metavar keeps the internal _apply-child out of --help and usage lines.
    commands = parser.add_subparsers(dest="command", required=True, metavar="{serve,apply,keyvault}")
    serve = commands.add_parser("serve", help="serve the emulated tenant on 127.0.0.1 until Ctrl-C / SIGTERM")
    serve.add_argument("--state-dir", type=Path, required=True, help="where sandbox.json, the CA and keys are written")
    serve.add_argument("--users", type=int, default=2000)
    serve.add_argument("--groups", type=int, default=20)
    serve.add_argument("--group-size", type=int, default=300, help="members of compromised-sales (transitively)")
    serve.add_argument(
        "--bulk-group",
        type=int,
        default=0,
        help="also a group 'incident-bulk' of N transitive members (half of them in nested groups)",
    )
    serve.add_argument("--seed", type=int, default=1)
    serve.add_argument("--port", type=int, default=0, help="0 picks a free port")
    serve.add_argument(
        "--time-scale", type=float, default=1.0, help="compress every modelled duration (0.1 = 10x faster)"
    )
    serve.add_argument("--no-throttling", action="store_true")
    serve.add_argument("--latency-median-ms", type=float, default=0.0)
    serve.add_argument("--latency-p99-ms", type=float, default=0.0)
    serve.add_argument(
        "--consent-delay", type=float, default=0.0, help="modelled seconds before new consent shows in tokens"
    )
    serve.add_argument("--auto-approve-user", help="UPN that approves device codes and interactive sign-ins")
    serve.add_argument(
        "--no-p1-licence",
        action="store_true",
        help="the tenant has no Entra ID P1: group-based app assignment does not let anyone sign in",
    )
    serve.add_argument(
        "--no-p2-licence",
        action="store_true",
        help="the tenant has no Entra ID P2: PIM-eligible role assignments cannot be listed",
    )
    serve.add_argument(
        "--advanced-query-lag",
        type=float,
        default=0.0,
        help="modelled seconds before a new user or membership shows in advanced queries (eventual consistency)",
    )
    serve.add_argument("--fault-5xx", type=float, default=0.0)
    serve.add_argument("--fault-item-429", type=float, default=0.0)
    serve.add_argument("--fault-batch-429", type=float, default=0.0, help="a whole $batch answered 429")
    serve.add_argument("--fault-reset", type=float, default=0.0)
    serve.add_argument("--fault-stall", type=float, default=0.0)
    serve.add_argument("--stall-seconds", type=float, default=0.0)
    serve.add_argument("--fault-malformed", type=float, default=0.0)
    serve.set_defaults(func=_serve)
    app = commands.add_parser("apply", help="apply a stack to the running sandbox and write its bundle")
    app.add_argument("--state-dir", type=Path, required=True)
    app.add_argument("--stack", default="sandbox")
    app.add_argument("--out", type=Path, required=True, help="bundle file to write (mode 0600)")
    app.add_argument("--project-dir", type=Path, default=Path(__file__).resolve().parent.parent, help=argparse.SUPPRESS)
    app.set_defaults(func=_apply)
    vault = commands.add_parser("keyvault", help="serve a loopback Key Vault (sign, get certificate) beside a sandbox")
    vault.add_argument("--state-dir", type=Path, required=True, help="the running sandbox's state directory")
    vault.add_argument("--port", type=int, default=0, help="0 picks a free port")
    vault.set_defaults(func=_keyvault)
    child = commands.add_parser("_apply-child")  # no help=: not listed (help=SUPPRESS shows "==SUPPRESS==")
    child.add_argument("--state-dir", type=Path, required=True)
    child.add_argument("--stack", required=True)
    child.add_argument("--project-dir", type=Path, required=True)
    child.set_defaults(func=_apply_child)
    args = parser.parse_args(argv)
    for name in ("state_dir", "out", "project_dir"):
        # Relative paths are the caller's: ``apply`` hands them to a child that runs in the checkout.
        if isinstance(getattr(args, name, None), Path):
            setattr(args, name, getattr(args, name).absolute())
    result: int = args.func(args)
    return result


if __name__ == "__main__":
    sys.exit(main())
