"""Activity ordering's pure logic: windows, timestamps, the exact seen set, pacing, and the listing
order against a fake Graph that filters as the real one documents (``ge``/``le`` per property)."""

from __future__ import annotations

import asyncio
import re
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from revoke_ops.activity import (
    PAGE_SIZE,
    ReadPacer,
    SeenIds,
    format_time,
    inactive_for,
    last_activity,
    ordered_users,
    parse_time,
    unavailable_reason,
    window_of,
    windows,
)
from revoke_ops.graph import GraphResponse

NOW = datetime(2026, 12, 7, 12, 0, 0, tzinfo=UTC)


def user(uid: str, interactive: datetime | None = None, silent: datetime | None = None) -> dict[str, Any]:
    activity = {
        "lastSignInDateTime": format_time(interactive) if interactive else None,
        "lastNonInteractiveSignInDateTime": format_time(silent) if silent else None,
    }
    out: dict[str, Any] = {"id": uid, "userPrincipalName": f"{uid[:8]}@contoso.example"}
    if interactive or silent:
        out["signInActivity"] = activity
    return out


def test_windows_are_most_recent_first_and_share_boundaries() -> None:
    ws = windows(NOW)
    assert [w.days for w in ws] == [1, 7, 30, 90]
    assert ws[0].until is None and ws[0].since == NOW - timedelta(days=1)
    assert ws[1].until == ws[0].since and ws[3].until == ws[2].since
    assert ws[0].filters() == [
        "signInActivity/lastSignInDateTime ge 2026-12-06T12:00:00Z",
        "signInActivity/lastNonInteractiveSignInDateTime ge 2026-12-06T12:00:00Z",
    ]
    assert ws[1].filters()[1] == (
        "signInActivity/lastNonInteractiveSignInDateTime ge 2026-11-30T12:00:00Z and "
        "signInActivity/lastNonInteractiveSignInDateTime le 2026-12-06T12:00:00Z"
    )
    assert ws[0].label == "active within 1 day" and ws[2].label == "active within 30 days"


def test_timestamps_parse_graph_forms_and_never() -> None:
    assert parse_time("2026-12-07T10:00:00Z") == datetime(2026, 12, 7, 10, tzinfo=UTC)
    assert parse_time("2026-12-07T10:00:00.1234567Z") == datetime(2026, 12, 7, 10, 0, 0, 123456, tzinfo=UTC)
    assert parse_time("2026-12-07T10:00:00.123456Z") == datetime(2026, 12, 7, 10, 0, 0, 123456, tzinfo=UTC)
    assert parse_time("0001-01-01T00:00:00Z") is None  # Graph's "never"
    assert parse_time(None) is None and parse_time("") is None and parse_time("yesterday") is None


def test_last_activity_is_the_later_of_interactive_and_non_interactive() -> None:
    a, b = NOW - timedelta(days=40), NOW - timedelta(hours=3)
    assert last_activity(user("u", a, b)) == b
    assert last_activity(user("u", b, a)) == b
    assert last_activity(user("u", None, a)) == a
    assert last_activity(user("u")) is None
    assert window_of(b, NOW) == 0 and window_of(a, NOW) == 3
    assert window_of(NOW - timedelta(days=200), NOW) is None and window_of(None, NOW) is None


def test_inactive_for_counts_never_signed_in_as_inactive() -> None:
    assert inactive_for(None, NOW, 90)
    assert inactive_for(NOW - timedelta(days=91), NOW, 90)
    assert not inactive_for(NOW - timedelta(days=89), NOW, 90)


def test_seen_ids_are_exact_and_case_insensitive() -> None:
    seen = SeenIds()
    uid = str(uuid.uuid4())
    assert seen.add(uid) and not seen.add(uid.upper())
    assert uid.upper() in seen and str(uuid.uuid4()) not in seen
    assert seen.add("not-a-guid") and "NOT-A-GUID" in seen and len(seen) == 2


