"""The ``revoke-ops`` command: thin handlers over :mod:`revoke_ops.run`, verify and doctor.

Size (~430 lines): main's mapping of exceptions, interrupts and signals to exit codes stays next to
the handlers it wraps.

Results go to stdout through :mod:`revoke_ops.output` (``--output table|json|jsonl``); logs, progress
and questions to stderr. Exit codes are :class:`ExitCode`, mapped from exceptions in one place
(:func:`revoke_ops.errors.exit_code_for`, applied in :func:`main`). The options are defined in
:mod:`revoke_ops.arguments`.
"""

from __future__ import annotations

import argparse
import asyncio
import enum
import logging
import os
import signal
import sys
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from revoke_ops.arguments import UsageError, parser, requested_output
from revoke_ops.bundle import Bundle, load_bundle
from revoke_ops.credentials import (
    Identity,
    certificate_identity,
    delegated_identity,
    github_actions_identity,
    key_vault_identity,
    platform_identity,
)
from revoke_ops.engine import EngineOptions
from revoke_ops.errors import InputError, RevokeOpsError, exit_code_for
from revoke_ops.hardening import harden_process
from revoke_ops.journal import default_journal_path, not_revoked
from revoke_ops.outcomes import Outcome
from revoke_ops.output import Progress, Writer, writer
from revoke_ops.redact import RedactingFilter, redact
from revoke_ops.request import how_to_continue, stdin_input

__all__ = ["ExitCode", "main"]

log = logging.getLogger("revoke_ops")


class ExitCode(enum.IntEnum):
    """Process exit codes."""

    OK = 0  # every target revoked, excluded or skipped as asked (a dry run: the real run would exit 0)
    NOT_ALL_REVOKED = 1  # some targets not revoked (not found, forbidden, failed); verify: not all accounted for
    USAGE = 2  # usage or input error: nothing changed
    AUTH = 3  # authentication or permission failure for the whole run: nothing changed
    SERVICE = 4  # Microsoft Graph kept failing (5xx, throttling, unreadable answers) before anything changed
    INTERRUPTED = 130  # Ctrl-C; the journal is intact
    TERMINATED = 143  # SIGTERM (a CI or SOAR timeout, `kill`): stopped as Ctrl-C stops, the journal intact
    BROKEN_PIPE = 141  # stdout closed early (`| head`) before the result was written, as after SIGPIPE


# -- handlers ------------------------------------------------------------------------------------
def _logging(args: argparse.Namespace) -> None:
    debug, verbose = getattr(args, "debug", False), getattr(args, "verbose", False)
    level = logging.DEBUG if debug else logging.INFO if verbose else logging.WARNING
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
            allow_custom_cloud=args.allow_custom_cloud,
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


def _ask(question: str, stdin_used: bool) -> bool:
    """Ask on the terminal (even when stdin carries targets); refuse when there is none.

    Ctrl-C at the question stops at once (asyncio would otherwise wait for the line).
    """
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        if not stdin_used and sys.stdin.isatty():
            sys.stderr.write(question)
            sys.stderr.flush()
            return sys.stdin.readline().strip().lower() in ("y", "yes")
        try:  # read and write separately: a tty is not seekable, so "r+" fails
            reader = open("/dev/tty", encoding="utf-8")  # noqa: SIM115  # closed below
            answer = open("/dev/tty", "w", encoding="utf-8")  # noqa: SIM115
        except OSError:
            raise InputError("this run needs confirmation but there is no terminal to ask: add --yes") from None
        with reader, answer:
            answer.write(question)
            answer.flush()
            return reader.readline().strip().lower() in ("y", "yes")
    finally:
        signal.signal(signal.SIGINT, previous)


