"""``contain --undo``: re-enable exactly the accounts one contain run disabled.

From the run's journal, the accounts whose disable line says ``disabled`` with a before-state of
enabled, and those a disable was sent for while enabled (the ``disable-attempt`` line, written before
the PATCH) whose answer was never journaled or read (a kill, a lost answer): never one the run found
disabled before any attempt, skipped, or that Graph refused. An account the run disabled whose state
before it could not be read is not enabled (it may have been disabled already) but listed
(``before_unknown``, exit 1) for the operator to check. Each is read again first and left
alone when it is no longer disabled, so an undo can be run again (after a kill, or twice); each
keeps its own journal beside the run's (``J.undo.jsonl``, ``J.undo-2.jsonl``, …). Graph offers no
conditional update for users (no ETag/If-Match on user PATCH): an account someone else disabled on
purpose since the run cannot be told apart, and the confirmation says so.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from revoke_ops import __version__
from revoke_ops.contain import Step, StepRecord, patch_accounts
from revoke_ops.contain_engine import read_accounts
from revoke_ops.credentials import Identity
from revoke_ops.engine import EngineOptions
from revoke_ops.errors import InputError
from revoke_ops.graph import GraphSession
from revoke_ops.journal import Journal, now_iso, read_journal
from revoke_ops.pacer import Pacer
from revoke_ops.retry import RealClock

__all__ = ["UNDETECTABLE", "UndoPlan", "UndoResult", "undo_contain"]

log = logging.getLogger(__name__)

UNDETECTABLE = (
    "a change made by someone else since the run (an account disabled on purpose in between) cannot be "
    "detected: Graph offers no conditional update for users"
)
OK = frozenset({Step.ENABLED, Step.NOT_DISABLED_NOW})
#: failed disables whose PATCH may still have happened (no answer read)
UNANSWERED = frozenset({"UnreadableResponse", "Retries"})
SHOWN = 20  # accounts named in the confirmation


@dataclass(frozen=True)
class UndoPlan:
    """What the operator confirms before anything is re-enabled."""

    tenant_id: str
    journal: Path
    to_enable: int
    no_longer_disabled: int
    #: accounts the run disabled whose state before it is unknown: left disabled, listed
    before_unknown: int = 0
    #: the accounts to re-enable (UPN, else id), so the operator sees who, not only how many
    accounts: tuple[str, ...] = ()

    def question(self) -> str:
        unknown = (
            f"; {self.before_unknown} it disabled whose state before the run is unknown stay disabled and are "
            "listed for you to check"
            if self.before_unknown
            else ""
        )
        shown = ", ".join(self.accounts[:SHOWN])
        more = f" and {len(self.accounts) - SHOWN} more" if len(self.accounts) > SHOWN else ""
        who = f": {shown}{more}" if shown else ""
        return (
            f"Re-enable {self.to_enable} account(s) the contain run {self.journal} disabled in tenant {self.tenant_id}"
            f"{who} ({self.no_longer_disabled} already enabled again are left alone{unknown})? Note: {UNDETECTABLE}. "
            "[y/N] "
        )


@dataclass
class UndoResult:
    steps: Counter[str] = field(default_factory=Counter)
    rows: list[dict[str, Any]] = field(default_factory=list)
    journal: Path | None = None
    warnings: list[str] = field(default_factory=list)

    @property
    def exit_code(self) -> int:
        return 1 if any(Step(k) not in OK for k, v in self.steps.items() if v) else 0


def _candidates(path: Path, tenant_id: str) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The accounts to re-enable, and those the run disabled whose state before it is unknown."""
    state = read_journal(path)
    spec = state.header.get("spec") or {}
    if spec.get("command") != "contain":
        raise InputError(f"--undo --journal {path}: not the journal of a `revoke-ops contain` run (nothing to undo)")
    if state.header.get("tenant") != tenant_id:
        raise InputError(
            f"the journal {path} is for tenant {state.header.get('tenant')}, these credentials for {tenant_id}"
        )
    records = [r for r in state.disables.values() if r.get("step") == Step.DISABLED and r.get("before") is True]
    # A disable sent while the account was enabled whose answer never reached the journal (the run was
    # killed, or the answer was lost): the account was disabled by this run unless Graph said why not.
    for ref in sorted(state.attempted_enabled):
        line = state.disables.get(ref)
        if line is None or line.get("step") == Step.ALREADY_DISABLED or line.get("code") in UNANSWERED:
            records.append({"id": ref, "upn": (line or {}).get("upn"), "step": str(Step.DISABLED), "before": True})
    unknown = [r for r in state.disables.values() if r.get("step") == Step.DISABLED and r.get("before") is None]
    return records, [r for r in unknown if r.get("id") not in {c["id"] for c in records}]


