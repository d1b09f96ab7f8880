"""The write pacer: a token bucket at Graph's published write budget, with a shared pause.

Microsoft Graph allows 3,000 writes per app and tenant per 150 s (identity and access service),
described as a token bucket: a full bucket allows a burst, then the refill rate (20/s). A 429
(top level or inside a batch) pauses every sender for its Retry-After (capped by the caller);
``x-ms-throttle-limit-percentage`` near 1 slows the refill.
"""

from __future__ import annotations

import asyncio
import logging

from revoke_ops.retry import Clock

__all__ = ["Pacer"]

log = logging.getLogger(__name__)

#: A bucket this close to what is needed is full enough. The refill is float arithmetic: after a
#: pause of 7 s and a wait of 1/20 s the bucket holds 0.9999999999999964 tokens, and the remaining
#: 3.6e-15 asked for a 1.8e-16 s sleep that a clock cannot represent (``7.05 + 1.8e-16 == 7.05``),
#: so a virtual clock never moved and ``acquire`` spun for ever.
_EPSILON = 1e-6
#: The shortest wait asked of the clock: every wait moves time on by a representable amount.
_MIN_WAIT = 1e-3


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
        self._open = asyncio.Event()  # cleared while every sender must hold (a token is being renewed)
        self._open.set()

    def _refill(self) -> None:
        now = self.clock.monotonic()
        if now > self.updated:
            self.tokens = min(self.capacity, self.tokens + (now - self.updated) * self.rate)
            self.updated = now

    async def acquire(self, n: int) -> None:
        """Wait until ``n`` writes may be sent.

        A request larger than the bucket (a batch of 20 with ``--write-burst`` below 20) goes once the
        bucket is full and leaves it owing the rest: the next one waits for the debt to refill too, so
        the rate asked for holds (capping the cost at the bucket sent 20/burst times the rate).
        """
        need = min(float(n), self.capacity)
        async with self._lock:
            while True:
                await self._open.wait()
                now = self.clock.monotonic()
                if now < self.paused_until:
                    await self.clock.sleep(max(_MIN_WAIT, self.paused_until - now))
                    continue
                self._refill()
                if self.tokens >= need - _EPSILON:
                    self.tokens = max(0.0, self.tokens - need) - (float(n) - need)
                    return
                await self.clock.sleep(max(_MIN_WAIT, (need - self.tokens) / self.rate))

    def pause(self, seconds: float) -> None:
        """Nobody sends for ``seconds`` (Graph said Retry-After, or tokens are unavailable); the bucket starts empty."""
        until = self.clock.monotonic() + seconds
        if until > self.paused_until:
            log.debug("pause of %.1f s: every sender waits", seconds)
            self.paused_until = until
            self.tokens = 0.0
            self.updated = until

    def hold(self) -> None:
        """Nobody sends until :meth:`release` (while a refused token is renewed)."""
        self._open.clear()

    def release(self) -> None:
        self._open.set()

    def paused_for(self) -> float:
        """Seconds left of the current pause (0 when none)."""
        return max(0.0, self.paused_until - self.clock.monotonic())

    def eta(self, remaining: int) -> float:
        """Seconds until ``remaining`` more writes can be sent at this budget: the pause, then the bucket.

        An estimate from the budget, not the average since start: a burst that went out at once says
        nothing about the rest, which goes at the refill rate.
        """
        if remaining <= 0:
            return 0.0
        now = self.clock.monotonic()
        paused = max(0.0, self.paused_until - now)
        tokens = self.tokens if paused else min(self.capacity, self.tokens + max(0.0, now - self.updated) * self.rate)
        return paused + max(0.0, remaining - tokens) / self.rate

    def observe_limit(self, fraction: float) -> None:
        """Adapt to ``x-ms-throttle-limit-percentage``: slow down as Graph nears its limit."""
        before = self.rate
        if fraction >= 0.95:
            self.rate = max(self.base_rate * 0.5, self.rate * 0.9)
        elif fraction < 0.85 and self.rate < self.base_rate:
            self.rate = min(self.base_rate, self.rate * 1.1)
        if self.rate != before:
            log.debug("Graph reports %.0f %% of its limit used: write rate %.1f/s", fraction * 100, self.rate)
