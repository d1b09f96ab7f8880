"""The one retry policy: backoff, Retry-After in both forms, the cap."""

from __future__ import annotations

import math
import random
from datetime import UTC, datetime

import pytest

from revoke_ops.retry import READ, WRITE, RetryPolicy, parse_retry_after

NOW = datetime(2026, 12, 7, 14, 0, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("header", "seconds"),
    [
        ("7", 7.0),
        (" 30 ", 30.0),
        ("2.5", 2.5),
        ("-3", 0.0),
        ("Mon, 07 Dec 2026 14:01:30 GMT", 90.0),  # an HTTP-date, 90 s from now (was read as 1 s)
        ("Mon, 07 Dec 2026 13:59:00 GMT", 0.0),  # in the past: go now
        ("inf", math.inf),  # the caller's cap applies
        ("3600", 3600.0),
    ],
)
def test_retry_after_both_forms(header: str, seconds: float) -> None:
    assert parse_retry_after(header, NOW) == seconds


@pytest.mark.parametrize("header", [None, "", "soon", "nan", "Mon, 99 Foo 2026"])
def test_unreadable_retry_after_is_none(header: str | None) -> None:
    assert parse_retry_after(header, NOW) is None


def test_a_retry_after_beyond_the_cap_is_cut_and_flagged() -> None:
    policy = RetryPolicy(max_retry_wait=120)
    assert policy.capped(30).seconds == 30 and not policy.capped(30).capped
    long = policy.capped(3600)
    assert (long.seconds, long.asked, long.capped) == (120, 3600, True)
    forever = policy.wait(1, math.inf)
    assert forever.seconds == 120 and forever.capped


def test_backoff_doubles_with_jitter_up_to_the_maximum() -> None:
    policy = RetryPolicy(backoff_factor=1.0, backoff_max=8.0, rng=random.Random(3))
    for attempt, full in [(1, 1.0), (2, 2.0), (3, 4.0), (4, 8.0), (9, 8.0)]:
        delay = policy.get_backoff_time(attempt)
        assert full * 0.5 <= delay <= full, (attempt, delay)
    exact = RetryPolicy(backoff_factor=0.5, backoff_max=60, jitter=False)
    assert [exact.get_backoff_time(a) for a in (1, 2, 3)] == [0.5, 1.0, 2.0]


def test_what_is_retried_and_when_to_give_up() -> None:
    assert all(READ.is_retry(s) for s in (408, 429, 500, 502, 503, 504))
    assert not any(READ.is_retry(s) for s in (200, 400, 401, 403, 404, 409))
    assert not READ.is_exhausted(READ.total - 1) and READ.is_exhausted(READ.total)
    assert WRITE.total == 10 and WRITE.max_retry_wait == 120