def test_read_pacer_allows_a_burst_of_ten_then_one_every_six_seconds() -> None:
    clock = [0.0]
    slept: list[float] = []

    async def sleep(seconds: float) -> None:
        slept.append(seconds)
        clock[0] += seconds

    pacer = ReadPacer(10, monotonic=lambda: clock[0], sleep=sleep)

    async def reads(n: int) -> None:
        for _ in range(n):
            await pacer.wait()

    asyncio.run(reads(12))
    assert slept == pytest.approx([6.0, 6.0])  # ten at once, then one every 6 s
    clock[0] += 60.0  # a quiet minute refills the bucket
    slept.clear()
    asyncio.run(reads(10))
    assert slept == []


def test_refusals_are_explained_in_the_operators_terms() -> None:
    licence = unavailable_reason(403, "Authentication_RequestFromNonPremiumTenantOrB2CTenant", "Neither tenant ...")
    assert licence and "P1/P2" in licence
    permission = unavailable_reason(403, "Authentication_MSGraphPermissionMissing", "AuditLog.Read.All")
    assert permission and "AuditLog.Read.All" in permission and "readPermissions" in permission
    assert unavailable_reason(500, "x", "y") is None


# -- the listing against a fake Graph ------------------------------------------------------------
_CLAUSE = re.compile(r"signInActivity/(\w+) (ge|le) (\S+)")


class FakeGraph:
    """Answers the listing requests as Graph documents them: per-property ge/le, 500 per page."""

    def __init__(self, users: list[dict[str, Any]]) -> None:
        self.users = users
        self.urls: list[str] = []
        self.page_reads = 0

    def _match(self, u: dict[str, Any], text: str) -> bool:
        activity = u.get("signInActivity") or {}
        for prop, op, value in _CLAUSE.findall(text):
            moment = parse_time(activity.get(prop))
            bound = parse_time(value)
            assert bound is not None
            if moment is None or (moment < bound if op == "ge" else moment > bound):
                return False
        return True

    def _page(self, url: str) -> dict[str, Any]:
        query = parse_qs(urlsplit(url).query)
        top = int(query["$top"][0])
        assert ("signInActivity" not in url) or top <= PAGE_SIZE
        start = int(query.get("$skiptoken", ["0"])[0])
        text = query.get("$filter", [""])[0]
        rows = [u for u in self.users if not text or self._match(u, text)]
        body: dict[str, Any] = {"value": rows[start : start + top]}
        if start + top < len(rows):
            base = url.split("&$skiptoken=")[0]
            body["@odata.nextLink"] = f"{base}&$skiptoken={start + top}"
        return body

    async def read(self, url: str, headers: dict[str, str] | None = None, *, page: bool = False) -> GraphResponse:
        self.urls.append(url)
        self.page_reads += page
        return GraphResponse(200, {}, self._page(url), "cid")

    async def pages(self, url: str, headers: dict[str, str] | None = None) -> Any:
        next_url: str | None = url
        while next_url:
            response = await self.read(next_url, page=True)  # as GraphSession.pages does
            yield response.body["value"]
            next_url = response.body.get("@odata.nextLink")


def _listed(graph: FakeGraph, **kwargs: Any) -> list[tuple[str, int | None]]:
    async def go() -> list[tuple[str, int | None]]:
        pacer = ReadPacer(0)
        out = []
        async for u, window in ordered_users(graph, NOW, pacer=pacer, **kwargs):  # type: ignore[arg-type]
            out.append((u["id"], None if window is None else window.index))
        return out

    return asyncio.run(go())


