"""Sign-in activity in the emulated tenant: seeding, and Graph's rules for reading it.

Graph's rules (docs/activity-ordering.md has the sources): ``signInActivity`` is returned only on
``$select``; reading it (selecting or filtering) needs AuditLog.Read.All and a tenant with Microsoft
Entra ID P1/P2; it supports ``$filter`` with ``eq``, ``ne``, ``not``, ``ge``, ``le`` but not combined
with any other property; the page size is at most 500 when it is selected or filtered on; and such
reads are limited to 10 requests per minute per app. ``$orderby`` on it is not documented: refused.
The handlers call :func:`users_query`; refusals come back as :class:`RefusalError` for them to answer.

Two request shapes are undocumented either way (``ge`` and ``le`` on one property in one filter;
``$count`` with a filter on signInActivity): the sandbox serves them, and :func:`refuse` (control
setting ``activityRefusals``) makes it answer 400 to them, or to any filter on signInActivity, so
tests can prove a client falls back.
"""

from __future__ import annotations

import math
import random
import re
import weakref
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sandbox.tenant import BREAK_GLASS, Tenant, User

AUDIT_LOG_READ = frozenset({"AuditLog.Read.All"})
MAX_TOP = 500
READS_PER_MINUTE = 10.0
PROPERTIES = {
    "lastsignindatetime": "last_sign_in",
    "lastnoninteractivesignindatetime": "last_non_interactive_sign_in",
    "lastsuccessfulsignindatetime": "last_sign_in",  # the sandbox records no failures: the same
}
#: The seeded activity mix: share of users active within the last day, and within 1-30 days; the rest
#: signed in earlier (half of them) or never.
ACTIVITY_MIX = (0.25, 0.35)


#: Request shapes the sandbox can be told to refuse (400): "range" (ge and le on one property in one
#: filter), "count" ($count with a filter on signInActivity), "filter" (any filter on signInActivity).
SHAPES = frozenset({"range", "count", "filter"})
_refusing: weakref.WeakKeyDictionary[Tenant, frozenset[str]] = weakref.WeakKeyDictionary()


def refuse(tenant: Tenant, shapes: Iterable[str]) -> None:
    """Answer 400 to these signInActivity request shapes from now on (empty: serve them all).

    :raises ValueError: an unknown shape, naming the allowed ones.
    """
    wanted = frozenset(str(s) for s in shapes)
    unknown = sorted(wanted - SHAPES)
    if unknown:
        raise ValueError(f"unknown activity refusal(s) {unknown}: allowed {sorted(SHAPES)}")
    _refusing[tenant] = wanted