def _request(args: argparse.Namespace) -> Any:
    from revoke_ops.contain import ContainRequest
    from revoke_ops.run import RevokeRequest

    return (ContainRequest if args.command == "contain" else RevokeRequest)(
        users=args.user,
        files=args.from_file,
        group=args.group,
        all_users=args.all_users,
        filter=args.filter,
        exclude=args.exclude,
        exclude_files=args.exclude_file,
        include_external=args.include_external,
        skip_inactive_days=args.skip_inactive_days,
        dry_run=args.dry_run,
        reason=args.reason or "",
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


async def _revoke(args: argparse.Namespace, out: Writer) -> int:
    """``revoke``, and ``contain`` (the same run with sign-in blocked first; :mod:`revoke_ops.contain`)."""
    from revoke_ops.contain import ContainResult, contain
    from revoke_ops.run import Confirmation, revoke

    containing = args.command == "contain"
    if containing and args.undo:
        from revoke_ops.contain_cli import undo_command

        return await undo_command(args, _identity(args), _ask, out)
    request = _request(args)
    identity = _identity(args)
    if not args.dry_run and not args.resume and request.journal is None:
        request.journal = default_journal_path(identity.tenant_id)  # named here so that Ctrl-C can name it
    args.interrupt_note = _interrupt_note(request)
    progress = Progress(None, bar=sys.stderr.isatty() and not args.dry_run, log_lines=args.verbose and not args.dry_run)
    settled: list[dict[str, Any]] = []  # a dry run's users not revoked (a real run's are in its journal)

    said: set[str] = set()  # each warning once, whether at the confirmation or at the end

    def confirm(confirmation: Confirmation) -> bool:
        for warning in confirmation.warnings:
            said.add(warning)
            log.warning("%s", warning)
        progress.total = confirmation.targets
        return True if args.yes else _ask(confirmation.question(), "-" in args.from_file)

    ticker = asyncio.create_task(progress.ticking())  # -v without a terminal: a line every 10 s
    try:
        result = await (contain if containing else revoke)(
            identity,
            request,
            confirm=confirm,
            on_progress=progress,
            on_would_revoke=out.would_revoke if args.dry_run else None,
            on_settled=settled.append if args.dry_run else None,
        )
    finally:
        ticker.cancel()
        progress.close()
        await identity.close()
    summary = result.summary
    listed = not_revoked(result.journal) if result.journal else settled
    args.exit_code = result.exit_code  # a dry run too: what the real run would exit with (not_found -> 1)
    contained = None
    if containing:
        from revoke_ops.contain_cli import json_fields, text_report

        assert isinstance(result, ContainResult)
        contained = (text_report(result), json_fields(result))
    out.revoke_result(
        dry_run=args.dry_run,
        summary=summary,
        journal=str(result.journal) if result.journal else None,
        warnings=result.warnings,
        not_revoked=listed,
        contain=contained,
    )
    for warning in result.warnings:
        if warning not in said:
            log.warning("%s", warning)
    if not summary.counts[Outcome.REVOKED] and summary.counts[Outcome.SKIPPED_EXTERNAL] and not args.dry_run:
        log.warning(
            "nothing was revoked: %d external user(s) skipped (their sessions live in their home tenant; "
            "--include-external sends them anyway)",
            summary.counts[Outcome.SKIPPED_EXTERNAL],
        )
    if not args.dry_run and summary.counts[Outcome.REVOKED] and not containing:
        log.warning(
            "revocation invalidates refresh tokens and session cookies; access tokens already issued stay valid "
            "until they expire (60-90 min by default, longer for CAE-aware clients). It is not containment: also "
            "disable accounts and reset credentials where compromise is suspected."
        )
    return result.exit_code


def _interrupt_note(request: Any) -> Any:
    """What to tell the operator after Ctrl-C: the journal to resume, or that nothing was started."""

    def note() -> str:
        if request.dry_run:
            return "a dry run: nothing was changed"
        path = request.resume or request.journal
        if path is None or not Path(path).exists():
            return "nothing was started (no journal was written): nothing was changed"
        how = how_to_continue(path, str(request.spec().get("command", "revoke")), stdin=stdin_input(request))
        return f"the journal {path} is intact: {how}"

    return note


async def _me(args: argparse.Namespace, out: Writer) -> int:
    from revoke_ops.me import revoke_me

    if not args.delegated:
        raise InputError("`revoke-ops me` revokes the signed-in operator's sessions: add --delegated")
    identity = _identity(args)
    try:
        result = await revoke_me(identity)
    finally:
        await identity.close()
    out.message(
        f"your sign-in sessions were revoked ({result.user or 'you'}, {result.revoked_at}, request-id "
        f"{result.request_id or '-'}); `me` writes no journal: note this in your incident record",
        **result.to_json(),
    )
    return ExitCode.OK


async def _verify(args: argparse.Namespace, out: Writer) -> int:
    from revoke_ops.verify import verify

    identity = _identity(args)
    try:
        result = await verify(identity, args.journal)
    finally:
        await identity.close()
    args.exit_code = result.exit_code
    out.verify_result(result)
    return result.exit_code


async def _doctor(args: argparse.Namespace, out: Writer) -> int:
    from revoke_ops.doctor import doctor

    identity = _identity(args)
    try:
        report = await doctor(identity, wait=args.wait)
    finally:
        await identity.close()
    args.exit_code = report.exit_code
    out.doctor_report(report)
    return report.exit_code


async def _bundle_check(args: argparse.Namespace, out: Writer) -> int:
    from revoke_ops.credentials import bundle_certificate_problems

    bundle = load_bundle(args.file, allow_custom_cloud=args.allow_custom_cloud)
    problems, notes = bundle_certificate_problems(bundle)
    for note in notes:
        log.warning("%s", note)
    if problems:
        raise InputError("\n".join(f"{args.file}: {p}" for p in problems))
    vault = next((c.key_vault_certificate for c in bundle.certificates if c.key_vault_certificate), None)
    if bundle.private_key_pem:
        key = "private key included"
    elif vault:
        key = f"no private key: Key Vault holds it (--key-vault-certificate {vault})"
    elif bundle.federated_credentials and not bundle.certificates:
        key = (
            f"no key at all: {len(bundle.federated_credentials)} federated credential(s) "
            "(--credential github-actions, azure-pipelines or workload-identity)"
        )
    else:
        key = "no private key (supply --certificate)"
    out.message(
        f"{args.file}: valid bundle for tenant {bundle.tenant_id}, client {bundle.client_id}, "
        f"cloud {bundle.cloud}, mode {bundle.permission_mode}, {len(bundle.certificates)} certificate(s), {key}"
        + ("; key matches certificate, certificate valid and registered" if bundle.private_key_pem else ""),
        valid=True,
    )
    return ExitCode.OK


HANDLERS = {
    "revoke": _revoke,
    "contain": _revoke,
    "me": _me,
    "verify": _verify,
    "doctor": _doctor,
    "bundle": _bundle_check,
}


def main(argv: list[str] | None = None) -> int:
    """Run the command line; returns the process exit code."""
    argv = sys.argv[1:] if argv is None else argv
    try:
        args = parser().parse_args(argv)
    except UsageError as err:
        err.parser.print_usage(sys.stderr)
        print(f"{err.parser.prog}: error: {err}", file=sys.stderr)
        writer(requested_output(argv)).error(f"usage: {err}", ExitCode.USAGE, "UsageError")
        return ExitCode.USAGE
    if not getattr(args, "allow_core_dumps", False):
        harden_process()
    debug = getattr(args, "debug", False)
    _logging(args)
    out = writer(getattr(args, "output", "table"))
    if threading.current_thread() is not threading.main_thread():
        # Signals belong to the main thread (signal.signal raises elsewhere): a caller running main()
        # in a worker thread keeps its own SIGTERM handling.
        return _main(args, out, _Run(), debug)
    previous = signal.getsignal(signal.SIGTERM)
    run = _stop_on_sigterm()
    try:
        return _main(args, out, run, debug)
    finally:
        signal.signal(signal.SIGTERM, previous)


@dataclass
class _Run:
    """The command's main task while it runs (what SIGTERM cancels), and whether SIGTERM came."""

    terminated: bool = False
    task: asyncio.Task[Any] | None = None
    loop: asyncio.AbstractEventLoop | None = None


def _main(args: argparse.Namespace, out: Writer, run: _Run, debug: bool) -> int:
    async def tracked() -> Any:
        run.task, run.loop = asyncio.current_task(), asyncio.get_running_loop()
        return await HANDLERS[args.command](args, out)

    try:
        code = int(asyncio.run(tracked()))
        sys.stdout.flush()  # here, so that a reader gone early is handled below, not at exit
        return code
    except BrokenPipeError:
        # `| head`: the reader has gone. Say nothing; keep Python from complaining at exit.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return getattr(args, "exit_code", ExitCode.BROKEN_PIPE)
    except (KeyboardInterrupt, asyncio.CancelledError) as err:
        terminated = run.terminated
        if isinstance(err, asyncio.CancelledError) and not terminated:
            raise
        note = getattr(args, "interrupt_note", None)
        how, code = ("interrupted", ExitCode.INTERRUPTED)
        if terminated:
            how, code = ("terminated (SIGTERM)", ExitCode.TERMINATED)
        message = f"{how}; {note() if note else 'nothing was changed'}"
        print(f"revoke-ops: {message}", file=sys.stderr)
        _error_out(out, message, code, "Terminated" if terminated else "Interrupted")
        return code
    except RevokeOpsError as err:  # every error raised on purpose: mapped in revoke_ops.errors
        code = ExitCode(exit_code_for(err))
        _report(err, debug)
        _error_out(out, redact(str(err)), code, getattr(err, "code", None) or type(err).__name__)
        return code
    except Exception as err:  # noqa: BLE001  # last resort: one line, traceback only with --debug
        _report(err, debug, prefix=f"unexpected {type(err).__name__}: ")
        _error_out(out, f"unexpected {type(err).__name__}: {redact(str(err))}", ExitCode.NOT_ALL_REVOKED, None)
        return ExitCode.NOT_ALL_REVOKED


def _stop_on_sigterm() -> _Run:
    """SIGTERM stops a run the way Ctrl-C does: the batch in flight is journaled, the journal's ``end``
    line says the run was interrupted and the message names the journal to resume (without this a
    `kill` or a CI/SOAR timeout ended the process with no end line and no word). Returns what the
    handler acts on, its ``terminated`` set when it happened.

    It relays to the SIGINT handler in place: asyncio's (cancels the run's task) or, at the
    confirmation question, Python's (raises at once). When SIGINT is ignored — a process started in
    the background by a non-interactive shell inherits that — there is none, and the run's task is
    cancelled directly, as asyncio does for Ctrl-C: never a KeyboardInterrupt at an arbitrary point
    of the engine (say, inside a journal write).
    """
    run = _Run()

    def on_sigterm(signum: int, frame: Any) -> None:
        run.terminated = True
        handler = signal.getsignal(signal.SIGINT)
        if callable(handler):
            handler(signal.SIGINT, frame)
        elif run.task is not None and run.loop is not None and not run.task.done():
            run.task.cancel()
            run.loop.call_soon_threadsafe(lambda: None)  # wake the loop to deliver the cancellation
        else:
            raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_sigterm)
    return run


def _error_out(out: Writer, message: str, code: int, error_code: str | None) -> None:
    try:
        out.error(message, code, error_code)
        out.out.flush()
    except BrokenPipeError:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())


def _report(err: BaseException, debug: bool, prefix: str = "") -> None:
    if debug:
        import traceback

        sys.stderr.write(redact("".join(traceback.format_exception(err))))
    print(f"revoke-ops: error: {prefix}{redact(str(err))}", file=sys.stderr)


if __name__ == "__main__":
    sys.exit(main())
