"""``revoke-ops verify``: confirm from Graph that each revocation took effect, and account for every target.

For every user the journal calls ``revoked`` (or ``failed``: the change may have happened), read
``signInSessionsValidFromDateTime`` (returned only with ``$select``) and check it is not older than
the moment the revocation was sent. Then give each target a verdict:

- ``accounted``: revoked and confirmed, ``failed`` in the journal but confirmed (settled), or
  excluded / skipped as external, as asked;
- ``not_revoked``: the journal says revoked, but Graph shows sessions valid from before (or the
  user could not be read);
- ``failed``: the journal says failed or forbidden, and Graph does not show it happened;
- ``not_found``: no such user in the tenant;
- ``incomplete``: the run never finished (interrupted or killed): targets were never attempted;
- ``not_disabled`` (contain journals only): revoked, but ``accountEnabled`` is not false although the
  run disabled the account (or found it disabled): re-enabled since (``contain --undo``, or someone).

The exit code is 0 only when every target is accounted for.
"""

from __future__ import annotations

import enum
import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from revoke_ops.contain_engine import CONTAINED
from revoke_ops.credentials import Identity, token_claims
from revoke_ops.errors import InputError
from revoke_ops.facts import parse_rfc3339
from revoke_ops.graph import BatchItem, GraphSession, user_path
from revoke_ops.journal import JournalState, read_journal
from revoke_ops.outcomes import Outcome
from revoke_ops.resolve import Capabilities

__all__ = ["Verdict", "VerifyResult", "verify"]

log = logging.getLogger(__name__)

#: How far the client's clock may be ahead of Graph's when comparing timestamps.
DEFAULT_SKEW = timedelta(seconds=120)


class Verdict(enum.StrEnum):
    ACCOUNTED = "accounted"
    NOT_REVOKED = "not_revoked"
    FAILED = "failed"
    NOT_FOUND = "not_found"
    INCOMPLETE = "incomplete"
    NOT_DISABLED = "not_disabled"


def _parse(value: str) -> datetime:
    return parse_rfc3339(value)


@dataclass
class VerifyResult:
    journal: Path | None = None
    verified: list[dict[str, Any]] = field(default_factory=list)
    settled: list[dict[str, Any]] = field(default_factory=list)  # `failed` in the journal, but it did happen
    not_verified: list[dict[str, Any]] = field(default_factory=list)  # verdict not_revoked or failed
    not_found: list[dict[str, Any]] = field(default_factory=list)
    as_asked: int = 0  # excluded or skipped as external
    #: the run wrote no completed end line (interrupted, killed, or still cut short)
    incomplete: bool = False
    never_attempted: int | None = None  # how many targets, when the journal knows how many there were
    torn_line: int | None = None
    contain: bool = False  # a `revoke-ops contain` journal: accounts it disabled must still be disabled

    def verdicts(self) -> dict[str, int]:
        not_revoked = sum(1 for e in self.not_verified if e["verdict"] == Verdict.NOT_REVOKED)
        not_disabled = sum(1 for e in self.not_verified if e["verdict"] == Verdict.NOT_DISABLED)
        counts: dict[str, int] = {
            Verdict.ACCOUNTED: len(self.verified) + len(self.settled) + self.as_asked,
            Verdict.NOT_REVOKED: not_revoked,
            Verdict.FAILED: len(self.not_verified) - not_revoked - not_disabled,
            Verdict.NOT_FOUND: len(self.not_found),
            Verdict.INCOMPLETE: (self.never_attempted or 0) if self.incomplete else 0,
        }
        if self.contain:
            counts[Verdict.NOT_DISABLED] = not_disabled
        return counts

    @property
    def accounted_for(self) -> bool:
        return not (self.not_verified or self.not_found or self.incomplete)

    @property
    def exit_code(self) -> int:
        return 0 if self.accounted_for else 1

    def incomplete_note(self) -> str | None:
        if not self.incomplete:
            return None
        count = (
            f"{self.never_attempted} target(s)" if self.never_attempted is not None else "an unknown number of targets"
        )
        return (
            f"incomplete: the run did not finish (interrupted or killed); {count} never attempted: "
            f"resume it with `revoke-ops revoke --resume {self.journal}`"
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "accountedFor": self.accounted_for,
            "verdicts": self.verdicts(),
            "verified": len(self.verified),
            "settled": len(self.settled),
            "notVerified": self.not_verified,
            "notFound": self.not_found,
            "incomplete": self.incomplete_note(),
            "neverAttempted": self.never_attempted if self.incomplete else 0,
        }


