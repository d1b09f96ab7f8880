"""Phase 2 and the stream: exclusions to object ids, privileged users, and each target resolved.

Resolution needs read permissions; when one is missing, the feature that needs it says which
permission to add to the stack's ``readPermissions``.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

from revoke_ops.engine import Final, Item, Send
from revoke_ops.errors import AuthError, InputError, MissingPermissionError
from revoke_ops.graph import (
    ADVANCED_HEADERS,
    USER_FIELDS,
    GraphRequestError,
    GraphSession,
    TransportError,
    UnreadableResponseError,
    needs_advanced_query,
    odata_literal,
)
from revoke_ops.targets import Target, TargetFile, key_hash, parse_target

__all__ = ["Capabilities", "Exclusions", "Plan", "is_external", "resolve_exclusions", "stream"]

log = logging.getLogger(__name__)

READ_USERS = {"User.Read.All", "User.ReadWrite.All", "Directory.Read.All", "Directory.ReadWrite.All"}
READ_MEMBERS = {"GroupMember.Read.All", "Group.Read.All", "Directory.Read.All", "Directory.ReadWrite.All"}
READ_ROLES = {"RoleManagement.Read.Directory", "Directory.Read.All", "RoleManagement.ReadWrite.Directory"}
REVOKE = {"User.RevokeSessions.All", "User.ReadWrite.All", "Directory.ReadWrite.All"}
LOOKUP_CHUNK = 15  # Graph's limit of values in one `in` filter
USER_TYPE = "#microsoft.graph.user"


@dataclass(frozen=True)
class Capabilities:
    """What the token lets us do, from its roles (app-only) or scp (delegated)."""

    permissions: frozenset[str]

    @classmethod
    def from_claims(cls, claims: dict[str, Any]) -> Capabilities:
        perms = set(claims.get("roles") or []) | set(str(claims.get("scp", "")).split())
        return cls(frozenset(p for p in perms if p))

    @property
    def revoke(self) -> bool:
        return bool(self.permissions & REVOKE)

    @property
    def read_users(self) -> bool:
        return bool(self.permissions & READ_USERS)

    @property
    def read_members(self) -> bool:
        return bool(self.permissions & READ_MEMBERS)

    @property
    def read_roles(self) -> bool:
        return bool(self.permissions & READ_ROLES)

    def require(self, feature: str, ok: bool, permission: str) -> None:
        if not ok:
            raise MissingPermissionError(feature, permission, sorted(self.permissions))


def is_external(user: dict[str, Any]) -> bool:
    """Guests and B2B members: not revocable here (their sessions live in their home tenant)."""
    upn = str(user.get("userPrincipalName") or "").lower()
    return user.get("userType") == "Guest" or "#ext#" in upn or bool(user.get("externalUserState"))


@dataclass
class Exclusions:
    """Break-glass accounts: never revoked, whatever else is asked."""

    ids: set[str] = field(default_factory=set)
    upns: set[str] = field(default_factory=set)

    def excludes(self, id: str | None, upn: str | None) -> bool:
        return (id is not None and id.lower() in self.ids) or (upn is not None and upn.lower() in self.upns)

    def __len__(self) -> int:
        return len(self.ids | self.upns)


async def lookup(
    session: GraphSession, targets: list[Target], extra_filter: str | None = None
) -> dict[str, dict[str, Any]]:
    """Look users up by id or UPN in chunks of 15; return key -> user (absent keys were not found).

    :param extra_filter: only users that also match this ``$filter``.
    """
    found: dict[str, dict[str, Any]] = {}
    for kind, field_name in (("id", "id"), ("upn", "userPrincipalName")):
        keys = [t.key for t in targets if t.kind == kind]
        for start in range(0, len(keys), LOOKUP_CHUNK):
            chunk = keys[start : start + LOOKUP_CHUNK]
            values = ",".join(odata_literal(k) for k in chunk)
            condition = f"{field_name} in ({values})"
            headers = None
            if extra_filter:
                condition = f"({extra_filter}) and ({condition})"
            url = f"/users?$filter={quote(condition, safe='')}&$select={USER_FIELDS}&$top=999"
            if extra_filter and needs_advanced_query(extra_filter):
                url += "&$count=true"
                headers = ADVANCED_HEADERS
            async for page in session.pages(url, headers=headers):
                for user in page:
                    key = str(user.get("id" if kind == "id" else "userPrincipalName", "")).lower()
                    found[key] = user
    return found


async def resolve_exclusions(
    session: GraphSession | None, caps: Capabilities, values: list[str], target_kinds: set[str]
) -> Exclusions:
    """Phase 2: every exclusion becomes an object id (and UPN); one that cannot be resolved refuses the run.

    :raises InputError: an exclusion that does not exist, or that cannot be matched without User.Read.All.
    """
    excl = Exclusions()
    targets = [parse_target(v, "--exclude") if not isinstance(v, Target) else v for v in values]
    if not targets:
        return excl
    if not caps.read_users or session is None:
        kinds = {t.kind for t in targets}
        if kinds - target_kinds or target_kinds - kinds:
            raise InputError(
                "exclusions and targets are given in different forms (object ids vs UPNs) and cannot be matched "
                "without the Microsoft Graph permission User.Read.All: add User.Read.All to the stack's "
                "readPermissions and run `pulumi up`, or give both as the same kind"
            )
        for t in targets:
            (excl.ids if t.kind == "id" else excl.upns).add(t.key)
        log.warning("exclusions could not be checked against the directory (no User.Read.All); matched as given")
        return excl
    try:
        found = await lookup(session, targets)
    except GraphRequestError as err:
        raise AuthError(f"resolving the exclusions failed: {err}", err.response.error_code) from err
    missing = [t for t in targets if t.key not in found]
    if missing:
        shown = ", ".join(f"{t.key} ({t.source})" for t in missing[:10])
        raise InputError(f"{len(missing)} exclusion(s) do not exist in the tenant, so the run is refused: {shown}")
    for user in found.values():
        excl.ids.add(str(user["id"]).lower())
        excl.upns.add(str(user.get("userPrincipalName", "")).lower())
    return excl


async def privileged_ids(session: GraphSession) -> set[str]:
    """Object ids of every directory role holder."""
    holders: set[str] = set()
    async for page in session.pages("/roleManagement/directory/roleAssignments?$top=999"):
        holders.update(str(a.get("principalId", "")).lower() for a in page)
    return holders


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
    privileged: set[str] = field(default_factory=set)
    privileged_upns: set[str] = field(default_factory=set)
    operator_id: str | None = None
    skip: set[int] = field(default_factory=set)  # key hashes already done (resume)


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
        return Final(uid, upn, target, "excluded", "excluded by --exclude/--exclude-file (break-glass)")
    if not plan.include_external and is_external(user):
        return Final(
            uid,
            upn,
            target,
            "skipped_external",
            "external user (guest or B2B): their sessions live in their home tenant; this API does not "
            "revoke them (use --include-external to send it anyway)",
        )
    return Send(
        ref=uid or upn or target,
        id=uid,
        upn=upn,
        target=target,
        privileged=bool(uid and uid in plan.privileged),
        last=bool(uid and uid == plan.operator_id),
    )


def _done(plan: Plan, *keys: str | None) -> bool:
    return any(k and key_hash(k.lower()) in plan.skip for k in keys)


async def stream(plan: Plan, session: GraphSession | None, caps: Capabilities) -> AsyncIterator[Item]:
    """Yield each target once, resolved: excluded, external, not found, or to send.

    Privileged local targets (directory role holders) come first; the signed-in operator last.
    """
    if plan.group or plan.all_users:
        assert session is not None
        async for item in _remote(plan, session, caps):
            yield item
        return
    if caps.read_users and session is not None:
        if plan.privileged:
            # Privileged first: find them among the targets before streaming the rest.
            first: list[Target] = []
            for target in _local_targets(plan):
                if (target.kind == "id" and target.key in plan.privileged) or (
                    target.kind == "upn" and target.key in plan.privileged_upns
                ):
                    first.append(target)
            rest_skip = {key_hash(t.key) for t in first}
        else:
            first, rest_skip = [], set()
        for chunk in _chunks(first, LOOKUP_CHUNK):
            for item in await _resolved(plan, session, chunk):
                yield item
        rest = _chunks((t for t in _local_targets(plan) if key_hash(t.key) not in rest_skip), LOOKUP_CHUNK)
        async for items in _pipelined(rest, lambda chunk: _resolved(plan, session, chunk)):
            for item in items:
                yield item
        return
    # Without User.Read.All: revoke as given (by id or UPN); externals only by their #EXT# UPN.
    for target in _local_targets(plan):
        if _done(plan, target.key):
            continue
        uid = target.key if target.kind == "id" else None
        upn = target.key if target.kind == "upn" else None
        yield _decide(plan, {"id": uid or "", "userPrincipalName": upn}, target.key)


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
    found = await lookup(session, todo)
    items: list[Item] = []
    for target in todo:
        user = found.get(target.key)
        if user is None:
            items.append(
                Final(
                    target.key if target.kind == "id" else None,
                    target.key if target.kind == "upn" else None,
                    target.key,
                    "not_found",
                    f"no such user in the tenant ({target.source})",
                    "Request_ResourceNotFound",
                )
            )
        elif not _done(plan, str(user.get("id")), str(user.get("userPrincipalName") or "")):
            items.append(_decide(plan, user, target.key))
    return items


async def _privileged_members(session: GraphSession, group: str, holders: list[str]) -> list[str]:
    """Which directory role holders are transitive members of ``group`` (checkMemberGroups, batched)."""
    from revoke_ops.graph import BatchItem

    members: list[str] = []
    for start in range(0, len(holders), 20):
        chunk = holders[start : start + 20]
        items = [
            BatchItem(str(n + 1), "POST", f"/directoryObjects/{h}/checkMemberGroups", {"groupIds": [group]})
            for n, h in enumerate(chunk)
        ]
        response = await session.batch(items)
        answers = response.body.get("responses", []) if isinstance(response.body, dict) else []
        for answer in answers:
            body = answer.get("body") if isinstance(answer.get("body"), dict) else {}
            if answer.get("status") == 200 and group.lower() in [str(g).lower() for g in body.get("value", [])]:
                members.append(chunk[int(answer["id"]) - 1])
    return members


async def _remote(plan: Plan, session: GraphSession, caps: Capabilities) -> AsyncIterator[Item]:
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
        headers: dict[str, str] | None = None
    else:
        caps.require("revoking every user (--all-users)", caps.read_users, "User.Read.All")
        url = f"/users?$select={USER_FIELDS}&$top=999"
        headers = None
        if plan.filter:
            url += f"&$filter={quote(plan.filter, safe='')}"
            if needs_advanced_query(plan.filter):
                url += "&$count=true"
                headers = ADVANCED_HEADERS
    if plan.privileged and plan.group:
        # Privileged members first: ask Graph which role holders are (transitive) members.
        try:
            members = await _privileged_members(session, plan.group, sorted(plan.privileged))
        except (TransportError, UnreadableResponseError) as err:
            log.warning("could not check which privileged users are in the group (%s): they go in listing order", err)
            members = []
        for start in range(0, len(members), LOOKUP_CHUNK):
            chunk = [Target(i, "id", "privileged group member") for i in members[start : start + LOOKUP_CHUNK]]
            found = await lookup(session, chunk) if caps.read_users else {i.key: {"id": i.key} for i in chunk}
            for user in found.values():
                if not _done(plan, str(user["id"])):
                    yield _decide(plan, user, str(user["id"]).lower())
        plan.skip |= {key_hash(i) for i in members}
    if plan.privileged and plan.all_users:
        # Role holders that the run covers (all of them, or those matching --filter) go first.
        ids = sorted(plan.privileged)
        for start in range(0, len(ids), LOOKUP_CHUNK):
            chunk = [Target(i, "id", "directory role holder") for i in ids[start : start + LOOKUP_CHUNK]]
            found = await lookup(session, chunk, plan.filter)
            for user in found.values():
                if not _done(plan, str(user["id"])):
                    yield _decide(plan, user, str(user["id"]).lower())
                plan.skip.add(key_hash(str(user["id"]).lower()))
    try:
        async for page in session.pages(url, headers=headers):
            for user in page:
                if plan.group and user.get("@odata.type", USER_TYPE) != USER_TYPE:
                    continue  # a nested group (its members are listed too) or another directory object
                uid = str(user.get("id", "")).lower()
                if _done(plan, uid, user.get("userPrincipalName")):
                    continue
                yield _decide(plan, user, uid)
    except GraphRequestError as err:
        if err.response.status == 404:
            raise InputError(f"--group {plan.group}: no such group in the tenant") from err
        if err.response.status == 400:
            raise InputError(f"--filter {plan.filter!r}: Graph refused it: {err.response.error_message}") from err
        raise
