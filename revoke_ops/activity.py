"""Activity ordering: users with recent sign-in activity first (docs/activity-ordering.md).

Graph cannot sort users by sign-in activity, nor filter on the later of the two timestamps, so the
listing is cut into server-side windows (active within 1, 7, 30, 90 days), each listed once per
timestamp property, and ends with a plain listing of everyone not yet seen. A seen set of exact
128-bit object ids keeps every user in the window of their most recent activity, and once overall.

The pure parts (windows, timestamps, the seen set, the read pacer) are here with the listing
itself; :mod:`revoke_ops.resolve` turns what it yields into revocations, and
:mod:`revoke_ops.activity_plan` decides before a run whether it goes by activity.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import quote

from revoke_ops.facts import rfc3339
from revoke_ops.graph import USER_FIELDS, GraphRequestError, GraphSession

__all__ = [
    "AUDIT_LOG_READ",
    "PAGE_SIZE",
    "PROPERTIES",
    "WINDOW_DAYS",
    "ActivityOrder",
    "ActivityUnavailableError",
    "FilterRefusedError",
    "ReadPacer",
    "SeenIds",
    "Window",
    "activity_available",
    "format_time",
    "inactive_for",
    "last_activity",
    "ordered_users",
    "parse_time",
    "probe_activity",
    "skip_window_days",
    "unavailable_reason",
    "window_of",
    "windows",
]

log = logging.getLogger(__name__)

#: Activity windows in days: active within the last day, week, month, and the refresh-token
#: inactivity window (90 days: an unused refresh token expires after it).
WINDOW_DAYS = (1, 7, 30, 90)
#: The two timestamps: interactive sign-ins, and non-interactive ones (refresh-token use shows there).
PROPERTIES = ("lastSignInDateTime", "lastNonInteractiveSignInDateTime")
#: Graph's maximum page size when signInActivity is selected or filtered on (999 otherwise).
PAGE_SIZE = 500
#: Graph's limit for GETs with signInActivity: 10 requests per minute per app per tenant.
READS_PER_MINUTE = 10
ACTIVITY_FIELDS = f"{USER_FIELDS},signInActivity"
#: Permissions that let an app read signInActivity (with a permission to read users).
AUDIT_LOG_READ = frozenset({"AuditLog.Read.All"})
NO_LICENCE = "Authentication_RequestFromNonPremiumTenantOrB2CTenant"
NO_PERMISSION = "Authentication_MSGraphPermissionMissing"
# Graph reports "never" as the minimum date in some answers.
_NEVER = datetime(1, 1, 2, tzinfo=UTC)


@dataclass(frozen=True)
class ActivityOrder:
    """Whole-tenant runs by sign-in activity (docs/activity-ordering.md): windows fixed at ``now``."""

    now: datetime
    reads_per_minute: float = READS_PER_MINUTE
    skip_inactive_days: int | None = None
    #: signInActivity reads spent deciding (probe, counts): the run's pacer starts with fewer
    reads_used: int = 0
    #: a group or file run skipping inactive targets: what reading the windows costs, for the
    #: confirmation (it goes by activity whatever that costs: skipping needs the data)
    reading: str | None = None

    @property
    def scoped_days(self) -> tuple[int, ...]:
        """The windows a group or file run reads: the usual ones, or with --skip-inactive-days those up to N."""
        return WINDOW_DAYS if self.skip_inactive_days is None else skip_window_days(self.skip_inactive_days)


class ActivityUnavailableError(Exception):
    """Graph refused to serve sign-in activity (no licence, no permission): fall back to listing order."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class FilterRefusedError(ActivityUnavailableError):
    """Graph answered 400 to a window's filter: that request shape is not served (docs/activity-ordering.md)."""


def parse_time(value: Any) -> datetime | None:
    """A Graph DateTimeOffset (``2026-12-07T10:00:00Z``, fractions allowed) as aware UTC; None if absent/never."""
    if not isinstance(value, str) or not value:
        return None
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return None if moment < _NEVER else moment.astimezone(UTC)


def format_time(moment: datetime) -> str:
    """An OData DateTimeOffset literal (UTC, whole seconds)."""
    return rfc3339(moment)


def last_activity(user: dict[str, Any]) -> datetime | None:
    """The later of a user's last interactive and non-interactive sign-in (attempts), or None."""
    activity = user.get("signInActivity")
    if not isinstance(activity, dict):
        return None
    moments = [m for m in (parse_time(activity.get(p)) for p in PROPERTIES) if m is not None]
    return max(moments, default=None)


@dataclass(frozen=True)
class Window:
    """Users whose most recent activity is in ``[since, until]`` (``until`` None: up to now and later)."""

    index: int
    days: int
    since: datetime
    until: datetime | None

    @property
    def label(self) -> str:
        return f"active within {self.days} day{'s' if self.days != 1 else ''}"

    def filters(self, ranged: bool = True) -> list[str]:
        """One ``$filter`` per timestamp property: a filter on signInActivity takes no other property.

        ``ranged`` bounds the window above too (``ge`` and ``le`` on one property); without it the
        filter is open-ended (``ge`` alone, the documented shape) and the seen set drops the users of
        earlier windows, which the listing then reads again.
        """
        out = []
        for prop in PROPERTIES:
            text = f"signInActivity/{prop} ge {format_time(self.since)}"
            if ranged and self.until is not None:
                text += f" and signInActivity/{prop} le {format_time(self.until)}"
            out.append(text)
        return out