class RefusalError(Exception):
    """Graph's answer to a request it refuses: status, error code, message, headers."""

    def __init__(self, status: int, code: str, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.headers = status, code, message, headers or {}


@dataclass
class ActivityQuery:
    """How a users request involves signInActivity: ``predicate`` replaces the ordinary ``$filter``."""

    involved: bool
    predicate: Callable[[Any], bool] | None = None
    #: True when the $filter is on signInActivity: ``predicate`` replaces the ordinary filter parser
    own_filter: bool = True


_CLAUSE = re.compile(
    r"^(not\s*\()?\s*signInActivity/(\w+)\s+(\w+)\s+(\S+?)\s*(\))?$",
    re.IGNORECASE,
)


def _unsupported(message: str) -> RefusalError:
    return RefusalError(400, "Request_UnsupportedQuery", message)


def _moment(text: str) -> datetime:
    try:
        value = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise RefusalError(
            400, "BadRequest", f"Invalid filter clause: '{text}' is not a valid DateTimeOffset literal."
        ) from None
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def _clause(text: str) -> Callable[[User], bool]:
    match = _CLAUSE.match(text.strip())
    if not match:
        raise _unsupported(
            "Unsupported or invalid query filter clause specified for property 'signInActivity' of resource "
            "'User': it cannot be combined with other filterable properties."
        )
    negate, prop, op, literal, close = match.groups()
    if bool(negate) != bool(close):
        raise _unsupported(f"Invalid filter clause: unbalanced parentheses in '{text}'.")
    attr = PROPERTIES.get(prop.lower())
    if attr is None:
        raise _unsupported(f"Could not find a property named '{prop}' on type 'microsoft.graph.signInActivity'.")
    op = op.lower()
    if op not in ("eq", "ne", "ge", "le"):
        raise _unsupported(f"Unsupported query operator '{op}' for property 'signInActivity/{prop}'.")
    bound = _moment(literal)

    def test(user: User) -> bool:
        value: datetime | None = getattr(user, attr)
        if value is None:
            result = op == "ne"
        elif op == "eq":
            result = value == bound
        elif op == "ne":
            result = value != bound
        elif op == "ge":
            result = value >= bound
        else:
            result = value <= bound
        return not result if negate else result

    return test


def parse_activity_filter(text: str) -> Callable[[Any], bool]:
    """A ``$filter`` on signInActivity only (clauses joined by ``and``/``or``) as a predicate.

    :raises RefusalError: 400 for another property in the filter, or an unsupported operator.
    """
    alternatives = []
    for part in re.split(r"\s+or\s+", text.strip(), flags=re.IGNORECASE):
        alternatives.append([_clause(c) for c in re.split(r"\s+and\s+", part, flags=re.IGNORECASE)])

    def predicate(view: Any) -> bool:
        user: User = getattr(view, "user", view)
        return any(all(c(user) for c in clauses) for clauses in alternatives)

    return predicate


def _mentions(value: str | None) -> bool:
    return bool(value) and "signinactivity" in str(value).lower()


#: Directory roles (of those the sandbox emulates) that let a signed-in user read sign-in activity;
#: Graph also accepts Global Reader, Security Reader and Reports Reader.
READER_ROLES = frozenset({"Global Administrator", "Security Administrator"})


def users_query(
    tenant: Tenant,
    app_id: str,
    permissions: frozenset[str],
    query: dict[str, str],
    now: float,
    scale: float = 1.0,
    user: User | None = None,
) -> ActivityQuery:
    """Graph's rules for a users request that selects, filters or orders on signInActivity.

    ``now`` is the sandbox clock (modelled seconds) for the per-minute read limit; ``scale`` turns
    modelled seconds into the real ones of Retry-After; ``user`` is the signed-in user of a delegated
    call, who also needs a directory role that may read reports.

    :raises RefusalError: the permission or licence is missing, the query is unsupported, or the
        10-reads-a-minute limit is spent (429 with Retry-After).
    """
    if not any(_mentions(query.get(k)) for k in ("$select", "$filter", "$orderby")):
        return ActivityQuery(False)
    if not permissions & AUDIT_LOG_READ:
        raise RefusalError(
            403,
            "Authentication_MSGraphPermissionMissing",
            "Calling principal does not have required MSGraph permissions AuditLog.Read.All",
        )
    if user is not None and not READER_ROLES & set(user.roles):
        raise RefusalError(403, "Authentication_RequestFromUnsupportedUserRole", "User is not in the allowed roles")
    if not tenant.premium:
        raise RefusalError(
            403,
            "Authentication_RequestFromNonPremiumTenantOrB2CTenant",
            "Neither tenant is B2C or tenant doesn't have premium license",
        )
    if _mentions(query.get("$orderby")):
        raise _unsupported("Sorting by signInActivity is not supported.")
    top = query.get("$top")
    if top is not None and (not top.isdigit() or not 1 <= int(top) <= MAX_TOP):
        raise RefusalError(
            400,
            "Request_BadRequest",
            f"Invalid page size specified: '{top}'. Must be between 1 and {MAX_TOP} inclusive "
            "when signInActivity is selected or filtered on.",
        )
    _admit_read(tenant, app_id, now, scale)
    text = query.get("$filter")
    if not text:
        return ActivityQuery(True, own_filter=False)
    if not _mentions(text):
        return ActivityQuery(True, own_filter=False)  # selected, filtered on other properties: allowed
    _refused_shape(tenant, text, query)
    return ActivityQuery(True, parse_activity_filter(text))


def _refused_shape(tenant: Tenant, text: str, query: dict[str, str]) -> None:
    """The undocumented shapes this tenant was told to refuse (:func:`refuse`): 400, as Graph would."""
    refusing = _refusing.get(tenant, frozenset())
    if not refusing:
        return
    if "filter" in refusing:
        raise _unsupported("Filtering on signInActivity is not supported for this request.")
    if "range" in refusing and re.search(r"\s+and\s+", text, re.IGNORECASE):
        raise _unsupported("Unsupported or invalid query filter clause specified for property 'signInActivity'.")
    if "count" in refusing and query.get("$count", "").lower() == "true":
        raise _unsupported("$count is not supported with a filter on signInActivity.")


def _admit_read(tenant: Tenant, app_id: str, now: float, scale: float) -> None:
    """A token bucket of 10 reads refilled at 10 a minute (modelled time), per app."""
    rate = tenant.activity_reads_per_minute
    if rate <= 0:
        return
    capacity = rate
    tokens, updated = tenant.activity_reads.get(app_id, (capacity, now))
    tokens = min(capacity, tokens + (now - updated) * rate / 60.0)
    if tokens < 1.0:
        wait = math.ceil((1.0 - tokens) * 60.0 / rate * scale)
        tenant.activity_reads[app_id] = (tokens, now)
        raise RefusalError(
            429,
            "TooManyRequests",
            "Too many requests for signInActivity. Please retry after the time in the Retry-After header.",
            {"Retry-After": str(max(1, wait)), "x-ms-throttle-information": "SignInActivityReadLimit"},
        )
    tenant.activity_reads[app_id] = (tokens - 1.0, now)


def seed_activity(
    tenant: Tenant, now: datetime | None = None, mix: tuple[float, float] = ACTIVITY_MIX, seed: int | None = None
) -> None:
    """Give every user a realistic sign-in history relative to ``now`` (deterministic for the tenant's seed).

    A share ``mix[0]`` signed in within the last day, ``mix[1]`` within 1-30 days, the rest earlier
    (31-400 days) or never. Non-interactive sign-ins (refresh-token use) are usually the more recent;
    some active users show only those. Break-glass accounts never signed in; named admins are active.
    Its own random stream: the tenant's ids do not depend on it.
    """
    now = (now or datetime.now(UTC)).replace(microsecond=0)
    rng = random.Random(f"activity-{tenant.seed if seed is None else seed}")
    day = 86400
    for user in tenant.users:
        alias = user.user_principal_name.split("@")[0]
        if alias in BREAK_GLASS:
            user.last_sign_in = user.last_non_interactive_sign_in = None
            continue
        roll = 0.0 if alias.startswith(("admin.", "operator")) else rng.random()
        if roll < mix[0]:
            age = rng.uniform(60, day)
        elif roll < mix[0] + mix[1]:
            age = rng.uniform(day, 30 * day)
        elif roll < mix[0] + mix[1] + (1 - mix[0] - mix[1]) / 2:
            age = rng.uniform(31 * day, 400 * day)
        else:
            user.last_sign_in = user.last_non_interactive_sign_in = None
            continue
        latest = now - timedelta(seconds=int(age))
        shape = rng.random()
        if shape < 0.15:  # refresh-token use only (no interactive sign-in recorded)
            user.last_sign_in, user.last_non_interactive_sign_in = None, latest
        elif shape < 0.6:  # interactive earlier, silent since
            user.last_sign_in = latest - timedelta(seconds=int(rng.uniform(0, 20 * day)))
            user.last_non_interactive_sign_in = latest
        else:  # an interactive sign-in is the latest
            user.last_sign_in = latest
            user.last_non_interactive_sign_in = latest - timedelta(seconds=int(rng.uniform(0, 5 * day)))