moments = st.one_of(
    st.none(),
    st.integers(min_value=0, max_value=200 * 24).map(lambda h: NOW - timedelta(hours=h)),
    st.sampled_from([NOW - timedelta(days=d) for d in (1, 7, 30, 90)]),  # exactly on a boundary
)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(moments, moments), max_size=40))
def test_every_user_once_in_the_window_of_their_latest_activity(stamps: list[tuple[Any, Any]]) -> None:
    users = [user(str(uuid.UUID(int=n + 1)), a, b) for n, (a, b) in enumerate(stamps)]
    listed = _listed(FakeGraph(users))
    ids = [uid for uid, _ in listed]
    assert sorted(ids) == sorted(u["id"] for u in users)  # everyone, once
    windows_seen = [w if w is not None else 99 for _, w in listed]
    assert windows_seen == sorted(windows_seen)  # most recent window first, the rest last
    by_id = {u["id"]: u for u in users}
    for uid, window in listed:
        expected = window_of(last_activity(by_id[uid]), NOW)
        if expected is not None and window is not None:
            # a timestamp exactly on a boundary may be listed in the more recent window
            assert window in (expected, expected - 1)
        else:
            assert window == expected


def test_pages_hold_at_most_500_and_the_final_pass_uses_the_plain_listing() -> None:
    users = [user(str(uuid.UUID(int=n + 1)), NOW - timedelta(hours=2)) for n in range(1200)]
    users += [user(str(uuid.UUID(int=5000 + n))) for n in range(30)]
    graph = FakeGraph(users)
    listed = _listed(graph)
    assert [w for _, w in listed[:1200]] == [0] * 1200 and [w for _, w in listed[1200:]] == [None] * 30
    activity_reads = [u for u in graph.urls if "signInActivity" in u]
    assert all("$top=500" in u for u in activity_reads)
    assert graph.urls[-1].startswith("/users?$select=") and "$top=999" in graph.urls[-1]


def test_every_activity_listing_read_is_a_page_read() -> None:
    """Each read asks GraphSession for a collection page, so a 200 without 'value' is retried and then
    fails the run instead of silently ending the tenant's listing (issue 10 #1)."""
    graph = FakeGraph([{"id": f"{i:08x}-0000-4000-8000-000000000000", "signInActivity": {}} for i in range(3)])
    assert len(_listed(graph)) == 3
    assert graph.urls and graph.page_reads == len(graph.urls)


def test_final_pass_can_read_activity_for_skip_decisions() -> None:
    users = [user("0f0f0f0f-0000-4000-8000-000000000001", None, NOW - timedelta(days=300)), user("x")]
    graph = FakeGraph(users)
    listed = _listed(graph, final_with_activity=True)
    assert listed == [("0f0f0f0f-0000-4000-8000-000000000001", None), ("x", None)]
    assert "signInActivity" in graph.urls[-1] and "$top=500" in graph.urls[-1]


# -- when Graph refuses a window's filter (400) ----------------------------------------------------
class RefusingGraph(FakeGraph):
    """Answers 400 to filters with an upper bound ('range'), or to every signInActivity filter ('filter')."""

    def __init__(self, users: list[dict[str, Any]], refuse: str) -> None:
        super().__init__(users)
        self.refuse = refuse

    async def read(self, url: str, headers: dict[str, str] | None = None, *, page: bool = False) -> GraphResponse:
        text = parse_qs(urlsplit(url).query).get("$filter", [""])[0]
        if text and (self.refuse == "filter" or " le " in text):
            self.urls.append(url)
            body = {"error": {"code": "Request_UnsupportedQuery", "message": "Unsupported query."}}
            return GraphResponse(400, {}, body, "cid")
        return await super().read(url, headers, page=page)


@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(moments, moments), max_size=30))
def test_refused_ranges_keep_the_order_with_open_ended_windows(stamps: list[tuple[Any, Any]]) -> None:
    users = [user(str(uuid.UUID(int=n + 1)), a, b) for n, (a, b) in enumerate(stamps)]
    graph = RefusingGraph(users, "range")
    assert _listed(graph) == _listed(FakeGraph(users)), "the same users, once each, in the same windows"
    assert [u for u in graph.urls if " le " in parse_qs(urlsplit(u).query).get("$filter", [""])[0]], "ranges tried"


def test_a_refused_open_ended_filter_is_a_filter_refusal_naming_the_filter() -> None:
    from revoke_ops.activity import FilterRefusedError

    graph = RefusingGraph([user("0f0f0f0f-0000-4000-8000-000000000001", NOW - timedelta(hours=1))], "filter")
    with pytest.raises(FilterRefusedError) as caught:
        _listed(graph)
    assert "signInActivity/lastSignInDateTime ge" in caught.value.reason and "400" in caught.value.reason


