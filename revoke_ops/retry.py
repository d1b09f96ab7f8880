"""One retry policy for every request revoke_ops repeats: reads, lookups, verify and the engine's writes.

Shaped like azure-core's ``RetryPolicy``: ``total`` attempts, exponential backoff
(``backoff_factor * 2 ** (attempt - 1)``, at most ``backoff_max``) with jitter, ``parse_retry_after``
for both forms Graph may send (delta-seconds, or an HTTP-date), ``is_retry`` for what is worth
repeating. A service's Retry-After is honoured up to ``max_retry_wait`` per pause: beyond it the
caller waits the cap and counts the attempt as failed (retried later), never an indefinite wait
(Retry-After: 3600, or ``inf``).

Waiting happens through a :class:`Clock` the caller injects, so tests run in virtual time.
"""

from __future__ import annotations

import asyncio
import math
import random
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Protocol

__all__ = [
    "READ",
    "RETRY_STATUSES",
    "WRITE",
    "Clock",
    "RealClock",
    "RetryPolicy",
    "Wait",
    "parse_retry_after",
]

#: What is worth repeating: timeouts, throttling, and the service's own failures.
RETRY_STATUSES = frozenset({408, 429, 500, 502, 503, 504})
#: The longest single pause (``--max-retry-wait``); azure-core's ``retry_backoff_max`` defaults to the
#: same 120 s. Mid-incident an operator should never wait on a pause they cannot see the end of.
DEFAULT_MAX_RETRY_WAIT = 120.0


class Clock(Protocol):
    """Time for pacing and waiting; tests pass a virtual one."""

    def monotonic(self) -> float: ...

    async def sleep(self, seconds: float) -> None: ...


class RealClock:
    def monotonic(self) -> float:
        return time.monotonic()

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(max(0.0, seconds))


def parse_retry_after(value: str | None, now: datetime | None = None) -> float | None:
    """Seconds a ``Retry-After`` header asks for, or None when absent or unreadable.

    Both RFC 9110 forms: delta-seconds (``"7"``; Graph also sends ``"7.5"`` on some paths) and an
    HTTP-date (``"Wed, 21 Oct 2026 07:28:00 GMT"``, counted from ``now``). Infinite values come back
    as ``math.inf`` so the caller's cap applies; negative ones as 0.
    """
    if value is None:
        return None
    text = value.strip()
    if not text:
        return None
    try:
        seconds = float(text)
    except ValueError:
        try:
            when = parsedate_to_datetime(text)
        except (TypeError, ValueError, IndexError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())
    if math.isnan(seconds):
        return None
    return max(0.0, seconds)


@dataclass(frozen=True)
class Wait:
    """How long to wait before the next attempt, and whether the service asked for longer (``capped``)."""

    seconds: float
    asked: float | None = None  # the service's Retry-After, if it gave one
    capped: bool = False  # Retry-After was beyond max_retry_wait: count the attempt as failed


@dataclass(frozen=True)
class RetryPolicy:
    """How many times, and after how long, a request is repeated.

    :param total: attempts in all (the first one included).
    :param backoff_factor: the first backoff in seconds; doubles with every attempt.
    :param backoff_max: no backoff is longer than this.
    :param max_retry_wait: no single pause is longer than this, whatever Retry-After says.
    :param jitter: each backoff is drawn from 50-100 % of its value (senders do not retry in lockstep).
    """

    total: int = 6
    backoff_factor: float = 0.2
    backoff_max: float = 5.0
    max_retry_wait: float = DEFAULT_MAX_RETRY_WAIT
    jitter: bool = True
    statuses: frozenset[int] = RETRY_STATUSES
    rng: random.Random = field(default_factory=random.Random, compare=False, repr=False)

    def is_retry(self, status: int) -> bool:
        """Whether an answer with this status is worth sending again."""
        return status in self.statuses

    def is_exhausted(self, attempt: int) -> bool:
        """``attempt`` attempts have failed: no more."""
        return attempt >= self.total

    def get_backoff_time(self, attempt: int) -> float:
        """The backoff after ``attempt`` failed attempts (1 = the first one failed)."""
        delay = min(self.backoff_max, self.backoff_factor * 2 ** max(0, attempt - 1))
        if self.jitter:
            delay *= 0.5 + self.rng.random() / 2
        return float(delay)

    def wait(self, attempt: int, retry_after: float | None = None) -> Wait:
        """How long to wait after ``attempt`` failed attempts, honouring the service's Retry-After (capped)."""
        if retry_after is None:
            return Wait(min(self.get_backoff_time(attempt), self.max_retry_wait))
        if retry_after > self.max_retry_wait:
            return Wait(self.max_retry_wait, retry_after, capped=True)
        return Wait(retry_after, retry_after)

    def capped(self, retry_after: float) -> Wait:
        """A Retry-After on its own (a shared pause for throttling), capped at ``max_retry_wait``."""
        if retry_after > self.max_retry_wait:
            return Wait(self.max_retry_wait, retry_after, capped=True)
        return Wait(retry_after, retry_after)


#: Reads (pages, lookups, verify): a few quick attempts; Graph's Retry-After honoured up to the cap.
READ = RetryPolicy(total=6, backoff_factor=0.2, backoff_max=5.0)
#: The engine's writes: revocation is idempotent, so a request that may not have arrived is sent again.
WRITE = RetryPolicy(total=10, backoff_factor=1.0, backoff_max=60.0)
