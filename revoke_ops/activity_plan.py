"""Deciding, before a run, whether it goes by sign-in activity (docs/activity-ordering.md).

Whole-tenant runs go by activity whenever Graph serves it. Group and file runs walk the same
tenant-wide windows and keep only their targets, so for a small group in a large tenant reading the
windows costs more time than ordering saves: the windows' ``$count`` (two requests) estimates the
pages to read at Graph's 10 a minute, and the run goes by activity only when that reading takes at
most half the time revoking the targets takes at the write budget. Otherwise it keeps listing order
and says why once.

Also here: the target sets a group or file run keeps (exact ids and UPNs), and the whole-tenant
``--skip-inactive-days`` estimate (the skip decisions are in :mod:`revoke_ops.activity_skip`).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import quote

from revoke_ops.activity import (
    PAGE_SIZE,
    PROPERTIES,
    WINDOW_DAYS,
    ActivityOrder,
    ReadPacer,
    SeenIds,
    activity_available,
    format_time,
    ordered_users,
    probe_activity,
    refused_filter,
    skip_window_days,
)
from revoke_ops.directory import READ_ROLES, USER_TYPE
from revoke_ops.errors import InputError
from revoke_ops.graph import ADVANCED_HEADERS, GraphSession
from revoke_ops.request import RevokeRequest
from revoke_ops.targets import Target

__all__ = [
    "READ_SHARE",
    "ReadCost",
    "TargetKeys",
    "activity_order",
    "file_keys",
    "group_member_ids",
    "read_cost",
    "scoped_windows",
    "skip_estimate",
]

log = logging.getLogger(__name__)

#: A group or file run goes by activity when reading the windows takes at most this share of the
#: time revoking its targets takes at the write budget: in the worst case (no target active) the run
#: is that much longer; usually less, as the active targets are revoked while the windows are read.
READ_SHARE = 0.5


@dataclass(frozen=True)
class ReadCost:
    """What reading the tenant's activity windows costs: requests, and seconds at the read limit."""

    pages: int
    seconds: float
    basis: str  # how the pages were estimated, in the operator's terms