def _never_attempted(state: JournalState) -> int | None:
    """Targets without an outcome, when the journal knows how many there were (else None)."""
    estimate = state.header.get("estimate")
    if not isinstance(estimate, int):
        return None
    return max(0, estimate - len(state.outcomes))


async def verify(identity: Identity, journal: Path, skew: timedelta = DEFAULT_SKEW) -> VerifyResult:
    """Check every revoked (or possibly revoked) user of a journal against Graph; give every target a verdict.

    :raises InputError: unreadable or damaged journal, or one from another tenant.
    :raises MissingPermissionError: without User.Read.All.
    """
    state = read_journal(journal)
    if state.header.get("tenant") != identity.tenant_id:
        raise InputError(f"the journal {journal} is for tenant {state.header.get('tenant')}, not {identity.tenant_id}")
    token = await identity.token()
    caps = Capabilities.from_claims(token_claims(token.token))
    caps.require("verify", caps.read_users, "User.Read.All")
    result = VerifyResult(journal=journal, torn_line=state.torn_line)
    if state.torn_line is not None:
        log.warning(
            "%s:%d: the journal's last line is incomplete (a crash while writing it): ignored", journal, state.torn_line
        )
    result.incomplete = state.completed is not True
    result.contain = (state.header.get("spec") or {}).get("command") == "contain"
    disabled = {i for i, r in state.disables.items() if r.get("step") in CONTAINED}
    fields = "id,signInSessionsValidFromDateTime" + (",accountEnabled" if result.contain else "")
    result.never_attempted = _never_attempted(state)
    todo = []
    for record in state.outcomes.values():
        outcome = record["outcome"]
        entry = {"id": record.get("id"), "upn": record.get("upn"), "target": record.get("target"), "journal": outcome}
        if outcome in (Outcome.EXCLUDED, Outcome.SKIPPED_EXTERNAL):
            result.as_asked += 1
        elif outcome == Outcome.NOT_FOUND:
            result.not_found.append({**entry, "verdict": Verdict.NOT_FOUND})
        elif outcome in (Outcome.REVOKED, Outcome.FAILED) and record.get("id") and record.get("sentAt"):
            todo.append(record)
        else:  # forbidden, or failed before anything was sent
            reason = record.get("reason") or record.get("code") or outcome
            result.not_verified.append({**entry, "verdict": Verdict.FAILED, "reason": reason})
    async with GraphSession(identity) as session:
        for start in range(0, len(todo), 20):
            chunk = todo[start : start + 20]
            items = [
                BatchItem(str(n + 1), "GET", f"{user_path(r['id'])}?$select={fields}") for n, r in enumerate(chunk)
            ]
            answers = await session.batch_read(items)  # retried per item under the READ policy
            for n, record in enumerate(chunk):
                _judge(result, record, answers.get(str(n + 1), {}), skew, expect_disabled=record["id"] in disabled)
    return result


def _judge(
    result: VerifyResult, record: dict[str, Any], answer: dict[str, Any], skew: timedelta, *, expect_disabled: bool
) -> None:
    raw = answer.get("body")
    body: dict[str, Any] = raw if isinstance(raw, dict) else {}
    valid_from = body.get("signInSessionsValidFromDateTime") if answer.get("status") == 200 else None
    entry = {
        "id": record["id"],
        "upn": record.get("upn"),
        "target": record.get("target"),
        "journal": record["outcome"],
        "sentAt": record["sentAt"],
        "signInSessionsValidFrom": valid_from,
    }
    if valid_from and _parse(valid_from) >= _parse(record["sentAt"]).replace(microsecond=0) - skew:
        if expect_disabled and body.get("accountEnabled") is not False:
            entry["verdict"] = Verdict.NOT_DISABLED
            entry["reason"] = "accountEnabled is not false: re-enabled since the run (contain --undo, or someone else)"
            result.not_verified.append(entry)
            return
        (result.verified if record["outcome"] == Outcome.REVOKED else result.settled).append(entry)
        return
    entry["verdict"] = Verdict.NOT_REVOKED if record["outcome"] == Outcome.REVOKED else Verdict.FAILED
    entry["reason"] = "not readable" if not valid_from else "sessions valid from before the revocation"
    result.not_verified.append(entry)
