"""Group and file runs by activity: the cost of reading the windows, and the exact target keys."""

from __future__ import annotations

import uuid

from revoke_ops.activity_plan import READ_SHARE, TargetKeys, read_cost


def test_read_cost_counts_full_pages_plus_one_partial_per_listing_beyond_the_burst() -> None:
    cost = read_cost([1000, 1001], used=3, per_minute=10, basis="counted")
    assert cost.pages == 2 + 2 + 8  # full pages of 500; four windows x two properties each end once
    assert cost.seconds == (cost.pages + 3 - 10) * 6.0  # ten reads at once, then one every 6 s
    assert read_cost([10, 10], used=2, per_minute=10, basis="").seconds == 0.0  # within the burst
    assert read_cost([10**6, 10**6], used=0, per_minute=0, basis="").seconds == 0.0  # unpaced
    assert 0 < READ_SHARE <= 1


def test_target_keys_match_exactly_by_id_or_upn() -> None:
    uid = str(uuid.uuid4())
    keys = TargetKeys([uid.upper(), "alice@contoso.example"])
    assert keys.match({"id": uid, "userPrincipalName": "x@contoso.example"}) == uid
    other = str(uuid.uuid4())
    assert keys.match({"id": other, "userPrincipalName": "Alice@Contoso.example"}) == "alice@contoso.example"
    assert keys.match({"id": str(uuid.uuid4()), "userPrincipalName": "alice@contoso.exampl"}) is None
    assert keys.match({}) is None and len(keys) == 2


def test_group_members_are_collected_while_the_windows_are_read() -> None:
    """A member already listed is yielded at once; the others wait for the listing, never past their
    window; non-members never; every member in the windows once, in window order."""
    import asyncio
    from datetime import UTC, datetime, timedelta
    from typing import Any

    from revoke_ops.activity import ActivityOrder, format_time, window_of
    from revoke_ops.activity_plan import scoped_windows
    from tests.revoke_ops.test_activity import FakeGraph

    now = datetime(2026, 12, 7, 12, tzinfo=UTC)
    ages = [timedelta(hours=2), timedelta(days=3), timedelta(days=20), timedelta(days=60), timedelta(days=300)]
    users: list[dict[str, Any]] = []
    for n in range(50):
        stamp = format_time(now - ages[n % 5])
        users.append({"id": str(uuid.UUID(int=n + 1)), "signInActivity": {"lastSignInDateTime": stamp}})
    members = [u["id"] for u in users if int(u["id"][-4:], 16) % 3]  # two thirds of the tenant
    order: list[str] = []

    async def go() -> list[tuple[str, str]]:
        first = asyncio.Event()

        async def member_ids() -> Any:
            for n, uid in enumerate(members):
                if n == 5:
                    # The rest of the listing comes only after a member was yielded: a run that waited
                    # for the whole listing before its first revocation times out here. An event, not
                    # a race of sleeps, so a loaded machine cannot change the order.
                    try:
                        await asyncio.wait_for(first.wait(), 10)
                    except TimeoutError:
                        raise AssertionError("the first member was not yielded before the listing ended") from None
                order.append(f"listed {uid}")
                yield uid

        class SlowGraph(FakeGraph):
            async def read(self, url: str, headers: Any = None, *, page: bool = False) -> Any:
                await asyncio.sleep(0)  # a round trip: the member listing runs meanwhile
                return await super().read(url, headers, page=page)

        graph = SlowGraph(users)
        got = []
        activity = ActivityOrder(now, reads_per_minute=0)
        async for user, key in scoped_windows(graph, activity, TargetKeys(), member_ids()):  # type: ignore[arg-type]
            order.append(f"yielded {user['id']}")
            got.append((user["id"], key))
            first.set()
        return got

    got = asyncio.run(go())
    expected = {u for u in members if window_of(now - ages[(int(u[-4:], 16) - 1) % 5], now) is not None}
    assert sorted(uid for uid, _ in got) == sorted(expected) and len(got) == len(expected)
    assert all(uid == key for uid, key in got)
    windows_seen = [window_of(now - ages[(int(uid[-4:], 16) - 1) % 5], now) for uid, _ in got]
    assert windows_seen == sorted(windows_seen)  # type: ignore[type-var]
    first_yield = next(i for i, e in enumerate(order) if e.startswith("yielded"))
    last_listed = max(i for i, e in enumerate(order) if e.startswith("listed"))
    assert first_yield < last_listed, "the first revocation does not wait for the whole member listing"
