"""The pacer keeps to the write budget; the ETA comes from that budget, not the average so far."""

from __future__ import annotations

import asyncio

import pytest

from revoke_ops.engine import EngineOptions
from revoke_ops.errors import InputError
from revoke_ops.pacer import Pacer
from tests.unit.clock import FakeClock


def test_pacer_allows_the_burst_then_the_rate() -> None:
    clock = FakeClock()
    pacer = Pacer(clock, burst=100, rate=20)

    async def go() -> None:
        for _ in range(5):
            await pacer.acquire(20)  # the burst: no waiting
        assert clock.now == 0
        await pacer.acquire(20)  # then 20 writes need one second at 20/s
        assert clock.now == pytest.approx(1.0)
        pacer.pause(7)
        await pacer.acquire(1)
        assert clock.now >= 8.0

    asyncio.run(go())


def test_a_batch_larger_than_the_burst_keeps_to_the_rate() -> None:
    # With --write-burst 1 a batch of 20 cost one token: 20 writes a second at --write-rate 1, and an
    # ETA twenty times too long. The first batch goes at once; the bucket owes the rest.
    clock = FakeClock()
    pacer = Pacer(clock, burst=1, rate=1)

    async def go() -> None:
        await pacer.acquire(20)
        assert clock.now == 0
        assert pacer.eta(20) == pytest.approx(39.0)  # 19 owed, then 20 more at 1/s
        await pacer.acquire(20)
        assert clock.now == pytest.approx(20.0)  # 20 writes a second time: 20 s at 1/s
        await pacer.acquire(20)
        assert clock.now == pytest.approx(40.0)

    asyncio.run(go())


@pytest.mark.parametrize(
    ("rate", "pause", "need"),
    [(20.0, 7.0, 1), (20.0, 1.0, 3), (18.0, 9.0, 20), (16.2, 0.3, 1), (14.58, 7.0, 10)],
)
def test_acquire_after_a_pause_ends_despite_float_rounding(rate: float, pause: float, need: int) -> None:
    # The engine test with Retry-After: 7 hung: after the pause the refill came out a few 1e-15
    # tokens short, and the pacer asked for a sleep too small to move the clock, for ever.
    clock = FakeClock()
    pacer = Pacer(clock, burst=3000, rate=rate)
    pacer.pause(pause)

    async def go() -> None:
        await asyncio.wait_for(pacer.acquire(need), timeout=10)  # a spin yields, so this bounds it

    asyncio.run(go())
    assert clock.now == pytest.approx(pause + need / rate)
    assert len(clock.sleeps) <= 3, clock.sleeps
    assert all(s >= 1e-3 for s in clock.sleeps), "every wait moves time on"


def test_eta_from_the_budget_not_the_average_since_start() -> None:
    # Issue 11 #10: right after a burst of 2,540 the average rate says "ETA 20 s" for 2,540 more
    # at 20/s, which really takes 127 s.
    clock = FakeClock()
    pacer = Pacer(clock, burst=3000, rate=20)
    assert pacer.eta(2000) == 0.0  # all within the full bucket

    async def burst() -> None:
        await pacer.acquire(3000)

    asyncio.run(burst())
    clock.now = 2.0  # 40 tokens refilled
    assert pacer.eta(2540) == pytest.approx((2540 - 40) / 20)
    pacer.pause(30)
    assert pacer.eta(20) == pytest.approx(30 + 1.0)
    assert pacer.eta(0) == 0.0


def test_held_pacer_lets_nobody_send_until_released() -> None:
    clock = FakeClock()
    pacer = Pacer(clock, burst=10, rate=1)

    async def go() -> bool:
        pacer.hold()
        waiting = asyncio.ensure_future(pacer.acquire(1))
        await asyncio.sleep(0.01)
        held = not waiting.done()
        pacer.release()
        await waiting
        return held

    assert asyncio.run(go())


@pytest.mark.parametrize(
    ("values", "option"),
    [
        ({"write_rate": 0}, "--write-rate"),
        ({"write_rate": float("inf")}, "--write-rate"),
        ({"write_burst": -5}, "--write-burst"),
        ({"concurrency": 0}, "--concurrency"),
        ({"max_attempts": 0}, "--max-attempts"),
        ({"max_retry_wait": 0}, "--max-retry-wait"),
        ({"max_retry_wait": float("nan")}, "--max-retry-wait"),
        ({"batch_size": 21}, "batch size"),
    ],
)
def test_engine_options_are_validated_naming_the_option(values: dict[str, float], option: str) -> None:
    with pytest.raises(InputError, match=f"^{option} must be"):
        EngineOptions(**values)  # type: ignore[arg-type]
