"""The contain engine: per batch of users, read each account's state, disable, then revoke.

What :func:`revoke_ops.contain.contain` runs (see its module for the protocol and its rules): the
steps a user's account can end in, the PATCH of ``accountEnabled`` in ``$batch`` (body and
Content-Type, retried like any write), and :class:`ContainEngine` — the revocation engine with a
disable phase before each revocation batch, and in a dry run the predicted steps. Undo reuses
:func:`read_accounts`, :func:`patch_accounts` and the steps.

Size (~420 lines, over the ~400 guideline): split from contain.py once already; what is left is the
engine's disable phase and the account read and PATCH it shares with undo, which change together.
"""

from __future__ import annotations

import logging
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from revoke_ops.classify import Decision, Retry, classify_batch
from revoke_ops.directory import Exclusions
from revoke_ops.engine import Engine, Send
from revoke_ops.errors import AuthError, TransientAuthError, TransportError, UnreadableResponseError
from revoke_ops.graph import BatchItem, GraphSession, user_path
from revoke_ops.journal import now_iso
from revoke_ops.outcomes import Outcome
from revoke_ops.pacer import Pacer
from revoke_ops.records import MAX_BATCH
from revoke_ops.retry import RetryPolicy

__all__ = [
    "CHOSEN",
    "CONTAINED",
    "FORBIDDEN_REASON",
    "LAST_ADMIN_REASON",
    "ON_PREMISES_REASON",
    "ContainEngine",
    "ContainSummary",
    "Step",
    "StepRecord",
    "TwoWritePacer",
    "patch_accounts",
    "read_accounts",
]

log = logging.getLogger(__name__)

ON_PREMISES_MARK = "on-premises mastered"  # in Graph's 400 for users synchronised from AD

# The action first: the text report cuts reasons to fit its table.
FORBIDDEN_REASON = (
    "disable it in the Entra admin center: Graph refuses to change accountEnabled of a user holding an admin "
    "role with this permission: it needs an admin role held by the app (app-only) or Directory.AccessAsUser.All "
    "and a sufficiently privileged signed-in operator (delegated). Sessions were still revoked"
)
LAST_ADMIN_REASON = (
    "the last enabled Global Administrator is never disabled (the tenant would have no administrator left); "
    "sessions were still revoked"
)
ON_PREMISES_REASON = (
    "disable the account in on-premises AD and let it sync: it is synchronised from AD, so Entra refuses cloud "
    "changes to it (and a sync would revert them). Sessions were still revoked"
)


def _would(reason: str) -> str:
    """A step's reason as a dry run predicts it (nothing was sent)."""
    return reason.replace(
        "Sessions were still revoked", "Graph would refuse it; sessions would still be revoked"
    ).replace("sessions were still revoked", "sessions would still be revoked")


class Step(StrEnum):
    """What happened to one user's account (the disable step); ``revoked`` etc. stay the revoke outcome."""

    DISABLED = "disabled"
    ALREADY_DISABLED = "already_disabled"
    FORBIDDEN = "forbidden"
    ON_PREMISES = "on_premises_synced"
    NOT_FOUND = "not_found"
    LAST_GLOBAL_ADMIN = "last_global_admin"
    OPERATOR = "operator_not_disabled"
    EXCLUDED = "excluded"
    FAILED = "failed"
    ENABLED = "enabled"  # undo
    NOT_DISABLED_NOW = "no_longer_disabled"  # undo: someone enabled it since; left alone
    BEFORE_UNKNOWN = "before_unknown"  # undo: disabled by the run, its state before it unread; left disabled


#: Steps after which the account cannot sign in (the user counts as contained when also revoked).
CONTAINED = frozenset({Step.DISABLED, Step.ALREADY_DISABLED})
#: Steps that are a deliberate choice, not a failure (exit 0 when nothing else failed).
CHOSEN = frozenset({Step.OPERATOR, Step.EXCLUDED})


@dataclass
class StepRecord:
    ref: str
    step: Step
    code: str | None = None
    status: int | None = None
    reason: str | None = None
    request_id: str | None = None
    client_request_id: str | None = None
    sent_at: str | None = None


@dataclass
class ContainSummary:
    steps: Counter[str] = field(default_factory=Counter)
    not_contained: list[dict[str, Any]] = field(default_factory=list)  # at most 1,000 kept for display

    def to_json(self) -> dict[str, Any]:
        return {"steps": dict(self.steps)}

    @property
    def not_blocked(self) -> int:
        """Users revoked but not blocked from signing in (not a deliberate choice)."""
        return sum(v for k, v in self.steps.items() if Step(k) not in CONTAINED | CHOSEN)