async def undo_contain(
    identity: Identity,
    journal: Path,
    *,
    confirm: Callable[[UndoPlan], bool] | None = None,
    engine: EngineOptions | None = None,
    http_timeout: float = 30.0,
    undo_journal: Path | None = None,
) -> UndoResult:
    """Re-enable the accounts the contain run recorded in ``journal`` as disabled by it.

    :param confirm: asked with an :class:`UndoPlan`; False stops before anything changes.
    :raises InputError: not a contain journal, another tenant, or stopped at the confirmation.
    """
    options = engine or EngineOptions()
    records, unknown = _candidates(journal, identity.tenant_id)
    result = UndoResult(warnings=[UNDETECTABLE])
    async with GraphSession(identity, timeout=http_timeout) as session:
        accounts = await read_accounts(session, [r["id"] for r in records])
        states = {ref: enabled for ref, (enabled, _synced) in accounts.items()}
        to_enable = [r for r in records if states.get(r["id"]) is False]
        again = sum(1 for r in records if states.get(r["id"]))
        names = tuple(str(r.get("upn") or r["id"]) for r in to_enable)
        plan = UndoPlan(identity.tenant_id, journal, len(to_enable), again, len(unknown), names)
        if confirm is not None and to_enable and not confirm(plan):
            raise InputError("stopped at the confirmation: nothing was changed")
        path = undo_journal or _undo_journal_path(journal)
        out = Journal(path)
        result.journal = path
        try:
            out.header(
                tool=f"revoke-ops {__version__}",
                tenant=identity.tenant_id,
                clientId=identity.client_id,
                credential=identity.kind,
                command="contain-undo",
                undoes=str(journal),
                note=UNDETECTABLE,
            )
            for record in records:
                state = states.get(record["id"])
                if state is not False:
                    step = Step.NOT_DISABLED_NOW if state else Step.FAILED
                    why = "enabled again since the run: left alone" if state else "its state could not be read"
                    _row(result, out, record, StepRecord(record["id"], step, reason=why))
            for record in unknown:
                why = (
                    "left disabled: this run disabled it, but its state before the run could not be read (it may "
                    "have been disabled already); check it and enable it by hand if it was enabled"
                )
                _row(result, out, record, StepRecord(record["id"], Step.BEFORE_UNKNOWN, reason=why))
            pacer = Pacer(RealClock(), options.write_burst, options.write_rate)
            for start in range(0, len(to_enable), 20):
                chunk = to_enable[start : start + 20]
                sent = await patch_accounts(session, pacer, [r["id"] for r in chunk], True, policy=options.policy())
                for record in chunk:
                    _row(result, out, record, sent[record["id"]])
            out.end({"steps": dict(result.steps)}, completed=True)
        finally:
            out.close()
    return result


def _undo_journal_path(journal: Path) -> Path:
    """``J.undo.jsonl``, else ``J.undo-2.jsonl``, …: an undo run again (twice, or after a kill) keeps its own."""
    stem = journal.name.removesuffix(".jsonl") + ".undo"
    path, n = journal.with_name(stem + ".jsonl"), 1
    while path.exists() or path.is_symlink():
        n += 1
        path = journal.with_name(f"{stem}-{n}.jsonl")
    return path


def _row(result: UndoResult, journal: Journal, record: dict[str, Any], step: StepRecord) -> None:
    result.steps[str(step.step)] += 1
    row = {
        "id": record["id"],
        "upn": record.get("upn"),
        "step": str(step.step),
        "code": step.code,
        "status": step.status,
        "reason": step.reason,
        "requestId": step.request_id,
        "clientRequestId": step.client_request_id,
    }
    row = {k: v for k, v in row.items() if v is not None}
    result.rows.append(row)
    journal.write({"type": "enable", "at": now_iso(), **row})