def read_cost(active: list[int], used: int, per_minute: float, basis: str, windows: int = len(WINDOW_DAYS)) -> ReadCost:
    """The windows' reading cost, from how many users each timestamp has within the last window.

    Each window is listed once per property (500 a page): at most the full pages of all windows plus
    one last (partial or empty) page per listing. The first ``per_minute`` reads (less those ``used``
    deciding) go at once, then one every ``60 / per_minute`` seconds.
    """
    pages = sum(n // PAGE_SIZE for n in active) + windows * len(PROPERTIES)
    if per_minute <= 0:
        return ReadCost(pages, 0.0, basis)
    waiting = max(0.0, pages + used - per_minute)
    return ReadCost(pages, waiting * 60.0 / per_minute, basis)


async def _count(session: GraphSession, url: str) -> int | None:
    response = await session.read(url, headers=dict(ADVANCED_HEADERS))
    if response.status == 200 and isinstance(response.body, dict) and "@odata.count" in response.body:
        return int(response.body["@odata.count"])
    if response.status == 400:
        log.info("%s", refused_filter(url, response.error_code, response.error_message))
    return None


def _active_url(prop: str, since: datetime) -> str:
    text = quote(f"signInActivity/{prop} ge {format_time(since)}", safe="")
    return f"/users?$count=true&$top=1&$select=id&$filter={text}"


async def _window_cost(
    session: GraphSession, now: datetime, per_minute: float, days: tuple[int, ...] = WINDOW_DAYS
) -> tuple[ReadCost | None, int]:
    """The windows' cost from Graph's counts (each a signInActivity read), or, if Graph does not count
    with a filter on signInActivity, an upper bound from the tenant's size; and the reads it used."""
    since = now - timedelta(days=max(days))
    active: list[int] = []
    used = 0
    for prop in PROPERTIES:
        used += 1
        count = await _count(session, _active_url(prop, since))
        if count is None:
            break
        active.append(count)
    # used + 1: the probe was read before the counts
    if len(active) == len(PROPERTIES):
        basis = f"Graph's count of users active within {max(days)} days"
        return read_cost(active, used + 1, per_minute, basis, len(days)), used
    total = await _count(session, "/users?$count=true&$top=1&$select=id")
    if total is None:
        return None, used
    bound = [total] * len(PROPERTIES)
    basis = "at most the tenant's size (Graph did not count by activity)"
    return read_cost(bound, used + 1, per_minute, basis, len(days)), used


def _scoped_reason(request: RevokeRequest, targets: int, cost: ReadCost) -> str | None:
    """Why a group or file run of ``targets`` users keeps listing order; None if ordering pays off."""
    revoking = request.engine.seconds_for(targets)
    if cost.seconds <= READ_SHARE * revoking:
        return None
    what = "the group's" if request.group else "the"
    return (
        f"reading the tenant's sign-in activity windows (about {cost.pages} requests, {cost.basis}) would take "
        f"about {cost.seconds / 60:.1f} min at Graph's {request.activity_reads_per_minute:g} reads a minute, more "
        f"than half the {revoking / 60:.1f} min revoking {what} {targets} target(s) takes at the write budget"
    )


async def activity_order(
    session: GraphSession, permissions: frozenset[str], request: RevokeRequest, targets: int | None = None
) -> tuple[ActivityOrder | None, str | None]:
    """Whether a run goes by sign-in activity; else why not (said once, as a warning).

    ``targets``: how many users a group or file run covers (the group's count, the file's lines).
    A group or file run within the write burst is revoked at once: it keeps listing order silently
    and spends no read on sign-in activity. With ``--skip-inactive-days`` a group or file run goes by
    activity whatever the cost (skipping needs the data); the cost is said in ``ActivityOrder.reading``.

    :raises InputError: ``--skip-inactive-days`` where sign-in activity cannot be read, or where
        privileged users cannot be identified (they are never skipped).
    """
    if not request.order_by_activity and request.skip_inactive_days is None:
        return None, None
    if request.skip_inactive_days is not None and not permissions & READ_ROLES:
        raise InputError(
            "--skip-inactive-days needs RoleManagement.Read.Directory (add it to the stack's readPermissions): "
            "privileged users (directory role holders) are never skipped, so they must be identified first"
        )
    scoped = not request.all_users
    skipping = request.skip_inactive_days is not None
    if scoped and not skipping and targets is not None and targets <= request.engine.write_burst:
        return None, None
    now = datetime.now(UTC).replace(microsecond=0)
    reason: str | None = None
    reading: str | None = None
    used = 0
    if request.filter:
        reason = "with --filter (Graph cannot combine a filter on sign-in activity with other properties)"
    elif not activity_available(permissions):
        reason = (
            "the token does not carry AuditLog.Read.All (add it to the stack's readPermissions; reading sign-in "
            "activity also needs Microsoft Entra ID P1/P2)"
        )
    elif scoped and targets is None and not skipping:
        reason = "Graph did not count the group's users, so the cost of reading the activity windows cannot be weighed"
    else:
        reason = await probe_activity(session, now)
        used = 1
        if reason is None and scoped:
            per_minute = request.activity_reads_per_minute
            days = WINDOW_DAYS if request.skip_inactive_days is None else skip_window_days(request.skip_inactive_days)
            cost, spent = await _window_cost(session, now, per_minute, days)
            used += spent
            if skipping:
                reading = _skip_reading(request, cost)
            elif cost is None:
                reason = "Graph counted neither the users active by sign-in activity nor the tenant's users"
            elif targets is not None:
                reason = _scoped_reason(request, targets, cost)
    if reason is None:
        order = ActivityOrder(
            now, request.activity_reads_per_minute, request.skip_inactive_days, reads_used=used, reading=reading
        )
        return order, None
    if request.skip_inactive_days is not None:
        raise InputError(f"--skip-inactive-days needs the tenant's sign-in activity, which cannot be read: {reason}")
    order_name = "the given" if scoped and not request.group else "Graph's listing"
    return None, (
        f"activity ordering is off: {reason}. After privileged users, users are revoked in {order_name} order, "
        "not most recently active first (docs/activity-ordering.md)"
    )


def _skip_reading(request: RevokeRequest, cost: ReadCost | None) -> str:
    """What a group or file run skipping inactive targets reads first, for the confirmation."""
    days = request.skip_inactive_days
    took = (
        f"about {cost.pages} requests ({cost.basis}), about {cost.seconds / 60:.1f} min at Graph's "
        f"{request.activity_reads_per_minute:g} reads a minute"
        if cost is not None
        else "an unknown number of requests (Graph counted nothing)"
    )
    return (
        f"--skip-inactive-days {days}: this run goes by sign-in activity whatever that costs (skipping needs "
        f"the data): it reads the tenant's activity windows up to {days} days, {took}; targets found in none "
        "are skipped. How many that is stays unknown until the windows are read"
    )


async def skip_estimate(session: GraphSession, order: ActivityOrder, total: int | None) -> tuple[int, int] | None:
    """How many users --skip-inactive-days skips, from Graph's counts: a range, as the two timestamps
    are counted apart (a user active by both counts twice). None when Graph does not count."""
    if total is None or order.skip_inactive_days is None:
        return None
    since = order.now - timedelta(days=order.skip_inactive_days)
    active: list[int] = []
    for prop in PROPERTIES:
        count = await _count(session, _active_url(prop, since))
        if count is None:
            return None
        active.append(count)
    return max(0, total - sum(active)), max(0, total - max(active))


# -- the targets a group or file run keeps from the windows ---------------------------------------
class TargetKeys:
    """A group's or file's targets, exact: object ids as 128-bit ints, UPNs as lower-case strings
    (a digest collision would revoke a user who is not a target)."""

    def __init__(self, keys: Iterable[str] = ()) -> None:
        self._keys = SeenIds()
        for key in keys:
            self._keys.add(key)

    def add(self, key: str) -> None:
        self._keys.add(key)

    def match(self, user: dict[str, Any]) -> str | None:
        """The target key naming this user (its id, else its UPN), or None: not a target."""
        uid = str(user.get("id", "")).lower()
        if uid and uid in self._keys:
            return uid
        upn = str(user.get("userPrincipalName") or "").lower()
        return upn if upn and upn in self._keys else None

    def is_target(self, user: dict[str, Any]) -> bool:
        return self.match(user) is not None

    def __contains__(self, key: object) -> bool:
        return key in self._keys

    def __len__(self) -> int:
        return len(self._keys)


def file_keys(targets: Iterable[Target]) -> TargetKeys:
    """The keys of a file run's targets, as given (ids and UPNs)."""
    return TargetKeys(t.key for t in targets)


async def group_member_ids(session: GraphSession, group: str) -> AsyncIterator[str]:
    """A group's transitive user members, ids only (999 a page, the ordinary read limits).

    :raises GraphRequestError: Graph's error answer (404: no such group).
    """
    url = f"/groups/{quote(group, safe='')}/transitiveMembers?$select=id&$top=999"
    async for page in session.pages(url):
        for member in page:
            if member.get("@odata.type", USER_TYPE) == USER_TYPE and member.get("id"):
                yield str(member["id"]).lower()


async def scoped_windows(
    session: GraphSession, order: ActivityOrder, keys: TargetKeys, collecting: AsyncIterator[str] | None = None
) -> AsyncIterator[tuple[dict[str, Any], str]]:
    """The targets found in the tenant's activity windows, most recent window first, each once, with
    the key that names them. Targets not found there (older or no activity) are the caller's rest.

    ``collecting`` (a group's member ids) fills ``keys`` while the windows are read, so the first
    revocation does not wait for the whole member listing: a window user already known as a member
    is yielded at once, the others are held until the listing ends (never past their window: the
    next window waits for it), then yielded if they are members.

    :raises ActivityUnavailableError: Graph stopped serving sign-in activity (the caller falls back).
    :raises GraphRequestError: the member listing failed (404: no such group).
    """
    pacer = ReadPacer(order.reads_per_minute, used=order.reads_used)
    days = order.scoped_days
    if collecting is None:
        source = ordered_users(session, order.now, pacer=pacer, final=False, keep=keys.is_target, days=days)
        async for user, _window in source:
            key = keys.match(user)
            if key is not None:
                yield user, key
        return
    task = asyncio.ensure_future(_collect(keys, collecting))
    held: list[dict[str, Any]] = []
    held_window = -1
    try:
        # While the listing runs, every window user is kept (it may be a member not listed yet).
        source = ordered_users(
            session,
            order.now,
            pacer=pacer,
            final=False,
            keep=lambda u: not task.done() or keys.match(u) is not None,
            days=days,
        )
        async for user, window in source:
            index = window.index if window is not None else -1
            if task.done() or (held and index != held_window):
                await task  # the key set is complete (or the listing's error is raised here)
                for kept, key in _members(keys, held):
                    yield kept, key
                held = []
            key = keys.match(user)
            if key is not None:
                yield user, key
            elif not task.done():
                held.append(user)
                held_window = index
        await task
        for kept, key in _members(keys, held):
            yield kept, key
    finally:
        if not task.done():
            task.cancel()
        elif not task.cancelled():
            task.exception()  # retrieved: an error was raised above or the caller stopped early


async def _collect(keys: TargetKeys, ids: AsyncIterator[str]) -> None:
    async for uid in ids:
        keys.add(uid)


def _members(keys: TargetKeys, users: list[dict[str, Any]]) -> list[tuple[dict[str, Any], str]]:
    return [(u, key) for u in users if (key := keys.match(u)) is not None]
