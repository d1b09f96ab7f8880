"""What ``revoke-ops contain`` adds to the revoke command's output, and ``contain --undo``."""

from __future__ import annotations

import argparse
import logging
from collections.abc import Callable
from typing import Any

from revoke_ops.contain import ContainResult
from revoke_ops.credentials import Identity
from revoke_ops.engine import EngineOptions
from revoke_ops.errors import InputError
from revoke_ops.output import Writer, table
from revoke_ops.undo import UNDETECTABLE, UndoPlan, undo_contain

__all__ = ["json_fields", "text_report", "undo_command"]

log = logging.getLogger(__name__)


def json_fields(result: ContainResult) -> dict[str, Any]:
    return {"contain": result.contain.to_json(), "notContained": result.contain.not_contained}


def text_report(result: ContainResult) -> str:
    parts = []
    rows = [
        [r["step"], r.get("id") or "", r.get("upn") or r.get("target") or "", (r.get("reason") or "")[:90]]
        for r in result.contain.not_contained
    ]
    if rows:
        parts.append(table(rows, ["NOT CONTAINED", "ID", "USER", "WHY"]))
    steps = [[k, str(v)] for k, v in sorted(result.contain.steps.items())]
    if steps:
        parts.append(table(steps, ["SIGN-IN", "USERS"]))
    bad = result.contain.not_blocked
    if bad:
        parts.append(
            f"{bad} user(s) were revoked but NOT blocked from signing in: they can sign in again with their "
            "credentials; act on each as the table says"
        )
    return "\n".join(parts)


async def undo_command(
    args: argparse.Namespace, identity: Identity, ask: Callable[[str, bool], bool], out: Writer
) -> int:
    if args.journal is None:
        raise InputError("contain --undo needs --journal JOURNAL: the journal of the contain run to undo")
    # Refused, never ignored: "--undo --exclude X" reads as "keep X disabled", and would re-enable it.
    refused = ("user", "from_file", "group", "all_users", "filter", "exclude", "exclude_file", "include_external")
    for option in (*refused, "skip_inactive_days", "reason", "resume", "dry_run"):
        if getattr(args, option, None) not in (None, False, [], ""):
            raise InputError(f"contain --undo takes only --journal (got --{option.replace('_', '-')})")

    def confirm(plan: UndoPlan) -> bool:
        return True if args.yes else ask(plan.question(), False)

    options = EngineOptions(write_burst=args.write_burst, write_rate=args.write_rate, max_attempts=args.max_attempts)
    try:
        result = await undo_contain(identity, args.journal, confirm=confirm, engine=options, http_timeout=args.timeout)
    finally:
        await identity.close()
    rows = [[r["step"], r["id"], r.get("upn") or "", (r.get("reason") or "")[:80]] for r in result.rows]
    text = table(rows, ["ACCOUNT", "ID", "USER", "WHY"]) + f"\nundo journal: {result.journal}"
    args.exit_code = result.exit_code
    out.message(text, undo=dict(result.steps), users=result.rows, journal=str(result.journal), note=UNDETECTABLE)
    log.warning("%s", UNDETECTABLE)
    return result.exit_code
