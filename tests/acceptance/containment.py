"""The acceptance suite's `revoke-ops contain` steps against a real tenant (issue 14), opt-in.

- ``REVOKE_ACC_CONTAIN=1``: contain the disposable cloud-only test user — the journal must say
  ``disabled`` (or ``already_disabled``) and ``revoked``, Graph must read ``accountEnabled`` false
  and a moved ``signInSessionsValidFromDateTime``, ``verify`` must agree — then ``contain --undo``
  and Graph must read the account enabled again.
- ``REVOKE_ACC_SYNCED_USER_ID``: contain a disposable user synchronised from on-premises AD. Graph
  refuses cloud writes to such users ("Unable to update the specified properties for on-premises
  mastered Directory Sync objects", microsoft-graph-docs#7301): our outcome must be
  ``on_premises_synced`` from Graph's real answer (its status and code are shown), the user still
  revoked (exit 1: not contained), the account unchanged. If, against expectations, Graph did
  disable it, the step undoes that and fails saying so.

Every `contain` run writes its own journal; an account a step disabled is re-enabled by
``contain --undo`` before the step ends, whatever else failed.
"""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tests.acceptance.settings import AcceptanceError

if TYPE_CHECKING:
    from tests.acceptance.harness import Lifecycle


def journal_rows(path: Path) -> tuple[dict[str, dict[str, Any]], dict[str, str]]:
    """Each user's ``disable`` record and revocation outcome in a contain journal (ids lower-cased)."""
    disables: dict[str, dict[str, Any]] = {}
    outcomes: dict[str, str] = {}
    if not path.exists():
        return disables, outcomes
    for line in path.read_text("utf-8").splitlines():
        if not line.strip():
            continue
        record = json.loads(line)
        user = str(record.get("id") or "").lower()
        if record.get("type") == "disable":
            disables[user] = record
        elif record.get("type") == "outcome":
            outcomes[user] = str(record.get("outcome"))
    return disables, outcomes


def _await_enabled(lc: Lifecycle, step: str, user: str, wanted: bool) -> None:
    """Poll Graph until the account reads ``wanted`` (or the settle time is up)."""
    deadline = time.monotonic() + lc.settings.settle
    seen = lc.read_enabled(lc._bundle, user)
    while seen is not wanted and time.monotonic() < deadline:
        time.sleep(lc.poll)
        seen = lc.read_enabled(lc._bundle, user)
    if seen is not wanted:
        raise AcceptanceError(
            f"{step}: Graph reads accountEnabled {seen} for {user} after {lc.settings.settle:g} s, not {wanted}"
        )


def _undo_if_disabled(lc: Lifecycle, step: str, user: str, journal: Path) -> bool:
    """``contain --undo`` when the journal says this run disabled the user; whether it did."""
    disables, _ = journal_rows(journal)
    if (disables.get(user.lower()) or {}).get("step") != "disabled":
        return False
    lc._ops(
        f"{step} (undo)", "contain", "--undo", "--journal", str(journal), "--credentials", str(lc.bundle_path), "--yes"
    )
    _await_enabled(lc, f"{step} (undo)", user, True)
    return True


def contain_cloud_user(lc: Lifecycle) -> str:
    step, user = "contain a cloud-only user", lc.settings.user_id
    journal = lc.workdir / "journal-contain-cloud.jsonl"
    before = lc.valid_from_before(user)
    sent = datetime.now(UTC)
    failure: AcceptanceError | None = None
    found: Any = None
    after: datetime | None = None
    try:
        lc.bulk_run(step, "contain", "--user", user, journal=journal)
        disables, outcomes = journal_rows(journal)
        found = (disables.get(user.lower()) or {}).get("step")
        if found not in ("disabled", "already_disabled") or outcomes.get(user.lower()) != "revoked":
            raise AcceptanceError(
                f"{step}: the journal says {found!r} / {outcomes.get(user.lower())!r}, not disabled / revoked"
            )
        _await_enabled(lc, step, user, False)
        after = lc._await_moved(step, before, sent, user)
        lc._ops(step, "verify", "--credentials", str(lc.bundle_path), "--journal", str(journal))
    except AcceptanceError as err:
        failure = err
    finally:
        undone = _undo_if_disabled(lc, step, user, journal)
    if failure is not None:
        raise AcceptanceError(f"{failure}{' (the account was re-enabled)' if undone else ''}")
    return (
        f"{found}, revoked ({before} -> {after}), verify ok; {'undone: enabled again' if undone else 'left as found'}"
    )


def contain_synced_user(lc: Lifecycle) -> str:
    step = "contain a synced user"
    user = str(lc.settings.synced_user_id)
    journal = lc.workdir / "journal-contain-synced.jsonl"
    before = lc.valid_from_before(user)
    sent = datetime.now(UTC)
    # exit 1: not contained, which is what we expect
    lc.bulk_run(step, "contain", "--user", user, journal=journal, accept=(0, 1))
    disables, outcomes = journal_rows(journal)
    record = disables.get(user.lower()) or {}
    if _undo_if_disabled(lc, step, user, journal):
        raise AcceptanceError(
            f"{step}: Graph disabled {user}, which REVOKE_ACC_SYNCED_USER_ID names as synchronised from "
            "on-premises AD (expected its refusal, `on-premises synced`); the account was re-enabled"
        )
    answer = f"{record.get('status')} {record.get('code')}".strip()
    if record.get("step") != "on_premises_synced":
        raise AcceptanceError(
            f"{step}: the journal says {record.get('step')!r} for {user} (Graph answered {answer}: "
            f"{record.get('reason')}), not on_premises_synced; is the user really synchronised from AD?"
        )
    if outcomes.get(user.lower()) != "revoked":
        raise AcceptanceError(f"{step}: {user} was not revoked (outcome {outcomes.get(user.lower())!r})")
    after = lc._await_moved(step, before, sent, user)
    _await_enabled(lc, step, user, True)
    return f"on_premises_synced (Graph answered {answer}), still revoked ({before} -> {after}), account unchanged"