def test_keep_limits_the_windows_to_targets_and_final_false_stops_after_them() -> None:
    ids = [str(uuid.UUID(int=n + 1)) for n in range(6)]
    users = [user(ids[0], NOW - timedelta(days=20)), user(ids[1], NOW - timedelta(hours=1)), user(ids[2])]
    users += [user(ids[3], None, NOW - timedelta(days=3)), user(ids[4], NOW - timedelta(hours=2)), user(ids[5])]
    targets = {ids[0], ids[1], ids[2], ids[3]}
    listed = _listed(FakeGraph(users), final=False, keep=lambda u: u["id"] in targets)
    assert listed == [(ids[1], 0), (ids[3], 1), (ids[0], 2)], "targets only, by window; no final pass"


class LaterRefusingGraph(FakeGraph):
    """Serves the first ``allowed`` signInActivity reads, then answers 400 to every filter on it."""

    def __init__(self, users: list[dict[str, Any]], allowed: int) -> None:
        super().__init__(users)
        self.allowed = allowed

    async def read(self, url: str, headers: dict[str, str] | None = None, *, page: bool = False) -> GraphResponse:
        if "signInActivity" in parse_qs(urlsplit(url).query).get("$filter", [""])[0]:
            if self.allowed <= 0:
                self.urls.append(url)
                body = {"error": {"code": "Request_UnsupportedQuery", "message": "Unsupported query."}}
                return GraphResponse(400, {}, body, "cid")
            self.allowed -= 1
        return await super().read(url, headers, page=page)


@pytest.mark.parametrize("scope", ["tenant", "group", "file"])
@pytest.mark.parametrize("allowed", [0, 1, 3, 7])
def test_a_filter_refused_mid_run_loses_nobody_and_repeats_nobody(scope: str, allowed: int, caplog: Any) -> None:
    """Whatever window Graph starts refusing at, every target is yielded once: the windows' users
    already sent, then the rest in listing (or given) order."""
    from revoke_ops.activity import ActivityOrder
    from revoke_ops.directory import Capabilities
    from revoke_ops.resolve import Plan, stream

    hours = [1, 30, 24 * 5, 24 * 20, 24 * 60, 24 * 200]
    users = [user(str(uuid.UUID(int=n + 1)), NOW - timedelta(hours=hours[n % 6])) for n in range(60)]
    users += [user(str(uuid.UUID(int=1000 + n))) for n in range(5)]
    for u in users:
        u["@odata.type"] = "#microsoft.graph.user"
    graph = LaterRefusingGraph(users, allowed)
    expected = [u["id"] for u in users]
    plan = Plan(activity=ActivityOrder(NOW, reads_per_minute=0))
    if scope == "tenant":
        plan.all_users = True
    elif scope == "group":
        plan.group = "0f0f0f0f-0000-4000-8000-00000000000f"
        expected = expected[::2]
        members = [users[i] for i in range(0, len(users), 2)]

        async def group_pages(url: str, headers: dict[str, str] | None = None) -> Any:
            yield members

        graph.pages = group_pages  # type: ignore[method-assign]
    else:
        expected = expected[1::2]
        plan.users = list(expected)  # looked up by id (the fake answers every user; lookup keeps the asked)

    caps = Capabilities(frozenset({"User.Read.All", "GroupMember.Read.All", "AuditLog.Read.All"}))

    async def go() -> list[str]:
        return [item.id or "" async for item in stream(plan, graph, caps)]  # type: ignore[arg-type]

    got = asyncio.run(go())
    assert sorted(got) == sorted(expected) and len(got) == len(set(got)), "everyone once"
    stopped = [r for r in caplog.records if "activity ordering stopped" in r.getMessage()]
    assert len(stopped) == 1 and "Graph refused the sign-in activity filter" in stopped[0].getMessage()