def windows(now: datetime, days: tuple[int, ...] = WINDOW_DAYS) -> list[Window]:
    """The activity windows at ``now``, most recent first; adjacent windows share their boundary."""
    out: list[Window] = []
    until: datetime | None = None
    for index, span in enumerate(sorted(days)):
        since = now - timedelta(days=span)
        out.append(Window(index, span, since, until))
        until = since
    return out


def skip_window_days(days: int) -> tuple[int, ...]:
    """The windows a group or file run with ``--skip-inactive-days N`` reads: the usual ones shorter
    than N, then N itself (1, 7, 30 for 30; 1, 7, 30, 45 for 45; 1, 7, 30, 90, 120 for 120). Nothing
    older is read: a target not found within N days is skipped, whatever its older activity."""
    return (*(d for d in WINDOW_DAYS if d < days), days)


def window_of(last: datetime | None, now: datetime, days: tuple[int, ...] = WINDOW_DAYS) -> int | None:
    """The index of the window a last activity falls in, or None (older, or never)."""
    if last is None:
        return None
    for index, span in enumerate(sorted(days)):
        if last >= now - timedelta(days=span):
            return index
    return None


def inactive_for(last: datetime | None, now: datetime, days: int) -> bool:
    """Whether a user with this last activity has been inactive for more than ``days`` (never: yes)."""
    return last is None or last < now - timedelta(days=days)


class SeenIds:
    """Object ids seen so far, exact: GUIDs as 128-bit ints (a hash collision would skip a user)."""

    def __init__(self) -> None:
        self._ints: set[int] = set()
        self._other: set[str] = set()

    def _key(self, object_id: str) -> int | str:
        try:
            return uuid.UUID(object_id).int
        except ValueError:
            return object_id.lower()

    def add(self, object_id: str) -> bool:
        """Record an id; True if it was not seen before."""
        key = self._key(object_id)
        bucket: set[Any] = self._ints if isinstance(key, int) else self._other
        if key in bucket:
            return False
        bucket.add(key)
        return True

    def __contains__(self, object_id: object) -> bool:
        if not isinstance(object_id, str):
            return False
        key = self._key(object_id)
        return key in (self._ints if isinstance(key, int) else self._other)

    def __len__(self) -> int:
        return len(self._ints) + len(self._other)


class ReadPacer:
    """A token bucket for reads of signInActivity at Graph's per-minute limit: a full bucket of
    ``per_minute`` reads, refilled at ``per_minute`` a minute (a 429 is still honoured by the reader)."""

    def __init__(
        self,
        per_minute: float = READS_PER_MINUTE,
        *,
        used: int = 0,
        monotonic: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep,
    ) -> None:
        self.rate = per_minute / 60.0
        self.capacity = max(1.0, per_minute)
        self._monotonic = monotonic
        self._sleep = sleep
        self._tokens = max(0.0, self.capacity - used)  # reads already spent this minute (the run's checks)
        self._updated = monotonic()

    async def wait(self) -> None:
        if self.rate <= 0:
            return
        now = self._monotonic()
        self._tokens = min(self.capacity, self._tokens + (now - self._updated) * self.rate)
        self._updated = now
        if self._tokens < 1.0:
            wait = (1.0 - self._tokens) / self.rate
            await self._sleep(wait)
            self._tokens, self._updated = 1.0, now + wait
        self._tokens -= 1.0


def activity_available(permissions: frozenset[str]) -> bool:
    """Whether a token's permissions allow reading signInActivity (AuditLog.Read.All and a user read)."""
    reads_users = bool(permissions & {"User.Read.All", "User.ReadWrite.All", "Directory.Read.All"})
    return reads_users and bool(permissions & AUDIT_LOG_READ)


def unavailable_reason(status: int, code: str | None, message: str) -> str | None:
    """Why Graph refused a signInActivity read, in the operator's terms; None if it was not a refusal.
    A 400 (a filter shape Graph does not serve) is explained by the caller, who knows the filter."""
    if status == 403 and code == NO_LICENCE:
        return (
            "the tenant has no Microsoft Entra ID P1/P2 licence, which reading sign-in activity needs "
            f"(Graph: 403 {NO_LICENCE})"
        )
    if status == 403:
        return (
            f"Graph refused to read sign-in activity (403 {code or ''}: {message}); it needs AuditLog.Read.All "
            "with admin consent (add it to the stack's readPermissions)"
        )
    return None


def refused_filter(text: str, code: str | None, message: str) -> str:
    """Why a window listing stopped: Graph answered 400 to its filter."""
    return f"Graph refused the sign-in activity filter '{text}' (400 {code or ''}: {message})"


