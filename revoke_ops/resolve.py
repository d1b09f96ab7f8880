"""The stream of targets, each resolved once: excluded, external, not found, or to send.

Local targets (``--user``, files) are looked up in pipelined chunks; a group's members or the whole
tenant are listed page by page. Privileged users come first; the signed-in operator last.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

from revoke_ops.activity import ActivityOrder, ActivityUnavailableError, ReadPacer, SeenIds, ordered_users
from revoke_ops.activity_plan import TargetKeys, file_keys, group_member_ids, scoped_windows
from revoke_ops.activity_skip import skip_unseen, skipped, stopped_skipping
from revoke_ops.directory import (
    LOOKUP_CHUNK,
    USER_TYPE,
    Capabilities,
    Exclusions,
    Privileged,
    find_privileged,
    is_external,
    lookup,
    lookup_failed,
    privileged_ids,
    privileged_members,
    resolve_exclusions,
)
from revoke_ops.engine import Item, Send, Settled
from revoke_ops.errors import InputError
from revoke_ops.graph import ADVANCED_HEADERS, USER_FIELDS, GraphRequestError, GraphSession, needs_advanced_query
from revoke_ops.outcomes import Outcome
from revoke_ops.targets import Target, TargetFile, key_hash, parse_target

__all__ = [
    "ActivityOrder",
    "Capabilities",
    "Exclusions",
    "Plan",
    "Privileged",
    "find_privileged",
    "is_external",
    "privileged_ids",
    "resolve_exclusions",
    "stream",
]

log = logging.getLogger(__name__)


@dataclass
class Plan:
    """What to revoke: local targets, a group, or the whole tenant, and how."""

    files: list[TargetFile] = field(default_factory=list)
    users: list[str] = field(default_factory=list)
    group: str | None = None
    all_users: bool = False
    filter: str | None = None
    include_external: bool = False
    exclusions: Exclusions = field(default_factory=Exclusions)
    privileged: Privileged = field(default_factory=Privileged)
    operator_id: str | None = None
    done: frozenset[int] = frozenset()  # key hashes already settled by an earlier run (resume)
    activity: ActivityOrder | None = None  # None: listing order
    #: why activity ordering stopped mid-run (the rest went in listing order), for the journal and report
    ordering_stopped: str | None = None


def _local_targets(plan: Plan) -> Iterator[Target]:
    seen: set[int] = set()
    for value in plan.users:
        target = parse_target(value, "--user")
        digest = key_hash(target.key)
        if digest not in seen:
            seen.add(digest)
            yield target
    for handle in plan.files:
        for item in handle.targets():
            if isinstance(item, Target):
                digest = key_hash(item.key)
                if digest not in seen:
                    seen.add(digest)
                    yield item


def _privileged_first(plan: Plan) -> list[Target]:
    """The local targets that hold a directory role: sent before the rest (read once, held in memory)."""
    return [t for t in _local_targets(plan) if t.key in plan.privileged] if plan.privileged.ids else []


def _chunks(items: Iterable[Target], size: int) -> Iterator[list[Target]]:
    chunk: list[Target] = []
    for item in items:
        chunk.append(item)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def _decide(plan: Plan, user: dict[str, Any], target: str) -> Item:
    uid = str(user.get("id", "")).lower() or None
    upn = user.get("userPrincipalName")
    upn = str(upn).lower() if upn else None
    if plan.exclusions.excludes(uid, upn):
        return Settled(uid, upn, target, Outcome.EXCLUDED, "excluded by --exclude/--exclude-file (break-glass)")
    if not plan.include_external and is_external(user):
        return Settled(
            uid,
            upn,
            target,
            Outcome.SKIPPED_EXTERNAL,
            "external user (guest or B2B): their sessions live in their home tenant; this API does not "
            "revoke them (use --include-external to send it anyway)",
        )
    return Send(
        ref=uid or upn or target,
        id=uid,
        upn=upn,
        target=target,
        privileged=bool((uid and uid in plan.privileged.ids) or (upn and upn in plan.privileged.upns)),
        last=bool(uid and uid == plan.operator_id),
    )


def _done(plan: Plan, *keys: str | None) -> bool:
    return any(k and key_hash(k.lower()) in plan.done for k in keys)


class _Once:
    """Each user once per run, by resolved object id: the same user named by UPN and by id is one user."""

    def __init__(self) -> None:
        self._seen: set[int] = set()

    def first(self, item: Item) -> bool:
        key = item.id or item.upn or item.target
        digest = key_hash(key.lower())
        if digest in self._seen:
            return False
        self._seen.add(digest)
        return True


async def stream(plan: Plan, session: GraphSession | None, caps: Capabilities) -> AsyncIterator[Item]:
    """Yield each target once, resolved: excluded, external, not found, or to send.

    Privileged users among the targets (directory role holders) come first; the signed-in
    operator last (the engine holds them back).
    """
    once = _Once()
    if plan.group or plan.all_users:
        assert session is not None
        source = _remote(plan, session, caps)
    elif caps.read_users and session is not None:
        source = _local_resolved(plan, session)
    else:
        source = _local_as_given(plan)
    async for item in source:
        if once.first(item):
            yield item


async def _local_as_given(plan: Plan) -> AsyncIterator[Item]:
    """Without User.Read.All: revoke as given (by id or UPN); externals only by their #EXT# UPN."""
    first = _privileged_first(plan)
    rest = (t for t in _local_targets(plan) if t.key not in plan.privileged)
    for target in itertools.chain(first, rest):
        if _done(plan, target.key):
            continue
        uid = target.key if target.kind == "id" else None
        upn = target.key if target.kind == "upn" else None
        yield _decide(plan, {"id": uid or "", "userPrincipalName": upn}, target.key)


