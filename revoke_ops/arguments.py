"""The ``revoke-ops`` command line's options: one parser, shared options on parent parsers.

Every option that takes one value refuses to be given twice (a usage error naming it: "the last
one wins" once revoked the wrong group), abbreviations are off (``--all`` must not mean
``--all-users`` in a tool that changes tenants), and ``--help`` shows the defaults. argparse's
complaints are raised as :class:`UsageError` so the command can answer in the format asked for.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any, NoReturn

from revoke_ops import __version__
from revoke_ops.bundle import ALLOW_CUSTOM_CLOUD_ENV
from revoke_ops.targets import GUID

__all__ = ["UsageError", "parser", "requested_output"]


class UsageError(Exception):
    """argparse's complaint, raised instead of exiting so that main() can answer in the chosen format."""

    def __init__(self, parser: argparse.ArgumentParser, message: str) -> None:
        super().__init__(message)
        self.parser = parser


class _Parser(argparse.ArgumentParser):
    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("allow_abbrev", False)  # `--all` must not mean `--all-users`
        kwargs.setdefault("formatter_class", _Help)
        super().__init__(**kwargs)
        self.register("action", None, _Once)
        self.register("action", "store", _Once)

    def error(self, message: str) -> NoReturn:
        raise UsageError(self, message)


class _Help(argparse.ArgumentDefaultsHelpFormatter):
    """Shows defaults that say something (not None, False or empty)."""

    def _get_help_string(self, action: argparse.Action) -> str:
        if action.default in (None, False, [], "", argparse.SUPPRESS):
            return action.help or ""
        return super()._get_help_string(action) or ""


class _Once(argparse.Action):
    """A single-value option given twice is a usage error naming it (never "the last one wins")."""

    def __call__(self, parser: argparse.ArgumentParser, namespace: Any, values: Any, option: str | None = None) -> None:
        given: dict[str, Any] = namespace.__dict__.setdefault("_given", {})
        if self.dest in given:
            hint = " (one group per run; run again for another)" if self.dest == "group" else ""
            parser.error(f"{option} given twice ({given[self.dest]!r} and {values!r}): it takes one value{hint}")
        given[self.dest] = values
        setattr(namespace, self.dest, values)


def _group_id(value: str) -> str:
    if GUID.match(value.strip()):
        return value.strip()
    raise argparse.ArgumentTypeError(
        f"takes the group's object id (a GUID), not a name like {value!r}: look it up in the Entra admin center "
        f"or with `az ad group show --group '{value}' --query id`"
    )


# -- options shared by the commands (parent parsers) ----------------------------------------
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
        help="how to sign in app-only",
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
    common = parser.add_argument_group("output")
    common.add_argument(
        "-o", "--output", choices=["table", "json", "jsonl"], default="table", help="result format on stdout"
    )
    common.add_argument("--debug", action="store_true", help="debug logs and tracebacks (never tokens or keys)")
    common.add_argument("-v", "--verbose", action="store_true", help="informational logs; progress every 10 s")


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
        "attempt of that batch",
    )