async def _pages(
    session: GraphSession, url: str, pacer: ReadPacer, text: str = ""
) -> AsyncIterator[list[dict[str, Any]]]:
    """A signInActivity listing page by page, each read paced; a refusal raises ActivityUnavailableError
    (FilterRefusedError for a 400: ``text`` is the filter, for the reason)."""
    next_url: str | None = url
    while next_url:
        await pacer.wait()
        # page=True: a 200 without a 'value' list is unreadable (retried, then a ServiceError), never
        # the end of the listing (issue 10 #1).
        response = await session.read(next_url, page=True)
        if response.status != 200 or not isinstance(response.body, dict):
            if response.status == 400:
                raise FilterRefusedError(refused_filter(text, response.error_code, response.error_message))
            reason = unavailable_reason(response.status, response.error_code, response.error_message)
            if reason:
                raise ActivityUnavailableError(reason)
            raise GraphRequestError(response, next_url)
        yield list(response.body["value"])
        next_url = response.body.get("@odata.nextLink")


async def ordered_users(
    session: GraphSession,
    now: datetime,
    *,
    pacer: ReadPacer | None = None,
    seen: SeenIds | None = None,
    final_with_activity: bool = False,
    final: bool = True,
    keep: Callable[[dict[str, Any]], bool] | None = None,
    days: tuple[int, ...] = WINDOW_DAYS,
) -> AsyncIterator[tuple[dict[str, Any], Window | None]]:
    """Every user of the tenant once: by activity window, most recent first, then everyone else.

    Yields ``(user, window)``; ``window`` is None for the final pass (older or no activity, or not
    seen in a window). ``final_with_activity`` reads signInActivity in the final pass too (paced,
    500 per page), so a caller can decide on each user's activity (``--skip-inactive-days``).
    ``final=False`` stops after the windows; ``keep`` limits the windows to some users (a group's,
    a file's): the others are neither yielded nor remembered.

    Each window is listed with ``ge`` and ``le`` on one property; if Graph answers 400 to that
    shape, the remaining windows are listed with ``ge`` alone (documented), the seen set dropping
    the users of earlier windows: the same order, more pages read.

    :raises ActivityUnavailableError: Graph refused a signInActivity read (licence, permission);
        FilterRefusedError if it refused the ``ge`` filter itself (400).
    :raises GraphRequestError: any other error answer.
    """
    pacer = pacer or ReadPacer()
    seen = seen if seen is not None else SeenIds()
    ranged = True
    for window in windows(now, days):
        for index in range(len(PROPERTIES)):
            text = window.filters(ranged)[index]
            try:
                async for user in _kept(_pages(session, _window_url(text), pacer, text), seen, keep):
                    yield user, window
            except FilterRefusedError as err:
                if not ranged or window.until is None:
                    raise  # the open-ended shape itself: the caller falls back to listing order
                ranged = False
                log.warning(
                    "%s; the remaining activity windows are listed with 'ge' alone (more pages, the same order)",
                    err.reason,
                )
                text = window.filters(ranged)[index]
                async for user in _kept(_pages(session, _window_url(text), pacer, text), seen, keep):
                    yield user, window
        log.debug("activity window %s listed; %d users seen so far", window.label, len(seen))
    if not final:
        return
    if final_with_activity:
        url = f"/users?$select={ACTIVITY_FIELDS}&$top={PAGE_SIZE}"
        source = _pages(session, url, pacer)
    else:
        source = session.pages(f"/users?$select={USER_FIELDS}&$top=999")
    async for page in source:
        for user in page:
            uid = str(user.get("id", ""))
            if uid and uid not in seen:
                yield user, None


def _window_url(text: str) -> str:
    return f"/users?$filter={quote(text, safe='')}&$select={ACTIVITY_FIELDS}&$top={PAGE_SIZE}"


async def _kept(
    pages: AsyncIterator[list[dict[str, Any]]], seen: SeenIds, keep: Callable[[dict[str, Any]], bool] | None
) -> AsyncIterator[dict[str, Any]]:
    """The users of a window listing not seen before (and kept), each recorded as seen."""
    async for page in pages:
        for user in page:
            uid = str(user.get("id", ""))
            if uid and (keep is None or keep(user)) and seen.add(uid):
                yield user


# -- deciding, before a run, whether it goes by activity ------------------------------------------
async def probe_activity(session: GraphSession, now: datetime) -> str | None:
    """Why sign-in activity cannot order a run, or None when it can. The probe reads what a window
    reads (one user, filtered on signInActivity: one of Graph's 10 reads a minute), so a filter Graph
    refuses is known before a run, not in its middle — and ``doctor`` says what a run would find."""
    text = f"signInActivity/{PROPERTIES[0]} ge {format_time(now - timedelta(days=min(WINDOW_DAYS)))}"
    probe = await session.read(f"/users?$filter={quote(text, safe='')}&$select=id,signInActivity&$top=1")
    if probe.status == 200:
        return None
    if probe.status == 400:
        return refused_filter(text, probe.error_code, probe.error_message)
    return unavailable_reason(probe.status, probe.error_code, probe.error_message) or (
        f"Graph answered {probe.status} {probe.error_code or ''} to a sign-in activity read"
    )