async def _local_resolved(plan: Plan, session: GraphSession) -> AsyncIterator[Item]:
    """Local targets looked up in chunks (pipelined), privileged ones first; with activity ordering,
    then those found in the tenant's activity windows, then the rest in the given order (with
    --skip-inactive-days: skipped, as without sign-in activity within N days)."""
    first = _privileged_first(plan)
    first_keys = {key_hash(t.key) for t in first}
    for chunk in _chunks(first, LOOKUP_CHUNK):
        for item in await _resolved(plan, session, chunk):
            yield item
    taken = SeenIds()
    if plan.activity is not None:
        keys = file_keys(t for t in _local_targets(plan) if key_hash(t.key) not in first_keys)
        async for item in _windows_first(plan, plan.activity, session, keys, taken):
            yield item
    todo = (t for t in _local_targets(plan) if key_hash(t.key) not in first_keys and t.key not in taken)
    rest = _chunks(todo, LOOKUP_CHUNK)
    async for items in _pipelined(rest, lambda chunk: _resolved(plan, session, chunk)):
        for item in items:
            yield skipped(plan.activity, item) if plan.activity is not None else item


LOOKUP_WINDOW = 8  # lookups in flight, so resolution keeps ahead of the write budget


async def _pipelined(
    chunks: Iterator[list[Target]], resolve: Callable[[list[Target]], Awaitable[list[Item]]]
) -> AsyncIterator[list[Item]]:
    """Run up to LOOKUP_WINDOW lookups at once; yield their results in input order."""
    window: deque[asyncio.Task[list[Item]]] = deque()
    try:
        for chunk in chunks:
            window.append(asyncio.ensure_future(resolve(chunk)))
            if len(window) >= LOOKUP_WINDOW:
                yield await window.popleft()
        while window:
            yield await window.popleft()
    finally:
        for task in window:
            task.cancel()


async def _resolved(plan: Plan, session: GraphSession, chunk: list[Target]) -> list[Item]:
    todo = [t for t in chunk if not _done(plan, t.key)]
    if not todo:
        return []
    try:
        found = await lookup(session, todo)
    except GraphRequestError as err:
        raise lookup_failed("looking the targets up", err) from err
    items: list[Item] = []
    for target in todo:
        user = found.get(target.key)
        if user is None:
            items.append(
                Settled(
                    target.key if target.kind == "id" else None,
                    target.key if target.kind == "upn" else None,
                    target.key,
                    Outcome.NOT_FOUND,
                    f"no such user in the tenant ({target.source})",
                    "Request_ResourceNotFound",
                )
            )
        elif not _done(plan, str(user.get("id")), str(user.get("userPrincipalName") or "")):
            items.append(_decide(plan, user, target.key))
    return items


async def _privileged_in_scope(plan: Plan, session: GraphSession, caps: Capabilities) -> AsyncIterator[Item]:
    """The privileged users a group or whole-tenant run covers, resolved."""
    ids = sorted(plan.privileged.ids)
    if plan.group:
        members, unknown = await privileged_members(session, plan.group, ids)
        if unknown:
            log.warning(
                "%d privileged user(s) could not be checked for membership of the group (Graph kept failing); "
                "those who are members are revoked in listing order, not first",
                unknown,
            )
        ids = members
    for start in range(0, len(ids), LOOKUP_CHUNK):
        chunk = [Target(i, "id", "directory role holder") for i in ids[start : start + LOOKUP_CHUNK]]
        if caps.read_users:
            try:
                found = await lookup(session, chunk, plan.filter if plan.all_users else None)
            except GraphRequestError as err:
                raise lookup_failed("looking privileged users up", err) from err
        else:
            found = {t.key: {"id": t.key} for t in chunk}
        for user in found.values():
            if not _done(plan, str(user["id"])):
                yield _decide(plan, user, str(user["id"]).lower())


