"""The revocation engine: resolved targets -> pacer -> batch sender -> journal.

Stages are small and injected (clock, pacer, session, journal) so tests drive them directly.

- Pacer: a token bucket at the published per app+tenant write budget (3,000 writes, refilled at
  20/s — configurable); a 429 (top level or inside a batch) pauses every sender for its
  Retry-After; ``x-ms-throttle-limit-percentage`` near 1 slows the refill.
- Sender: JSON batches of up to 20, a bounded number in flight; items are retried on their own
  (a 429 or 5xx item inside a 200 batch is retried, not the batch); exponential backoff with
  jitter on 5xx and connection errors; revocation is idempotent, so a request that may not have
  arrived is sent again. An answer that arrived but cannot be read means the change may have
  happened: the outcome is ``failed`` and ``verify`` settles it.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import random
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from revoke_ops.graph import (
    BatchItem,
    GraphResponse,
    GraphSession,
    TransportError,
    UnreadableResponseError,
    user_path,
)
from revoke_ops.journal import Journal, now_iso

__all__ = ["OUTCOMES", "Clock", "Engine", "EngineOptions", "Final", "Pacer", "Send", "Summary"]

log = logging.getLogger(__name__)

OUTCOMES = ("revoked", "not_found", "forbidden", "skipped_external", "skipped_inactive", "excluded", "failed")
#: Outcomes that are what was asked for (not listed among the users not revoked).
AS_ASKED = ("revoked", "excluded", "skipped_external", "skipped_inactive")
MAX_BATCH = 20


class Clock(Protocol):
    def monotonic(self) -> float: ...

    async def sleep(self, seconds: float) -> None: ...


class RealClock:
    def monotonic(self) -> float:
        return time.monotonic()

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(max(0.0, seconds))


@dataclass(slots=True)
class Send:
    """A user to revoke: ``ref`` is what goes into the URL (object id, else the UPN)."""

    ref: str
    id: str | None
    upn: str | None
    target: str
    privileged: bool = False
    last: bool = False  # the signed-in operator: revoked after everyone else


@dataclass(slots=True)
class Final:
    """A user whose outcome is known without sending anything (excluded, external, not found)."""

    id: str | None
    upn: str | None
    target: str
    outcome: str
    reason: str
    code: str | None = None


Item = Send | Final


@dataclass
class EngineOptions:
    write_burst: float = 3000  # the bucket's capacity (Graph: 3,000 writes per app+tenant)
    write_rate: float = 20.0  # refill per second (3,000 per 150 s)
    concurrency: int = 4  # batches in flight
    batch_size: int = MAX_BATCH
    max_attempts: int = 10  # per user, for 5xx, connection errors and timeouts (revocation is idempotent)
    max_throttled: int = 50  # 429s tolerated per user before giving up
    backoff_base: float = 1.0
    backoff_max: float = 60.0
    dry_run: bool = False
    delegated: bool = False  # a signed-in operator: a 403 means their directory role does not cover the user


@dataclass
class Summary:
    counts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(OUTCOMES, 0))
    would_revoke: int = 0
    requests: int = 0
    throttled: int = 0
    not_revoked: list[dict[str, Any]] = field(default_factory=list)  # at most 1,000 kept for display
    first_revocation_at: float | None = None
    started: float = 0.0
    finished: float = 0.0

    @property
    def total(self) -> int:
        return sum(self.counts.values()) + self.would_revoke

    def to_json(self) -> dict[str, Any]:
        return {
            "outcomes": dict(self.counts),
            "wouldRevoke": self.would_revoke,
            "requests": self.requests,
            "throttled": self.throttled,
            "seconds": round(self.finished - self.started, 3),
        }


class Pacer:
    """Token bucket for writes with a shared pause for Retry-After."""

    def __init__(self, clock: Clock, burst: float, rate: float) -> None:
        self.clock = clock
        self.capacity = burst
        self.rate = rate
        self.base_rate = rate
        self.tokens = burst
        self.updated = clock.monotonic()
        self.paused_until = 0.0
        self._lock = asyncio.Lock()

    def _refill(self) -> None:
        now = self.clock.monotonic()
        if now > self.updated:
            self.tokens = min(self.capacity, self.tokens + (now - self.updated) * self.rate)
            self.updated = now

    async def acquire(self, n: int) -> None:
        """Wait until ``n`` writes may be sent (requests larger than the bucket are capped)."""
        need = min(float(n), self.capacity)
        async with self._lock:
            while True:
                now = self.clock.monotonic()
                if now < self.paused_until:
                    await self.clock.sleep(self.paused_until - now)
                    continue
                self._refill()
                if self.tokens >= need:
                    self.tokens -= need
                    return
                await self.clock.sleep((need - self.tokens) / self.rate)

    def pause(self, seconds: float) -> None:
        """Graph said Retry-After: nobody sends until then, and the bucket starts empty."""
        until = self.clock.monotonic() + seconds
        if until > self.paused_until:
            log.debug("Retry-After %.1f s: every sender pauses", seconds)
            self.paused_until = until
            self.tokens = 0.0
            self.updated = until

    def observe_limit(self, fraction: float) -> None:
        """Adapt to ``x-ms-throttle-limit-percentage``: slow down as Graph nears its limit."""
        before = self.rate
        if fraction >= 0.95:
            self.rate = max(self.base_rate * 0.5, self.rate * 0.9)
        elif fraction < 0.85 and self.rate < self.base_rate:
            self.rate = min(self.base_rate, self.rate * 1.1)
        if self.rate != before:
            log.debug("Graph reports %.0f %% of its limit used: write rate %.1f/s", fraction * 100, self.rate)


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
        self.rng = rng or random.Random()  # noqa: S311  # jitter, not cryptography
        self.pacer = Pacer(self.clock, self.options.write_burst, self.options.write_rate)
        self.summary = Summary()
        self.on_outcome = on_outcome
        self.on_would_revoke = on_would_revoke
        self._batches = itertools.count(1)

    # -- outcomes ----------------------------------------------------------------------------
    def _record(
        self,
        outcome: str,
        who: Send | Final,
        *,
        code: str | None = None,
        reason: str | None = None,
        status: int | None = None,
        request_id: str | None = None,
        client_request_id: str | None = None,
        sent_at: str | None = None,
    ) -> None:
        self.summary.counts[outcome] += 1
        if outcome == "revoked" and self.summary.first_revocation_at is None:
            self.summary.first_revocation_at = self.clock.monotonic()
        record = {
            "id": who.id,
            "upn": who.upn,
            "target": who.target,
            "outcome": outcome,
            "code": code,
            "status": status,
            "reason": reason,
            "requestId": request_id,
            "clientRequestId": client_request_id,
            "sentAt": sent_at,
        }
        if outcome not in AS_ASKED and len(self.summary.not_revoked) < 1000:
            self.summary.not_revoked.append(record)
        if outcome not in AS_ASKED:
            log.debug("%s: %s (%s, HTTP %s): %s", who.target, outcome, code, status, reason)
        if self.journal is not None:
            self.journal.outcome(**{k: v for k, v in record.items() if v is not None})
        if self.on_outcome:
            self.on_outcome(self.summary)

    def final(self, item: Final) -> None:
        self._record(item.outcome, item, code=item.code, reason=item.reason)

    # -- the run -----------------------------------------------------------------------------
    async def run(self, items: AsyncIterator[Item]) -> Summary:
        """Send every item's revocation; return the summary (also journaled per user)."""
        self.summary.started = self.clock.monotonic()
        queue: asyncio.PriorityQueue[tuple[int, int, list[Send]]] = asyncio.PriorityQueue(
            maxsize=self.options.concurrency * 2
        )
        order = itertools.count()
        last: list[Send] = []

        async def produce() -> None:
            normal: list[Send] = []
            urgent: list[Send] = []
            async for item in items:
                if isinstance(item, Final):
                    self.final(item)
                    continue
                if item.last:
                    last.append(item)
                    continue
                bucket = urgent if item.privileged else normal
                bucket.append(item)
                if len(bucket) >= self.options.batch_size:
                    if bucket is normal and urgent:
                        # privileged users never wait behind a batch of ordinary ones
                        await queue.put((0, next(order), list(urgent)))
                        urgent.clear()
                    await queue.put((0 if bucket is urgent else 1, next(order), list(bucket)))
                    bucket.clear()
            for priority, bucket in ((0, urgent), (1, normal)):
                if bucket:
                    await queue.put((priority, next(order), list(bucket)))

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
            for _ in workers:
                await queue.put((9, next(order), []))

        workers = [asyncio.create_task(work()) for _ in range(max(1, self.options.concurrency))]
        driver = asyncio.create_task(drive())
        tasks = [driver, *workers]
        try:
            # A failing stage (a worker, the resolver) ends the run at once instead of leaving the
            # others waiting on a queue nobody drains.
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
            for task in done:
                if not task.cancelled() and task.exception() is not None:
                    raise task.exception()  # type: ignore[misc]
            await asyncio.gather(*tasks)
        finally:
            for task in tasks:
                task.cancel()
            if self.journal is not None:
                self.journal.sync()
        self.summary.finished = self.clock.monotonic()
        return self.summary

    def _backoff(self, attempt: int) -> float:
        delay = float(min(self.options.backoff_max, self.options.backoff_base * (2 ** (attempt - 1))))
        return delay * (0.5 + self.rng.random() / 2)  # jitter: 50-100 % of the delay

    async def _send(self, batch: list[Send]) -> None:
        if self.options.dry_run:
            for item in batch:
                self.summary.would_revoke += 1
                if self.on_would_revoke:
                    self.on_would_revoke(item)
            return
        assert self.session is not None
        pending = [_Pending(item) for item in batch]
        while pending:
            await self.pacer.acquire(len(pending))
            number = next(self._batches)
            sent_at = now_iso()
            if self.journal is not None:
                users = [{"id": p.item.id or "", "upn": p.item.upn or "", "target": p.item.target} for p in pending]
                self.journal.attempt(number, users)
            items = [
                BatchItem(str(n + 1), "POST", f"{user_path(p.item.ref)}/revokeSignInSessions")
                for n, p in enumerate(pending)
            ]
            self.summary.requests += 1
            started = self.clock.monotonic()
            try:
                response = await self.session.batch(items)
            except TransportError as err:
                # It may not have arrived; revocation is idempotent, so it is sent again.
                log.debug("batch %d (%d users): %s; sending again", number, len(pending), err)
                pending = self._retry_or_fail(pending, "ConnectionError", str(err), None, sent_at)
                if pending:
                    await self.clock.sleep(self._backoff(max(p.attempts for p in pending)))
                continue
            except UnreadableResponseError as err:
                for p in pending:
                    self._record(
                        "failed",
                        p.item,
                        code="UnreadableResponse",
                        sent_at=sent_at,
                        reason=f"{err}; the revocation may have happened: run `revoke-ops verify`",
                    )
                break
            log.debug(
                "batch %d (%d users): HTTP %d in %.0f ms, request-id %s",
                number,
                len(pending),
                response.status,
                (self.clock.monotonic() - started) * 1000,
                response.request_id,
            )
            pending = await self._classify(pending, response, sent_at)
            if pending:
                log.debug("batch %d: %d users to send again", number, len(pending))
        if self.journal is not None:
            self.journal.sync()

    def _retry_or_fail(
        self, pending: list[_Pending], code: str, reason: str, status: int | None, sent_at: str
    ) -> list[_Pending]:
        """Count one more failed attempt for each; return those with attempts left, record the rest."""
        retry = []
        for p in pending:
            p.attempts += 1
            if p.attempts < self.options.max_attempts:
                retry.append(p)
            else:
                self._record("failed", p.item, code=code, reason=reason, status=status, sent_at=sent_at)
        return retry

    async def _classify(self, pending: list[_Pending], response: GraphResponse, sent_at: str) -> list[_Pending]:
        """Record each user's outcome from a batch answer; return the users to send again."""
        percentage = response.headers.get("x-ms-throttle-limit-percentage")
        if percentage:
            with contextlib.suppress(ValueError):
                self.pacer.observe_limit(float(percentage))
        if response.status == 429:
            self.summary.throttled += 1
            self.pacer.pause(response.retry_after())
            return [p for p in pending if self._throttled(p, response.client_request_id, sent_at, None)]
        answers = response.body.get("responses") if isinstance(response.body, dict) else None
        if response.status == 200 and not isinstance(answers, list):
            # 200 but not a batch answer: the revocations may have happened.
            for p in pending:
                self._record(
                    "failed",
                    p.item,
                    code="UnreadableResponse",
                    status=200,
                    sent_at=sent_at,
                    reason="the batch answer held no responses; the revocation may have happened: "
                    "run `revoke-ops verify`",
                    client_request_id=response.client_request_id,
                )
            return []
        if response.status != 200 or not isinstance(answers, list):
            top_code = response.error_code or f"HTTP{response.status}"
            if response.status < 500:
                for p in pending:
                    self._record(
                        "failed",
                        p.item,
                        code=top_code,
                        reason=response.error_message,
                        status=response.status,
                        sent_at=sent_at,
                    )
                return []
            again = self._retry_or_fail(pending, top_code, response.error_message, response.status, sent_at)
            if again:
                await self.clock.sleep(max(response.retry_after(0), self._backoff(again[0].attempts)))
            return again
        by_id = {str(a.get("id")): a for a in answers if isinstance(a, dict)}
        retry: list[_Pending] = []
        pause = 0.0
        server_wait = 0.0
        backoff_attempt = 0
        for n, p in enumerate(pending):
            answer = by_id.get(str(n + 1))
            if answer is None:
                self._record(
                    "failed",
                    p.item,
                    code="MissingBatchItem",
                    sent_at=sent_at,
                    client_request_id=response.client_request_id,
                    reason="the batch answer had no entry for this request; it may have happened: run verify",
                )
                continue
            status = int(answer.get("status", 0))
            headers = {str(h).lower(): str(v) for h, v in (answer.get("headers") or {}).items()}
            raw_body = answer.get("body")
            body: dict[str, Any] = raw_body if isinstance(raw_body, dict) else {}
            raw_error = body.get("error")
            error: dict[str, Any] = raw_error if isinstance(raw_error, dict) else {}
            ids: dict[str, Any] = {
                "request_id": headers.get("request-id")
                or (error.get("innerError") or {}).get("request-id")
                or response.request_id,
                "client_request_id": headers.get("client-request-id") or response.client_request_id,
                "sent_at": sent_at,
                "status": status,
            }
            code: str | None = error.get("code")
            reason: str | None = error.get("message")
            if 200 <= status < 300:
                self._record("revoked", p.item, **ids)
            elif status == 404:
                self._record("not_found", p.item, code=code or "Request_ResourceNotFound", reason=reason, **ids)
            elif status == 403:
                if self.options.delegated:
                    reason = (
                        f"{reason} Your directory role does not cover this user: Helpdesk or Password Administrator "
                        "covers non-admins, User Administrator limited admins, Privileged Authentication "
                        "Administrator privileged admins."
                    )
                self._record("forbidden", p.item, code=code or "Authorization_RequestDenied", reason=reason, **ids)
            elif status == 429:
                self.summary.throttled += 1
                try:
                    pause = max(pause, float(headers.get("retry-after", "1")))
                except ValueError:
                    pause = max(pause, 1.0)
                if self._throttled(p, ids["client_request_id"], sent_at, ids["request_id"]):
                    retry.append(p)
            elif (status >= 500 or status == 0) and p.attempts + 1 < self.options.max_attempts:
                p.attempts += 1
                retry.append(p)
                backoff_attempt = max(backoff_attempt, p.attempts)
                # A 5xx item may say when to come back (503 with Retry-After): honour it, as for 429.
                with contextlib.suppress(ValueError):
                    server_wait = max(server_wait, float(headers.get("retry-after", "0")))
            else:
                self._record("failed", p.item, code=code or f"HTTP{status}", reason=reason, **ids)
        if pause:
            self.pacer.pause(pause)
        elif backoff_attempt:
            await self.clock.sleep(max(server_wait, self._backoff(backoff_attempt)))
        return retry

    def _throttled(self, p: _Pending, client_request_id: str | None, sent_at: str, request_id: str | None) -> bool:
        """Count a 429 for this user; True while it may be retried, else record it failed."""
        p.throttles += 1
        if p.throttles <= self.options.max_throttled:
            return True
        self._record(
            "failed",
            p.item,
            code="TooManyRequests",
            reason="still throttled after many retries",
            status=429,
            request_id=request_id,
            client_request_id=client_request_id,
            sent_at=sent_at,
        )
        return False


@dataclass(slots=True)
class _Pending:
    """One user of a batch being sent, with its retry counts."""

    item: Send
    attempts: int = 0  # failed attempts (5xx, connection errors, timeouts)
    throttles: int = 0  # 429s