def _run_options(parser: argparse.ArgumentParser) -> None:
    """The targets and safety options of a run: ``revoke`` and ``contain`` take the same."""
    targets = parser.add_argument_group("targets")
    targets.add_argument("--user", action="append", default=[], help="object id or UPN (repeatable)")
    targets.add_argument(
        "--from-file",
        action="append",
        default=[],
        metavar="FILE",
        help="one user per line, or CSV with a header (Entra's bulk template too); '-' reads stdin (repeatable)",
    )
    targets.add_argument(
        "--group", metavar="GROUP_ID", type=_group_id, help="every transitive member of a group (its object id)"
    )
    targets.add_argument("--all-users", action="store_true", help="every user in the tenant")
    targets.add_argument("--filter", help="with --all-users: a Graph $filter on users")
    targets.add_argument("--exclude", action="append", default=[], help="never revoke this user (repeatable)")
    targets.add_argument(
        "--exclude-file", action="append", default=[], metavar="FILE", help="exclusions, one per line (repeatable)"
    )
    targets.add_argument("--include-external", action="store_true", help="also send external (guest, B2B) users")
    targets.add_argument(
        "--skip-inactive-days",
        type=int,
        metavar="N",
        help="do NOT revoke users without sign-in activity (interactive or not) for more than N days, or never "
        "signed in; journaled as skipped_inactive, privileged users never skipped. With --all-users (not with "
        "--filter), --group or a file run (which then always reads the tenant's activity windows up to N days). "
        "Off by default: nobody is skipped (docs/activity-ordering.md)",
    )
    safety = parser.add_argument_group("safety")
    safety.add_argument("--dry-run", action="store_true", help="show exactly what would be revoked; change nothing")
    safety.add_argument("-y", "--yes", action="store_true", help="do not ask for confirmation")
    safety.add_argument("--reason", help="recorded in the journal")
    safety.add_argument(
        "--journal", type=Path, help="journal path (default: ~/.local/state/revoke-ops/journals/<time>-<tenant>.jsonl)"
    )
    safety.add_argument("--resume", type=Path, metavar="JOURNAL", help="continue an interrupted run")


def parser() -> argparse.ArgumentParser:
    """The whole command line: subcommands revoke, contain, me, verify, doctor, bundle check."""
    output = _Parser(add_help=False)
    _credential_options(output)
    pacing = _Parser(add_help=False)
    _engine_options(pacing)

    top = _Parser(prog="revoke-ops", description="Revoke Microsoft Entra users' sign-in sessions.")
    top.add_argument("--version", action="version", version=f"revoke-ops {__version__}")
    commands = top.add_subparsers(dest="command", required=True)

    revoke = commands.add_parser("revoke", help="revoke users' sign-in sessions", parents=[output, pacing])
    _run_options(revoke)

    contain = commands.add_parser(
        "contain",
        help="block users' sign-in (accountEnabled false), then revoke their sessions; --undo re-enables them",
        parents=[output, pacing],
    )
    _run_options(contain)
    contain.add_argument(
        "--undo",
        action="store_true",
        help="with --journal J: re-enable exactly the accounts that contain run disabled (and were enabled before)",
    )

    commands.add_parser("me", help="revoke the signed-in operator's own sessions (delegated)", parents=[output])

    verify = commands.add_parser(
        "verify", help="confirm from Graph that a journal's revocations took effect", parents=[output]
    )
    verify.add_argument(
        "--journal", type=Path, required=True, help="the journal of the run to verify (`revoke --journal`)"
    )

    doctor = commands.add_parser("doctor", help="check the credentials end to end", parents=[output])
    doctor.add_argument(
        "--wait",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help="keep re-checking while granted consent is not yet in the token",
    )

    bundle = commands.add_parser("bundle", help="work with credentials bundles")
    bundle_commands = bundle.add_subparsers(dest="bundle_command", required=True)
    check = bundle_commands.add_parser("check", help="validate a bundle file against the bundle schema")
    check.add_argument("file", type=Path, help="the JSON of `pulumi stack output --json --show-secrets`")
    _trust_options(check)
    check.add_argument(
        "-o", "--output", choices=["table", "json", "jsonl"], default="table", help="result format on stdout"
    )
    return top


def requested_output(argv: list[str]) -> str:
    """The --output asked for, read before parsing succeeds (a usage error answers in it too)."""
    for n, arg in enumerate(argv):
        if arg in ("-o", "--output") and n + 1 < len(argv):
            return argv[n + 1] if argv[n + 1] in ("json", "jsonl") else "table"
        if arg.startswith("--output="):
            return arg.partition("=")[2] if arg.partition("=")[2] in ("json", "jsonl") else "table"
    return "table"
