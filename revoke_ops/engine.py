"""The revocation engine: resolved targets -> pacer -> batch sender -> journal.

The pacer (:mod:`revoke_ops.pacer`) keeps to Graph's write budget; answers are read by the pure
:func:`revoke_ops.classify.classify_batch`; waits follow the one :class:`revoke_ops.retry.RetryPolicy`.
The session, journal, clock and random source are passed in, so tests drive the engine directly.

- Sender: JSON batches of up to 20 (each with its own ``client-request-id``, journaled before it is
  sent), a bounded number in flight; items are retried on their own (a 429 or 5xx item inside a
  200 batch is retried, not the batch); revocation is idempotent, so a request that may not have
  arrived is sent again. An answer that arrived but cannot be read means the change may have
  happened: the outcome is ``failed`` and ``verify`` settles it.
- A Retry-After beyond ``max_retry_wait`` is waited only up to that cap and counts as a failed
  attempt of that batch (retried later): never an indefinite wait.
- A token that cannot be had (identity platform outage) or a Graph 401 stops every sender: the
  engine pauses (a ``pause`` line in the journal), re-acquires the token, and resumes; when it
  keeps failing it stops sending and the run ends with its summary (``stopped``) for a resume.

Size (~410 lines, at the ~400 guideline): one class whose sender, per-item retries and token pause
share its state (pacer, in-flight batches, token lock); what is pure is already apart (classify,
retry, pacer, records).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import math
import random
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

from revoke_ops.classify import Decision, Retry, classify_batch
from revoke_ops.errors import (
    AuthError,
    ServiceError,
    TransientAuthError,
    TransportError,
    UnreadableResponseError,
)
from revoke_ops.graph import BatchItem, GraphSession, user_path
from revoke_ops.journal import Journal, now_iso
from revoke_ops.outcomes import OUTCOMES, Outcome
from revoke_ops.pacer import Pacer
from revoke_ops.records import NOT_SHOWN, EngineOptions, Item, Record, Send, Settled, Summary
from revoke_ops.retry import Clock, RealClock

__all__ = [
    "OUTCOMES",
    "Engine",
    "EngineOptions",
    "Item",
    "Outcome",
    "Pacer",
    "Record",
    "Send",
    "Settled",
    "Summary",
]

log = logging.getLogger(__name__)


@dataclass(slots=True)
class _Pending:
    """One user of a batch being sent, with its retry counts."""

    item: Send
    attempts: int = 0  # failed attempts (5xx, connection errors, timeouts, capped Retry-After, 401)
    throttles: int = 0  # 429s


class Engine:
    def __init__(
        self,
        session: GraphSession | None,
        journal: Journal | None,
        options: EngineOptions | None = None,
        *,
        clock: Clock | None = None,
        rng: random.Random | None = None,
        on_outcome: Callable[[Summary], None] | None = None,
        on_would_revoke: Callable[[Send], None] | None = None,
    ) -> None:
        self.session = session
        self.journal = journal
        self.options = options or EngineOptions()
        self.clock = clock or RealClock()
        self.policy = replace(self.options.policy(), rng=rng or random.Random())  # noqa: S311  # jitter only
        self.pacer = Pacer(self.clock, self.options.write_burst, self.options.write_rate)
        self.summary = Summary(pacer=self.pacer)
        self.on_outcome = on_outcome
        self.on_would_revoke = on_would_revoke
        self._batches = itertools.count(1)
        self._token_failures = 0  # consecutive batches that could not get a token
        self._token_lock = asyncio.Lock()
        self._token_ok_at = -math.inf  # when a token was last re-acquired (clock time)

    # -- outcomes ----------------------------------------------------------------------------
    def _record(self, record: Record) -> None:
        self.summary.counts[record.outcome] += 1
        if record.outcome is Outcome.REVOKED and self.summary.first_revocation_at is None:
            self.summary.first_revocation_at = self.clock.monotonic()
        data = record.to_json()
        if record.outcome not in NOT_SHOWN:
            if len(self.summary.not_revoked) < 1000:
                self.summary.not_revoked.append(data)
            who = record.who.target
            log.debug("%s: %s (%s, HTTP %s): %s", who, record.outcome, record.code, record.status, record.reason)
        if self.journal is not None:
            self.journal.outcome(**{k: v for k, v in data.items() if v is not None})
        if self.on_outcome:
            self.on_outcome(self.summary)

    def settle(self, item: Settled) -> None:
        self._record(Record(item, item.outcome, code=item.code, reason=item.reason))

    def _pause_line(self, reason: str, seconds: float, **fields: Any) -> None:
        if self.journal is not None:
            self.journal.write(
                {"type": "pause", "at": now_iso(), "reason": reason, "seconds": round(seconds, 3), **fields}
            )
            self.journal.sync()

    def _stop(self, reason: str) -> None:
        if self.summary.stopped is None:
            self.summary.stopped = reason
            log.warning("stopped sending: %s", reason)

    # -- the run -----------------------------------------------------------------------------
    async def run(self, items: AsyncIterator[Item]) -> Summary:
        """Send every item's revocation; return the summary (also journaled per user)."""
        self.summary.started = self.clock.monotonic()
        queue: asyncio.PriorityQueue[tuple[int, int, list[Send]]] = asyncio.PriorityQueue(
            maxsize=self.options.concurrency * 2
        )
        order = itertools.count()
        last: list[Send] = []
        size = self.options.batch_size

        async def produce() -> None:
            normal: list[Send] = []
            urgent: list[Send] = []
            try:
                await feed(normal, urgent)
            except (ServiceError, TransportError, UnreadableResponseError) as err:
                if not self.summary.requests and not self.summary.total:
                    raise  # nothing was done yet: the service failure is the whole story (exit 4)
                # Reading the targets failed mid-run: what was sent stays recorded and the run ends
                # with its summary and a resume hint, rather than an error that hides it.
                self._stop(f"reading the targets failed: {err}")
            for priority, bucket in ((0, urgent), (1, normal)):
                if bucket:
                    await queue.put((priority, next(order), list(bucket)))

        async def feed(normal: list[Send], urgent: list[Send]) -> None:
            async for item in items:
                if self.summary.stopped:
                    return  # the rest stays without an outcome: a resume picks it up
                if isinstance(item, Settled):
                    self.settle(item)
                    continue
                if item.last:
                    last.append(item)
                    continue
                bucket = urgent if item.privileged else normal
                bucket.append(item)
                if len(bucket) >= size:
                    if bucket is normal and urgent:
                        # privileged users never wait behind a batch of ordinary ones
                        await queue.put((0, next(order), list(urgent)))
                        urgent.clear()
                    await queue.put((0 if bucket is urgent else 1, next(order), list(bucket)))
                    bucket.clear()

        async def work() -> None:
            while True:
                _priority, _n, batch = await queue.get()
                try:
                    if batch:
                        await self._send(batch)
                finally:
                    queue.task_done()
                if not batch:
                    return

        async def drive() -> None:
            await produce()
            await queue.join()
            if last:  # the signed-in operator goes last, after everyone else
                await queue.put((2, next(order), last))
                await queue.join()
            for _ in range(workers):
                await queue.put((9, next(order), []))

        workers = max(1, self.options.concurrency)
        try:
            # A failing stage (a worker, the resolver) ends the run at once: the task group cancels
            # the others instead of leaving them waiting on a queue nobody drains.
            async with asyncio.TaskGroup() as group:
                group.create_task(drive())
                for _ in range(workers):
                    group.create_task(work())
        except BaseExceptionGroup as errors:
            raise _first(errors) from None
        finally:
            if self.journal is not None:
                self.journal.sync()
        self.summary.finished = self.clock.monotonic()
        return self.summary

    async def _send(self, batch: list[Send]) -> None:
        if self.options.dry_run:
            for item in batch:
                self.summary.would_revoke += 1
                if self.on_would_revoke:
                    self.on_would_revoke(item)
            return
        assert self.session is not None
        pending = [_Pending(item) for item in batch]
        while pending and not self.summary.stopped:
            await self.pacer.acquire(len(pending))
            if self.summary.stopped:
                break
            number = next(self._batches)
            client_request_id = str(uuid.uuid4())
            sent_at = now_iso()
            if self.journal is not None:
                users = [{"id": p.item.id or "", "upn": p.item.upn or "", "target": p.item.target} for p in pending]
                self.journal.attempt(number, users, client_request_id)
            items = [
                BatchItem(str(n + 1), "POST", f"{user_path(p.item.ref)}/revokeSignInSessions")
                for n, p in enumerate(pending)
            ]
            self.summary.requests += 1
            started = self.clock.monotonic()
            try:
                response = await self.session.batch(items, client_request_id=client_request_id)
            except TransientAuthError as err:
                await self._token_unavailable(err)  # nothing was sent: no attempt counted against the users
                continue
            except AuthError as err:
                self._stop(f"no token: {err}")
                break
            except TransportError as err:
                # It may not have arrived; revocation is idempotent, so it is sent again.
                decisions = [Decision(retry=Retry.ERROR, code="ConnectionError", reason=str(err))] * len(pending)
            except UnreadableResponseError as err:
                decisions = [
                    Decision(
                        Outcome.FAILED,
                        code="UnreadableResponse",
                        reason=f"{err}; the revocation may have happened: run `revoke-ops verify`",
                    )
                ] * len(pending)
            else:
                self._token_failures = 0
                log.debug(
                    "batch %d (%d users): HTTP %d in %.0f ms, request-id %s, client-request-id %s",
                    number,
                    len(pending),
                    response.status,
                    (self.clock.monotonic() - started) * 1000,
                    response.request_id,
                    client_request_id,
                )
                self._observe_limit(response.headers.get("x-ms-throttle-limit-percentage"))
                answer = {"status": response.status, "headers": response.headers, "body": response.body}
                decisions = classify_batch(
                    answer, len(pending), delegated=self.options.delegated, now=datetime.now(UTC)
                )
            pending = await self._apply(pending, decisions, sent_at, client_request_id, started)
            if pending:
                log.debug("batch %d: %d users to send again", number, len(pending))
        if self.journal is not None:
            self.journal.sync()

    def _observe_limit(self, percentage: str | None) -> None:
        if percentage:
            with contextlib.suppress(ValueError):
                self.pacer.observe_limit(float(percentage))

    async def _apply(
        self, pending: list[_Pending], decisions: list[Decision], sent_at: str, client_request_id: str, sent: float
    ) -> list[_Pending]:
        """Record each settled user; count, wait and return the users to send again."""
        policy = self.policy
        retry: list[_Pending] = []
        pause = 0.0  # a shared pause for throttling (every sender)
        asked = 0.0  # the longest Retry-After asked for
        backoff = 0.0  # this sender's own wait (5xx, connection errors)
        token = False
        for p, decision in zip(pending, decisions, strict=True):
            if decision.outcome is not None:
                self._record(Record.of(p.item, decision, sent_at, client_request_id))
                continue
            give_up: str | None = None
            if decision.retry is Retry.THROTTLED:
                self.summary.throttled += 1
                p.throttles += 1
                wait = policy.capped(1.0 if decision.retry_after is None else decision.retry_after)
                if wait.capped:
                    p.attempts += 1  # a pause past the cap counts as a failure of this batch
                    asked = max(asked, wait.asked or 0.0)
                pause = max(pause, wait.seconds)
                if p.throttles > self.options.max_throttled:
                    give_up = "still throttled after many retries"
            elif decision.retry is Retry.TOKEN:
                p.attempts += 1
                token = True
            else:
                p.attempts += 1
                wait = policy.wait(p.attempts, decision.retry_after)
                if wait.capped:
                    asked = max(asked, wait.asked or 0.0)
                backoff = max(backoff, wait.seconds)
            if give_up is None and policy.is_exhausted(p.attempts):
                give_up = decision.reason or f"still failing after {p.attempts} attempts"
            if give_up is not None:
                failed = replace(decision, outcome=Outcome.FAILED, reason=give_up)
                self._record(Record.of(p.item, failed, sent_at, client_request_id))
            else:
                retry.append(p)
        if token and retry:
            await self._renew_token(sent)
        if not retry:
            return retry
        if pause:
            self._announce(pause, asked, "throttled (429)")
            self.pacer.pause(pause)
        elif backoff:
            self._announce(backoff, asked, "Graph failed for now")
            await self.clock.sleep(backoff)
        return retry

    def _announce(self, seconds: float, asked: float, why: str) -> None:
        if asked > seconds:
            log.info(
                "%s: Graph asked to wait %.0f s; waiting %.0f s (--max-retry-wait), counting it as a failed "
                "attempt of that batch and retrying",
                why,
                asked,
                seconds,
            )
            self._pause_line("retry-after-capped", seconds, asked=asked)
        elif seconds >= 5:
            log.info("%s: every sender waits %.0f s (Retry-After)", why, seconds)

    async def _token_unavailable(self, err: TransientAuthError) -> None:
        """No token for now: every sender pauses with backoff; after too many failures, stop."""
        async with self._token_lock:
            if self.pacer.paused_for() > 0:
                return  # another sender already paused everyone for this
            self._token_failures += 1
            if self.policy.is_exhausted(self._token_failures):
                self._stop(
                    f"the identity platform kept failing ({self._token_failures} attempts): {err}; "
                    "users without an outcome were not sent"
                )
                self._pause_line("token-unavailable", 0.0, code=err.code, gaveUp=True)
                return
            wait = self.policy.wait(self._token_failures)
            self.summary.pauses += 1
            log.warning("no token (%s): every sender pauses %.0f s and retries", err.code or "transient", wait.seconds)
            self._pause_line("token-unavailable", wait.seconds, code=err.code, attempt=self._token_failures)
            self.pacer.pause(wait.seconds)

    async def _renew_token(self, sent: float) -> None:
        """Graph refused the token (401): stop sending and re-acquire it before anyone sends again."""
        assert self.session is not None
        async with self._token_lock:
            if self._token_ok_at >= sent:
                return  # renewed since this batch was sent
            self.pacer.hold()  # nobody sends until a token is back
            self.summary.pauses += 1
            self._pause_line("token-refused", 0.0, status=401)
            log.warning("Graph refused the token (401): every sender waits while a new one is acquired")
            try:
                while True:
                    try:
                        await self.session.renew_token()
                        break
                    except TransientAuthError as err:
                        self._token_failures += 1
                        if self.policy.is_exhausted(self._token_failures):
                            self._stop(f"no new token after a 401 ({self._token_failures} attempts): {err}")
                            return
                        await self.clock.sleep(self.policy.wait(self._token_failures).seconds)
                    except AuthError as err:
                        self._stop(f"no new token after a 401: {err}")
                        return
                self._token_failures = 0
                self._token_ok_at = self.clock.monotonic()
            finally:
                self.pacer.release()


def _first(group: BaseExceptionGroup[BaseException]) -> BaseException:
    """The first real error of a task group (cancellations of the others are not news)."""
    for err in group.exceptions:
        if isinstance(err, BaseExceptionGroup):
            return _first(err)
        if not isinstance(err, asyncio.CancelledError):
            return err
    return group.exceptions[0]