async def patch_accounts(
    session: GraphSession,
    pacer: Pacer,
    refs: list[str],
    enabled: bool,
    *,
    policy: RetryPolicy,
    on_attempt: Callable[[list[str], str], None] | None = None,
) -> dict[str, StepRecord]:
    """PATCH ``accountEnabled`` of up to 20 users in one ``$batch`` (items retried on 429/5xx).

    Every item carries its body and ``Content-Type`` (Graph refuses write items without). Writes
    come from ``pacer``. Answers are read by :func:`revoke_ops.classify.classify_batch`, like the
    revocation engine's; the waits come from ``policy`` (Retry-After in either form, capped at
    ``--max-retry-wait``; backoff with jitter otherwise) as a shared pause of the pacer. The PATCH is
    idempotent, so an answer that cannot be read (or is missing) is sent again; after a 401 the token
    is renewed first. Returns each ref's step.
    """
    done: dict[str, StepRecord] = {}
    pending = list(refs)
    attempt = 0
    while pending:
        attempt += 1
        await pacer.acquire(len(pending))
        crid = str(uuid.uuid4())
        sent_at = now_iso()
        if on_attempt is not None:
            on_attempt(pending, crid)
        items = [
            BatchItem(str(n + 1), "PATCH", user_path(ref), {"accountEnabled": enabled}) for n, ref in enumerate(pending)
        ]
        retry: list[str] = []
        asked: float | None = None
        refused = False  # Graph answered 401: the token is renewed before sending again
        try:
            response = await session.batch(items, client_request_id=crid)
        except (TransientAuthError, TransportError, UnreadableResponseError) as err:
            retry, reason = list(pending), str(err)
        except AuthError as err:
            return done | _no_token(pending, err, crid, sent_at)
        else:
            answer = {"status": response.status, "headers": response.headers, "body": response.body}
            decisions = classify_batch(answer, len(pending), now=datetime.now(UTC))
            reason = f"HTTP {response.status} for the whole $batch"
            for ref, decision in zip(pending, decisions, strict=True):
                if decision.retry is not None or decision.code in _SEND_AGAIN:
                    retry.append(ref)
                    refused = refused or decision.retry is Retry.TOKEN
                    if decision.retry_after is not None:
                        asked = max(asked or 0.0, decision.retry_after)
                    reason = f"HTTP {decision.status} {decision.code or ''}".strip()
                else:
                    done[ref] = _step_of(ref, decision, enabled, crid, sent_at)
        if refused and not policy.is_exhausted(attempt):
            try:
                await session.renew_token()  # the cached token was refused (CAE, say): never resend it
            except TransientAuthError as err:
                reason = str(err)
            except AuthError as err:
                return done | _no_token(retry, err, crid, sent_at)
        if retry and policy.is_exhausted(attempt):
            for ref in retry:
                done[ref] = StepRecord(
                    ref, Step.FAILED, "Retries", None, f"still failing: {reason}", None, crid, sent_at
                )
            return done
        if retry:
            wait = policy.wait(attempt, asked)
            if wait.capped:
                log.info(
                    "accountEnabled: Graph asked to wait %.0f s; waiting %.0f s (--max-retry-wait)",
                    wait.asked,
                    wait.seconds,
                )
            pacer.pause(wait.seconds)
        pending = retry
    return done


def _no_token(refs: list[str], err: AuthError, crid: str, sent_at: str) -> dict[str, StepRecord]:
    return {ref: StepRecord(ref, Step.FAILED, "NoToken", None, str(err), None, crid, sent_at) for ref in refs}


#: Codes :func:`classify_batch` settles as failed (a revocation may have happened) that a PATCH sends again.
_SEND_AGAIN = frozenset({"UnreadableResponse", "MissingBatchItem"})


#: An account's ``accountEnabled`` and ``onPremisesSyncEnabled`` (None: could not be read).
AccountState = tuple[bool | None, bool | None]


