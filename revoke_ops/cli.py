"""The ``revoke-ops`` command: thin commands over :mod:`revoke_ops.run`, verify and doctor.

Results go to stdout (``--output table|json``); logs, progress and questions to stderr. Exit codes
are :class:`ExitCode`, mapped from exceptions in one place (:func:`main`).
"""

from __future__ import annotations

import argparse
import asyncio
import enum
import json
import logging
import sys
import time
from pathlib import Path
from typing import Any

from revoke_ops import __version__
from revoke_ops.bundle import ALLOW_CUSTOM_CLOUD_ENV, Bundle, load_bundle
from revoke_ops.credentials import (
    Identity,
    certificate_identity,
    delegated_identity,
    github_actions_identity,
    key_vault_identity,
    platform_identity,
)
from revoke_ops.engine import EngineOptions, Summary
from revoke_ops.errors import AuthError, InputError, RevokeOpsError, ServiceError, exit_code_for
from revoke_ops.hardening import harden_process
from revoke_ops.journal import default_journal_path
from revoke_ops.outcomes import Outcome
from revoke_ops.redact import RedactingFilter, redact

__all__ = ["ExitCode", "main"]

log = logging.getLogger("revoke_ops")


class ExitCode(enum.IntEnum):
    """Process exit codes."""

    OK = 0  # every target revoked, excluded or skipped as asked (a dry run exits 0)
    NOT_ALL_REVOKED = 1  # some targets not revoked (not found, forbidden, failed)
    USAGE = 2  # usage or input error: nothing changed
    AUTH = 3  # authentication or permission failure for the whole run: nothing changed
    SERVICE = 4  # Microsoft Graph kept failing (5xx, throttling, unreadable answers) before anything changed
    INTERRUPTED = 130  # Ctrl-C; the journal is intact


# ---------------------------------------------------------------------------------------------
def _credential_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("credentials")
    group.add_argument(
        "--credentials",
        type=Path,
        metavar="BUNDLE",
        help="the bundle: JSON of `pulumi stack output --json --show-secrets` (chmod 600)",
    )
    group.add_argument(
        "--certificate",
        type=Path,
        metavar="PEM",
        help="private key + certificate PEM, when the bundle holds no key (chmod 600)",
    )
    group.add_argument(
        "--credential",
        choices=["certificate", "managed-identity", "workload-identity", "azure-pipelines", "github-actions"],
        default="certificate",
        help="how to sign in app-only (default: certificate)",
    )
    group.add_argument(
        "--key-vault-certificate",
        metavar="URL",
        help="sign in with a non-exportable Key Vault certificate (https://VAULT.vault.azure.net/certificates/NAME"
        "[/VERSION]): the vault signs each assertion, with your own azure-identity sign-in",
    )
    group.add_argument(
        "--delegated",
        nargs="?",
        const="device-code",
        choices=["device-code", "browser"],
        help="an operator signs in (device code by default, or an interactive browser)",
    )
    group.add_argument(
        "--cloud",
        choices=["public", "usgovernment", "usgovernmentdod", "china"],
        help="without a bundle: the national cloud (default public)",
    )
    group.add_argument("--client-id", help="without a bundle: the app's (or managed identity's) client id")
    group.add_argument("--tenant-id", help="without a bundle: the tenant id")
    _trust_options(group)
    parser.add_argument("--output", choices=["table", "json"], default="table", help="result format on stdout")
    parser.add_argument("--debug", action="store_true", help="debug logs and tracebacks (never tokens or keys)")
    parser.add_argument("-v", "--verbose", action="store_true", help="informational logs")


def _trust_options(group: Any) -> None:
    group.add_argument(
        "--allow-custom-cloud",
        action="store_true",
        default=None,
        help=f"accept a bundle of cloud 'custom' (a sandbox): tokens go to its hosts; or {ALLOW_CUSTOM_CLOUD_ENV}=1",
    )
    group.add_argument(
        "--allow-core-dumps",
        action="store_true",
        help="for debugging only: leave core dumps on (they would hold the key and tokens)",
    )


