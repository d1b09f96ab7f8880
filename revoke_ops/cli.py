"""The ``revoke-ops`` command.

This increment ships ``revoke-ops bundle check FILE``; the revocation commands come with the
operations issue.
"""

from __future__ import annotations

import argparse
import enum
import sys
from pathlib import Path

from revoke_ops import __version__
from revoke_ops.bundle import load_bundle
from revoke_ops.errors import InputError, RevokeOpsError

__all__ = ["ExitCode", "main"]


class ExitCode(enum.IntEnum):
    """Process exit codes, mapped from exceptions in one place (:func:`main`)."""

    OK = 0
    NOT_ALL_REVOKED = 1
    USAGE = 2
    AUTH = 3
    INTERRUPTED = 130


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="revoke-ops", description="Revoke Microsoft Entra users' sign-in sessions.")
    parser.add_argument("--version", action="version", version=f"revoke-ops {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)
    bundle = commands.add_parser("bundle", help="work with credentials bundles")
    bundle_commands = bundle.add_subparsers(dest="bundle_command", required=True)
    check = bundle_commands.add_parser("check", help="validate a bundle file against the bundle schema")
    check.add_argument("file", type=Path, help="the JSON of `pulumi stack output --json --show-secrets`")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the command line; returns the process exit code."""
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        if args.command == "bundle" and args.bundle_command == "check":
            bundle = load_bundle(args.file)
            key = "private key included" if bundle.private_key_pem else "no private key (supply --certificate)"
            print(
                f"{args.file}: valid bundle for tenant {bundle.tenant_id}, client {bundle.client_id}, "
                f"cloud {bundle.cloud}, mode {bundle.permission_mode}, "
                f"{len(bundle.certificates)} certificate(s), {key}"
            )
            return ExitCode.OK
    except InputError as err:
        print(f"revoke-ops: error: {err}", file=sys.stderr)
        return ExitCode.USAGE
    except RevokeOpsError as err:
        print(f"revoke-ops: error: {err}", file=sys.stderr)
        return ExitCode.NOT_ALL_REVOKED
    except KeyboardInterrupt:
        return ExitCode.INTERRUPTED
    parser.error("unknown command")
    return ExitCode.USAGE  # pragma: no cover  # parser.error exits


if __name__ == "__main__":
    sys.exit(main())