async def read_accounts(session: GraphSession, refs: list[str]) -> dict[str, AccountState]:
    """Each account's state (by object id or UPN), read in ``$batch`` es of 20 under the READ policy.

    Shared by the contain engine (the state before it disables) and undo (the state before it re-enables).

    :raises AuthError: no token (the credential is refused).
    """
    states: dict[str, AccountState] = {}
    for start in range(0, len(refs), MAX_BATCH):
        chunk = refs[start : start + MAX_BATCH]
        reads = [
            BatchItem(str(n + 1), "GET", f"{user_path(ref)}?$select=id,accountEnabled,onPremisesSyncEnabled")
            for n, ref in enumerate(chunk)
        ]
        answers = await session.batch_read(reads)
        for read, ref in zip(reads, chunk, strict=True):
            answer = answers.get(read.id) or {}
            body = answer.get("body")
            fields = body if answer.get("status") == 200 and isinstance(body, dict) else {}
            enabled, synced = fields.get("accountEnabled"), fields.get("onPremisesSyncEnabled")
            states[ref] = (enabled if isinstance(enabled, bool) else None, synced if isinstance(synced, bool) else None)
    return states


def _step_of(ref: str, decision: Decision, enabled: bool, crid: str, sent_at: str) -> StepRecord:
    """The account step a settled answer to ``PATCH accountEnabled`` means."""
    status, rid = decision.status, decision.request_id
    if decision.outcome is Outcome.REVOKED:  # 2xx: the change was made
        return StepRecord(ref, Step.ENABLED if enabled else Step.DISABLED, None, status, None, rid, crid, sent_at)
    if decision.outcome is Outcome.FORBIDDEN:
        return StepRecord(ref, Step.FORBIDDEN, decision.code, status, FORBIDDEN_REASON, rid, crid, sent_at)
    if decision.outcome is Outcome.NOT_FOUND:
        return StepRecord(ref, Step.NOT_FOUND, decision.code, status, decision.reason or "", rid, crid, sent_at)
    if status == 400 and ON_PREMISES_MARK in (decision.reason or "").lower():
        return StepRecord(ref, Step.ON_PREMISES, decision.code, status, ON_PREMISES_REASON, rid, crid, sent_at)
    return StepRecord(ref, Step.FAILED, decision.code, status, decision.reason or "", rid, crid, sent_at)