async def _remote(plan: Plan, session: GraphSession, caps: Capabilities) -> AsyncIterator[Item]:
    headers: dict[str, str] | None = None
    if plan.group:
        caps.require("revoking a group's members (--group)", caps.read_members, "GroupMember.Read.All")
        if not caps.read_users:
            log.warning(
                "without User.Read.All, group members come without their UPN or userType: external users cannot be "
                "recognised and exclusions match by object id only (add User.Read.All to readPermissions)"
            )
        # Not .../transitiveMembers/microsoft.graph.user: a cast in the path is an advanced query
        # (ConsistencyLevel: eventual, $count=true) and then eventually consistent, so members added
        # a moment ago could be missed. The plain listing is not; users are kept by @odata.type.
        url = f"/groups/{quote(plan.group, safe='')}/transitiveMembers?$select={USER_FIELDS}&$top=999"
    else:
        caps.require("revoking every user (--all-users)", caps.read_users, "User.Read.All")
        url = f"/users?$select={USER_FIELDS}&$top=999"
        if plan.filter:
            url += f"&$filter={quote(plan.filter, safe='')}"
            if needs_advanced_query(plan.filter):
                url += "&$count=true"
                headers = ADVANCED_HEADERS
    # Privileged users first; the listing then meets them again and the run's de-duplication
    # (by object id) drops the second sighting.
    if plan.privileged.ids:
        async for item in _privileged_in_scope(plan, session, caps):
            yield item
    try:
        if plan.activity is not None and plan.all_users and not plan.filter:
            async for item in _by_activity(plan, plan.activity, session, url):
                yield item
        elif plan.activity is not None and plan.group:
            members = group_member_ids(session, plan.group)  # listed while the windows are read
            async for item in _windows_first(plan, plan.activity, session, TargetKeys(), collecting=members):
                yield item
            # the rest (stream() drops repeats); with --skip-inactive-days: skipped, not seen active
            async for item in skip_unseen(plan.activity, _listed(plan, session, url, headers)):
                yield item
        else:
            async for item in _listed(plan, session, url, headers):
                yield item
    except GraphRequestError as err:
        if err.response.status == 404 and plan.group:
            raise InputError(
                f"--group {plan.group}: no such group in the tenant (--group takes the group's object id)"
            ) from err
        if err.response.status == 400 and plan.filter:
            raise InputError(f"--filter {plan.filter!r}: Graph refused it: {err.response.error_message}") from err
        raise lookup_failed("listing the targets", err) from err


async def _listed(plan: Plan, session: GraphSession, url: str, headers: dict[str, str] | None) -> AsyncIterator[Item]:
    """The group's or tenant's users in Graph's listing order."""
    async for page in session.pages(url, headers=headers):
        for user in page:
            if plan.group and user.get("@odata.type", USER_TYPE) != USER_TYPE:
                continue  # a nested group (its members are listed too) or another directory object
            uid = str(user.get("id", "")).lower()
            if _done(plan, uid, user.get("userPrincipalName")):
                continue
            yield _decide(plan, user, uid)


async def _by_activity(plan: Plan, order: ActivityOrder, session: GraphSession, url: str) -> AsyncIterator[Item]:
    """The tenant's users by sign-in activity window, then everyone else (revoke_ops.activity).

    With ``--skip-inactive-days N``, users (privileged ones never) whose last activity is older than N
    days, or who never signed in, end as ``skipped_inactive``. If Graph stops serving sign-in activity
    mid-run, the rest goes in listing order (or, when skipping, the run stops: it cannot skip blind).
    """
    days = order.skip_inactive_days
    source = ordered_users(
        session,
        order.now,
        pacer=ReadPacer(order.reads_per_minute, used=order.reads_used),
        final_with_activity=days is not None,
    )
    try:
        async for user, _window in source:
            uid = str(user.get("id", "")).lower()
            if _done(plan, uid, user.get("userPrincipalName")):
                continue
            yield skipped(order, _decide(plan, user, uid), user)
    except ActivityUnavailableError as err:
        if days is not None:
            raise InputError(stopped_skipping(err.reason)) from err
        _ordering_stopped(plan, err.reason)
        async for item in _listed(plan, session, url, None):
            yield item


async def _windows_first(
    plan: Plan,
    order: ActivityOrder,
    session: GraphSession,
    keys: TargetKeys,
    taken: SeenIds | None = None,
    collecting: AsyncIterator[str] | None = None,
) -> AsyncIterator[Item]:
    """A group's or file's targets found in the tenant's activity windows (revoke_ops.activity_plan),
    most recent first; ``taken`` records the keys found. If Graph stops serving sign-in activity, the
    caller's rest (every target not yet yielded, in listing or given order) follows as it is; a run
    skipping inactive targets stops instead (InputError): it cannot skip blind."""
    try:
        async for user, key in scoped_windows(session, order, keys, collecting):
            if taken is not None:
                taken.add(key)
            if not _done(plan, str(user.get("id", "")).lower(), user.get("userPrincipalName")):
                yield _decide(plan, user, key)
    except ActivityUnavailableError as err:
        if order.skip_inactive_days is not None:
            raise InputError(stopped_skipping(err.reason)) from err
        _ordering_stopped(plan, err.reason)


def _ordering_stopped(plan: Plan, reason: str) -> None:
    plan.ordering_stopped = (
        f"activity ordering stopped mid-run: {reason}; the remaining users followed in listing order"
    )
    log.warning("%s", plan.ordering_stopped)