def _engine_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("pacing")
    group.add_argument("--write-rate", type=float, default=20.0, help="writes per second (Graph: 3,000 per 150 s)")
    group.add_argument("--write-burst", type=float, default=3000, help="burst of writes before the rate applies")
    group.add_argument("--concurrency", type=int, default=4, help="batches in flight")
    group.add_argument("--timeout", type=float, default=30.0, help="seconds per request")
    group.add_argument("--max-attempts", type=int, default=10, help="per user, for 5xx and connection errors")
    group.add_argument(
        "--max-retry-wait",
        type=float,
        default=120.0,
        metavar="SECONDS",
        help="the longest single pause, whatever Graph's Retry-After says; a longer one counts as a failed "
        "attempt of that batch (default: 120)",
    )


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="revoke-ops", description="Revoke Microsoft Entra users' sign-in sessions.")
    parser.add_argument("--version", action="version", version=f"revoke-ops {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)

    revoke = commands.add_parser("revoke", help="revoke users' sign-in sessions")
    targets = revoke.add_argument_group("targets")
    targets.add_argument("--user", action="append", default=[], help="object id or UPN (repeatable)")
    targets.add_argument(
        "--from-file",
        action="append",
        default=[],
        metavar="FILE",
        help="one user per line, or CSV with a header; '-' reads stdin",
    )
    targets.add_argument("--group", metavar="GROUP_ID", help="every transitive member of a group")
    targets.add_argument("--all-users", action="store_true", help="every user in the tenant")
    targets.add_argument("--filter", help="with --all-users: a Graph $filter on users")
    targets.add_argument("--exclude", action="append", default=[], help="never revoke this user (break-glass)")
    targets.add_argument("--exclude-file", action="append", default=[], metavar="FILE", help="exclusions, one per line")
    targets.add_argument("--include-external", action="store_true", help="also send external (guest, B2B) users")
    safety = revoke.add_argument_group("safety")
    safety.add_argument("--dry-run", action="store_true", help="show exactly what would be revoked; change nothing")
    safety.add_argument("--yes", action="store_true", help="do not ask for confirmation")
    safety.add_argument("--reason", default="", help="recorded in the journal")
    safety.add_argument("--journal", type=Path, help="journal path (default under ~/.local/state/revoke-ops)")
    safety.add_argument("--resume", type=Path, metavar="JOURNAL", help="continue an interrupted run")
    _credential_options(revoke)
    _engine_options(revoke)

    me = commands.add_parser("me", help="revoke the signed-in operator's own sessions (delegated)")
    _credential_options(me)

    verify = commands.add_parser("verify", help="confirm from Graph that a journal's revocations took effect")
    verify.add_argument("--journal", type=Path, required=True)
    _credential_options(verify)

    doctor = commands.add_parser("doctor", help="check the credentials end to end")
    doctor.add_argument(
        "--wait",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help="keep re-checking while granted consent is not yet in the token",
    )
    _credential_options(doctor)

    bundle = commands.add_parser("bundle", help="work with credentials bundles")
    bundle_commands = bundle.add_subparsers(dest="bundle_command", required=True)
    check = bundle_commands.add_parser("check", help="validate a bundle file against the bundle schema")
    check.add_argument("file", type=Path, help="the JSON of `pulumi stack output --json --show-secrets`")
    _trust_options(check)
    return parser


def _logging(args: argparse.Namespace) -> None:
    level = logging.DEBUG if args.debug else logging.INFO if args.verbose else logging.WARNING
    logging.basicConfig(level=level, stream=sys.stderr, format="revoke-ops: %(levelname)s: %(message)s")
    # Third-party libraries stay at WARNING even under --debug: their debug output can carry request
    # bodies (client assertions) and token responses.
    for name in ("azure", "msal", "httpx", "httpcore", "kiota_http", "kiota_abstractions", "urllib3", "asyncio"):
        logging.getLogger(name).setLevel(logging.WARNING)
    # azure-identity logs "get_token failed" with the service's answer before raising; the tool's own
    # message explains the failure (and what to do) once.
    logging.getLogger("azure.identity").setLevel(logging.ERROR)
    for handler in logging.getLogger().handlers:
        handler.addFilter(RedactingFilter())


def _identity(args: argparse.Namespace) -> Identity:
    bundle: Bundle | None = (
        load_bundle(args.credentials, allow_custom_cloud=args.allow_custom_cloud) if args.credentials else None
    )
    if args.delegated:

        def prompt(uri: str, code: str, expires: Any) -> None:
            print(
                f"To sign in, open {uri} and enter the code {code}. Only enter a code you asked for yourself: "
                "device-code phishing sends you codes like this one.",
                file=sys.stderr,
                flush=True,
            )

        return delegated_identity(
            args.delegated,
            bundle=bundle,
            client_id=args.client_id,
            tenant_id=args.tenant_id,
            cloud=args.cloud,
            prompt=prompt,
        )
    if args.key_vault_certificate:
        if args.certificate is not None or args.credential != "certificate":
            raise InputError("--key-vault-certificate replaces --certificate and --credential: pass only one of them")
        return key_vault_identity(
            args.key_vault_certificate,
            bundle=bundle,
            cloud=args.cloud,
            client_id=args.client_id,
            tenant_id=args.tenant_id,
        )
    if args.credential == "github-actions":
        return github_actions_identity(
            bundle=bundle, cloud=args.cloud, client_id=args.client_id, tenant_id=args.tenant_id
        )
    if args.credential != "certificate":
        return platform_identity(
            args.credential, bundle=bundle, cloud=args.cloud, client_id=args.client_id, tenant_id=args.tenant_id
        )
    return certificate_identity(
        bundle=bundle,
        certificate=args.certificate,
        cloud=args.cloud,
        tenant_id=args.tenant_id,
        client_id=args.client_id,
    )


class Progress:
    """A one-line progress bar on stderr (only on a terminal): rate, ETA, counts by outcome."""

    def __init__(self, total: int | None, enabled: bool) -> None:
        self.total = total
        self.enabled = enabled
        self.started = time.monotonic()
        self.shown = 0.0

    def __call__(self, summary: Summary) -> None:
        if not self.enabled:
            return
        now = time.monotonic()
        if now - self.shown < 0.2:
            return
        self.shown = now
        done = sum(summary.counts.values())
        rate = done / max(1e-6, now - self.started)
        left = summary.eta(self.total - done) if self.total else None  # from the pacer's budget
        eta = f" ETA {left:.0f}s" if left is not None else ""
        counts = " ".join(f"{k}={v}" for k, v in summary.counts.items() if v)
        of = f"/{self.total}" if self.total else ""
        sys.stderr.write(f"\r{done}{of} users {rate:.1f}/s{eta} {counts}\x1b[K")
        sys.stderr.flush()

    def close(self) -> None:
        if self.enabled:
            sys.stderr.write("\n")


def _ask(question: str, stdin_used: bool) -> bool:
    """Ask on the terminal (even when stdin carries targets); refuse when there is none."""
    if not stdin_used and sys.stdin.isatty():
        sys.stderr.write(question)
        sys.stderr.flush()
        return sys.stdin.readline().strip().lower() in ("y", "yes")
    try:
        with open("/dev/tty", "r+", encoding="utf-8") as tty:
            tty.write(question)
            tty.flush()
            return tty.readline().strip().lower() in ("y", "yes")
    except OSError:
        raise InputError("this run needs confirmation but there is no terminal to ask: add --yes") from None


def _table(rows: list[list[str]], header: list[str]) -> str:
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    lines = ["  ".join(str(c).ljust(w) for c, w in zip(header, widths, strict=True)).rstrip()]
    lines += ["  ".join(str(c).ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows]
    return "\n".join(lines)


async def _revoke(args: argparse.Namespace) -> int:
    from revoke_ops.run import Confirmation, RevokeRequest, revoke

    request = RevokeRequest(
        users=args.user,
        files=args.from_file,
        group=args.group,
        all_users=args.all_users,
        filter=args.filter,
        exclude=args.exclude,
        exclude_files=args.exclude_file,
        include_external=args.include_external,
        dry_run=args.dry_run,
        reason=args.reason,
        journal=args.journal,
        resume=args.resume,
        timeout=args.timeout,
        engine=EngineOptions(
            write_burst=args.write_burst,
            write_rate=args.write_rate,
            concurrency=args.concurrency,
            max_attempts=args.max_attempts,
            max_retry_wait=args.max_retry_wait,
            dry_run=args.dry_run,
        ),
    )
    identity = _identity(args)
    if not args.dry_run and not args.resume and request.journal is None:
        request.journal = default_journal_path(identity.tenant_id)  # named here so Ctrl-C can name it
    args.interrupt_note = _interrupt_note(request)
    progress = Progress(None, sys.stderr.isatty() and not args.dry_run)

    def confirm(confirmation: Confirmation) -> bool:
        for warning in confirmation.warnings:
            log.warning("%s", warning)
        progress.total = confirmation.targets
        if args.yes:
            return True
        return _ask(confirmation.question(), "-" in args.from_file)

    # A dry run streams what would be revoked to stdout as it is resolved (a million lines stay
    # out of memory); JSON output is one object whose wouldRevoke array is written incrementally.
    shown = 0

    def would(row: dict[str, Any]) -> None:
        nonlocal shown
        if args.output == "json":
            sys.stdout.write(('{\n  "wouldRevoke": [\n    ' if shown == 0 else ",\n    ") + json.dumps(row))
        else:
            if shown == 0:
                sys.stdout.write(f"{'WOULD REVOKE (id)':<36}  userPrincipalName\n")
            mark = "  privileged" if row["privileged"] else ""
            sys.stdout.write(f"{row['id'] or '':<36}  {row['userPrincipalName'] or row['target']}{mark}\n")
        shown += 1

    try:
        result = await revoke(
            identity, request, confirm=confirm, on_progress=progress, on_would_revoke=would if args.dry_run else None
        )
    finally:
        progress.close()
        await identity.close()
    summary = result.summary
    if args.output == "json":
        body = {
            "dryRun": args.dry_run,
            "summary": summary.to_json(),
            "journal": str(result.journal) if result.journal else None,
            "warnings": result.warnings,
            "notRevoked": summary.not_revoked,
        }
        if args.dry_run:
            if shown == 0:
                sys.stdout.write('{\n  "wouldRevoke": [')
            rest = json.dumps(body, indent=2)[1:]  # the remaining keys of the same object
            sys.stdout.write("\n  ],\n" + rest.lstrip("\n") + "\n")
        else:
            print(json.dumps(body, indent=2))
    else:
        if args.dry_run and shown == 0:
            print("nothing would be revoked")
        if summary.not_revoked:
            rows = [
                [
                    r["outcome"],
                    r.get("id") or "",
                    r.get("upn") or r["target"],
                    r.get("code") or "",
                    (r.get("reason") or "")[:80],
                ]
                for r in summary.not_revoked
            ]
            print(_table(rows, ["OUTCOME", "ID", "USER", "CODE", "REASON"]))
        counts = [[k, str(v)] for k, v in summary.counts.items()]
        if args.dry_run:
            counts.insert(0, ["would revoke", str(summary.would_revoke)])
        print(_table(counts, ["OUTCOME", "USERS"]))
        if result.journal:
            print(f"journal: {result.journal}")
    for warning in result.warnings:
        log.warning("%s", warning)
    if not args.dry_run and summary.counts[Outcome.REVOKED]:
        log.warning(
            "revocation invalidates refresh tokens and session cookies; access tokens already issued stay valid "
            "until they expire (60-90 min by default, longer for CAE-aware clients). It is not containment: also "
            "disable accounts and reset credentials where compromise is suspected."
        )
    return result.exit_code  # a dry run too: what the real run would exit with (not_found -> 1)


def _interrupt_note(request: Any) -> Any:
    """What to tell the operator after Ctrl-C: the journal to resume, or that nothing was started."""

    def note() -> str:
        if request.dry_run:
            return "a dry run: nothing was changed"
        path = request.resume or request.journal
        if path is None or not Path(path).exists():
            return "nothing was started (no journal was written): nothing was changed"
        return f"the journal {path} is intact: continue with `revoke-ops revoke --resume {path}`"

    return note


async def _me(args: argparse.Namespace) -> int:
    from revoke_ops.me import revoke_me

    if not args.delegated:
        raise InputError("`revoke-ops me` revokes the signed-in operator's sessions: add --delegated")
    identity = _identity(args)
    try:
        result = await revoke_me(identity)
    finally:
        await identity.close()
    if args.output == "json":
        print(json.dumps(result.to_json(), indent=2))
    else:
        print(
            f"your sign-in sessions were revoked ({result.user or 'you'}, {result.revoked_at}, request-id "
            f"{result.request_id or '-'}); `me` writes no journal: note this in your incident record"
        )
    return ExitCode.OK


async def _verify(args: argparse.Namespace) -> int:
    from revoke_ops.verify import verify

    identity = _identity(args)
    try:
        result = await verify(identity, args.journal)
    finally:
        await identity.close()
    if args.output == "json":
        print(json.dumps(result.to_json(), indent=2))
    else:
        rows = [
            [e["verdict"], e["id"], e.get("upn") or e.get("target") or "", e["journal"], e.get("reason", "")]
            for e in [*result.not_verified, *result.not_found]
        ]
        if rows:
            print(_table(rows, ["VERDICT", "ID", "USER", "JOURNAL", "REASON"]))
        print(
            f"verified: {len(result.verified)}; settled (journal said failed, but it happened): {len(result.settled)}; "
            f"not verified: {len(result.not_verified)}"
        )
        print(_table([[k, str(v)] for k, v in result.verdicts().items()], ["VERDICT", "USERS"]))
        note = result.incomplete_note()
        if note:
            print(note)
        print("every target is accounted for" if result.accounted_for else "NOT every target is accounted for")
    return result.exit_code


async def _doctor(args: argparse.Namespace) -> int:
    from revoke_ops.doctor import doctor

    identity = _identity(args)
    try:
        report = await doctor(identity, wait=args.wait)
    finally:
        await identity.close()
    if args.output == "json":
        print(json.dumps(report.to_json(), indent=2))
    else:
        print(_table([[c.status.upper(), c.name, c.detail] for c in report.checks], ["STATUS", "CHECK", "DETAIL"]))
    return report.exit_code


def _bundle_check(args: argparse.Namespace) -> int:
    from revoke_ops.credentials import bundle_certificate_problems

    bundle = load_bundle(args.file, allow_custom_cloud=args.allow_custom_cloud)
    problems, notes = bundle_certificate_problems(bundle)
    for note in notes:
        log.warning("%s", note)
    if problems:
        raise InputError("\n".join(f"{args.file}: {p}" for p in problems))
    key = "private key included" if bundle.private_key_pem else "no private key (supply --certificate)"
    print(
        f"{args.file}: valid bundle for tenant {bundle.tenant_id}, client {bundle.client_id}, "
        f"cloud {bundle.cloud}, mode {bundle.permission_mode}, {len(bundle.certificates)} certificate(s), {key}"
        + ("; key matches certificate, certificate valid and registered" if bundle.private_key_pem else "")
    )
    return ExitCode.OK


def main(argv: list[str] | None = None) -> int:
    """Run the command line; returns the process exit code."""
    args = _parser().parse_args(argv)
    if not getattr(args, "allow_core_dumps", False):
        harden_process()
    if hasattr(args, "debug"):
        _logging(args)
    debug = getattr(args, "debug", False)
    try:
        if args.command == "bundle":
            return _bundle_check(args)
        handler = {"revoke": _revoke, "me": _me, "verify": _verify, "doctor": _doctor}[args.command]
        return int(asyncio.run(handler(args)))
    except KeyboardInterrupt:
        note = getattr(args, "interrupt_note", None)
        print(f"revoke-ops: interrupted; {note() if note else 'nothing was changed'}", file=sys.stderr)
        return ExitCode.INTERRUPTED
    except InputError as err:
        _report(err, debug)
        return ExitCode.USAGE
    except AuthError as err:
        _report(err, debug)
        return ExitCode.AUTH
    except ServiceError as err:
        _report(err, debug)
        return ExitCode.SERVICE
    except RevokeOpsError as err:  # the rest of the root: mapped in revoke_ops.errors
        _report(err, debug)
        return ExitCode(exit_code_for(err))
    except Exception as err:  # noqa: BLE001  # last resort: one line, traceback only with --debug
        _report(err, debug, prefix=f"unexpected {type(err).__name__}: ")
        return ExitCode.NOT_ALL_REVOKED


def _report(err: BaseException, debug: bool, prefix: str = "") -> None:
    if debug:
        import traceback

        sys.stderr.write(redact("".join(traceback.format_exception(err))))
    print(f"revoke-ops: error: {prefix}{redact(str(err))}", file=sys.stderr)


if __name__ == "__main__":
    sys.exit(main())