class ContainEngine(Engine):
    """The revocation engine with a disable phase before each revocation batch."""

    def __init__(
        self,
        *args: Any,
        exclusions: Exclusions,
        operator_id: str | None,
        global_admins: set[str] | None,
        disabled_earlier: frozenset[str] = frozenset(),
        may_disable_admins: bool = False,
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        #: whether Graph lets this token disable admin-role holders (a dry run's prediction)
        self.may_disable_admins = may_disable_admins
        #: a resume: accounts the interrupted part disabled (or sent a disable for) while they were enabled
        self.disabled_earlier = disabled_earlier
        self.exclusions = exclusions
        self.operator_id = operator_id
        #: enabled Global Administrators (ids), None when they could not be read
        self.global_admins = global_admins
        self.contain = ContainSummary()
        self._was_admin: set[str] = set()  # Global Administrators counted as disabled in this run

    async def _send(self, batch: list[Send]) -> None:
        if self.options.dry_run:
            await self._predict(batch)
        elif not self.summary.stopped:
            await self._disable(batch)
        await super()._send(batch)

    def _chosen(self, batch: list[Send], steps: dict[str, StepRecord]) -> list[Send]:
        """The users this run may disable; the others (exclusions, the operator) get their step in ``steps``."""
        candidates: list[Send] = []
        for item in batch:
            if self.exclusions.excludes(item.id, item.upn):
                steps[item.ref] = StepRecord(item.ref, Step.EXCLUDED, reason="break-glass exclusion: never disabled")
            elif item.last or (item.id is not None and item.id == self.operator_id):
                why = "the signed-in operator is never disabled (their sessions are revoked last)"
                steps[item.ref] = StepRecord(item.ref, Step.OPERATOR, reason=why)
            else:
                candidates.append(item)
        return candidates

    async def _predict(self, batch: list[Send]) -> None:
        """A dry run: each user's step as far as it can be known without writing — already disabled,
        synchronised from AD, an admin this token cannot disable, the last Global Administrator."""
        steps: dict[str, StepRecord] = {}
        candidates = self._chosen(batch, steps)
        accounts = await self._read_accounts(candidates)
        for item in candidates:
            enabled, synced = accounts.get(item.ref, (None, None))
            if enabled is False:
                steps[item.ref] = StepRecord(item.ref, Step.ALREADY_DISABLED, reason="accountEnabled is already false")
            elif synced:
                steps[item.ref] = StepRecord(item.ref, Step.ON_PREMISES, reason=_would(ON_PREMISES_REASON))
            elif item.privileged and not self.may_disable_admins:
                steps[item.ref] = StepRecord(item.ref, Step.FORBIDDEN, reason=_would(FORBIDDEN_REASON))
            elif self._last_global_admin(item):
                steps[item.ref] = StepRecord(item.ref, Step.LAST_GLOBAL_ADMIN, reason=_would(LAST_ADMIN_REASON))
            else:
                unread = " (its state could not be read)" if enabled is None else ""
                steps[item.ref] = StepRecord(item.ref, Step.DISABLED, reason=f"would be disabled{unread}")
        for item in batch:
            self._step(item, steps[item.ref], accounts.get(item.ref, (None, None))[0])

    async def _disable(self, batch: list[Send]) -> None:
        assert self.session is not None
        steps: dict[str, StepRecord] = {}
        candidates = self._chosen(batch, steps)
        before = await self._read_states(candidates)
        to_send: list[Send] = []
        for item in candidates:
            state = before.get(item.ref)
            if state is False and item.ref in self.disabled_earlier:
                why = "disabled by the interrupted part of this run"
                steps[item.ref] = StepRecord(item.ref, Step.DISABLED, reason=why)
                before[item.ref] = True
            elif state is False:
                steps[item.ref] = StepRecord(item.ref, Step.ALREADY_DISABLED, reason="accountEnabled was already false")
            elif self._last_global_admin(item):
                steps[item.ref] = StepRecord(item.ref, Step.LAST_GLOBAL_ADMIN, reason=LAST_ADMIN_REASON)
            else:
                to_send.append(item)
        if to_send:

            def attempt(refs: list[str], crid: str) -> None:
                # The before-states go in with the attempt, durable before the PATCH: killed before its
                # answer is journaled, the run has still recorded what `--undo` needs.
                if self.journal is not None:
                    self.journal.write(
                        {
                            "type": "disable-attempt",
                            "at": now_iso(),
                            "users": refs,
                            "before": {ref: before.get(ref) for ref in refs},
                            "clientRequestId": crid,
                        }
                    )
                    self.journal.sync()

            self.summary.requests += 1
            sent = await patch_accounts(
                self.session,
                self.pacer,
                [i.ref for i in to_send],
                False,
                policy=self.options.policy(),
                on_attempt=attempt,
            )
            steps.update(sent)
            for item in to_send:
                failed = sent[item.ref].step is not Step.DISABLED
                if failed and self.global_admins is not None and item.id in self._was_admin:
                    self.global_admins.add(str(item.id))  # not disabled after all: still an enabled admin
        for item in batch:
            self._step(item, steps[item.ref], before.get(item.ref))
        if self.journal is not None:
            self.journal.sync()

    def _last_global_admin(self, item: Send) -> bool:
        admins = self.global_admins
        if admins is None or item.id is None or item.id not in admins:
            return False
        if len(admins) <= 1:
            return True
        admins.discard(item.id)  # counted as disabled from now on (put back if the disable fails)
        self._was_admin.add(item.id)
        return False

    async def _read_states(self, items: list[Send]) -> dict[str, bool | None]:
        """Each account's accountEnabled before the change (None: could not be read)."""
        return {ref: enabled for ref, (enabled, _synced) in (await self._read_accounts(items)).items()}

    async def _read_accounts(self, items: list[Send]) -> dict[str, AccountState]:
        """Each account's state before the change; all unknown when the read fails (the run goes on)."""
        if not items:
            return {}
        assert self.session is not None
        try:
            return await read_accounts(self.session, [i.ref for i in items])
        except (AuthError, TransportError, UnreadableResponseError) as err:
            log.warning("reading the accounts' state failed (%s): their before-state is recorded as unknown", err)
            return {}

    def _step(self, item: Send, record: StepRecord, before: bool | None) -> None:
        self.contain.steps[str(record.step)] += 1
        row = {
            "id": item.id,
            "upn": item.upn,
            "target": item.target,
            "step": str(record.step),
            "before": before,
            "code": record.code,
            "status": record.status,
            "reason": record.reason,
            "requestId": record.request_id,
            "clientRequestId": record.client_request_id,
            "sentAt": record.sent_at,
        }
        if record.step not in CONTAINED | CHOSEN and len(self.contain.not_contained) < 1000:
            self.contain.not_contained.append({k: v for k, v in row.items() if v is not None})
        if self.journal is not None:
            self.journal.write({"type": "disable", "at": now_iso(), **{k: v for k, v in row.items() if v is not None}})


class TwoWritePacer(Pacer):
    """The ETA of a contain run: every user takes two writes (disable, revoke)."""

    def eta(self, remaining: int) -> float:
        return super().eta(remaining * 2)
