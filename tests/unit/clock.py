"""Virtual time for the fast tier: sleeping advances it at once."""

from __future__ import annotations

import asyncio


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []

    def monotonic(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        # A positive sleep too small to move the clock (float absorption) means the caller loops
        # waiting for time that never comes: fail at once rather than spin and grow ``sleeps``.
        if seconds > 0 and self.now + seconds == self.now:
            raise AssertionError(f"sleep({seconds!r}) at {self.now!r} does not move virtual time: caller would spin")
        self.sleeps.append(seconds)
        self.now += max(0.0, seconds)
        await asyncio.sleep(0)
