"""What the directory says about users: the token's capabilities, lookups, exclusions, privileged users.

Each read needs a Graph permission; when one is missing, the feature that needs it says which
permission to add to the stack's ``readPermissions``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

from revoke_ops.errors import AuthError, InputError, MissingPermissionError, RevokeOpsError, ServiceError
from revoke_ops.graph import (
    ADVANCED_HEADERS,
    USER_FIELDS,
    BatchItem,
    GraphRequestError,
    GraphSession,
    needs_advanced_query,
    odata_literal,
)
from revoke_ops.targets import Target, parse_target

__all__ = [
    "Capabilities",
    "Exclusions",
    "Privileged",
    "find_privileged",
    "is_external",
    "lookup",
    "lookup_failed",
    "privileged_ids",
    "privileged_members",
    "resolve_exclusions",
]

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

    users: int = 0  # distinct users excluded (an exclusion resolves to an id and a UPN: one user)

    def __len__(self) -> int:
        return self.users


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


def lookup_failed(what: str, err: GraphRequestError) -> RevokeOpsError:
    """A read that failed: a permission problem (exit 3) or a service failure (nothing changed)."""
    status = err.response.status
    if status in (401, 403):
        return AuthError(f"{what} failed: {err}", err.response.error_code)
    return ServiceError(f"{what} failed: {err}; nothing was changed, try again", err.response.error_code)


async def resolve_exclusions(
    session: GraphSession | None, caps: Capabilities, values: list[str], target_kinds: set[str]
) -> Exclusions:
    """Phase 2: every exclusion becomes an object id (and UPN); one that cannot be resolved refuses the run.

    Without User.Read.All exclusions cannot be resolved, and an exclusion can then only be matched
    against a target named in the same form: the run is refused unless every exclusion is of the
    one kind every target has (checked per target kind, so a decoy exclusion of the other kind does
    not open the guard). ``target_kinds`` is the set of forms the targets arrive in (group members
    arrive as object ids).

    :raises InputError: an exclusion that does not exist, or that cannot be matched without User.Read.All.
    """
    excl = Exclusions()
    targets = [parse_target(v, "--exclude") if not isinstance(v, Target) else v for v in values]
    if not targets:
        return excl
    if not caps.read_users or session is None:
        kinds = {t.kind for t in targets}
        if len(kinds | target_kinds) > 1:
            names = {"id": "object ids", "upn": "userPrincipalNames"}
            raise InputError(
                "exclusions cannot be matched without the Microsoft Graph permission User.Read.All against targets "
                f"given in another form (targets: {' and '.join(names[k] for k in sorted(target_kinds))}; "
                f"exclusions: {' and '.join(names[k] for k in sorted(kinds))}). Nothing was changed. Add User.Read.All "
                "to the stack's readPermissions and run `pulumi up`, or give every target and every exclusion in the "
                "same one form"
            )
        for t in targets:
            (excl.ids if t.kind == "id" else excl.upns).add(t.key)
        excl.users = len(excl.ids | excl.upns)
        log.warning("exclusions could not be checked against the directory (no User.Read.All); matched as given")
        return excl
    try:
        found = await lookup(session, targets)
    except GraphRequestError as err:
        raise lookup_failed("resolving the exclusions", err) from err
    missing = [t for t in targets if t.key not in found]
    if missing:
        shown = ", ".join(f"{t.key} ({t.source})" for t in missing[:10])
        raise InputError(f"{len(missing)} exclusion(s) do not exist in the tenant, so the run is refused: {shown}")
    for user in found.values():
        excl.ids.add(str(user["id"]).lower())
        excl.upns.add(str(user.get("userPrincipalName", "")).lower())
    excl.users = len(excl.ids)
    return excl


@dataclass
class Privileged:
    """Users who hold or may activate a directory role: they are revoked first."""

    ids: set[str] = field(default_factory=set)
    upns: set[str] = field(default_factory=set)
    notes: list[str] = field(default_factory=list)  # what could not be checked, for the operator
    #: each holder's UPN -> object id (when looked up): one user named both ways is one privileged user
    id_of_upn: dict[str, str] = field(default_factory=dict)

    def __contains__(self, key: str) -> bool:
        return key in self.ids or key in self.upns


ROLE_PRINCIPALS = (
    # Active assignments; principal expanded so that role-assignable groups are recognised.
    ("active", "/roleManagement/directory/roleAssignments?$expand=principal"),
    # PIM-eligible assignments (Entra ID P2): someone eligible can activate the role at any time.
    ("eligible", "/roleManagement/directory/roleEligibilityScheduleInstances?$expand=principal"),
)


async def find_privileged(session: GraphSession, caps: Capabilities, *, need_upns: bool) -> Privileged:
    """Every user holding a directory role, directly, through a role-assignable group, or PIM-eligible.

    What cannot be checked (eligibility without Entra ID P2 or the permission, groups without
    GroupMember.Read.All) is said in ``notes``, never silently left out.
    """
    found = Privileged()
    groups: set[str] = set()
    for kind, url in ROLE_PRINCIPALS:
        try:
            async for page in session.pages(url):
                for row in page:
                    raw = row.get("principal")
                    principal: dict[str, Any] = raw if isinstance(raw, dict) else {}
                    pid = str(row.get("principalId") or principal.get("id") or "").lower()
                    if not pid:
                        continue
                    odata_type = str(principal.get("@odata.type", "#microsoft.graph.user"))
                    if odata_type == "#microsoft.graph.group":
                        groups.add(pid)
                    elif odata_type == "#microsoft.graph.user":
                        found.ids.add(pid)
        except GraphRequestError as err:
            if kind == "active":
                raise lookup_failed("listing directory role assignments", err) from err
            found.notes.append(
                "PIM-eligible role assignments were not checked (Graph answered "
                f"{err.response.status} {err.response.error_code or ''}: needs Entra ID P2 and "
                "RoleManagement.Read.Directory); eligible users go in listing order"
            )
    if groups and not caps.read_members:
        found.notes.append(
            f"{len(groups)} role-assignable group(s) hold directory roles; their members cannot be listed without "
            "GroupMember.Read.All and go in listing order"
        )
    elif groups:
        for gid in sorted(groups):
            try:
                async for page in session.pages(f"/groups/{quote(gid, safe='')}/transitiveMembers?$select=id&$top=999"):
                    found.ids.update(
                        str(m.get("id", "")).lower() for m in page if m.get("@odata.type", USER_TYPE) == USER_TYPE
                    )
            except GraphRequestError as err:
                found.notes.append(f"the members of role-assignable group {gid} could not be listed ({err})")
    if need_upns and caps.read_users and found.ids:
        holders = await lookup(session, [Target(i, "id", "role holder") for i in sorted(found.ids)])
        found.id_of_upn = {
            str(u["userPrincipalName"]).lower(): str(u.get("id", "")).lower()
            for u in holders.values()
            if u.get("userPrincipalName")
        }
        found.upns = set(found.id_of_upn)
    return found


async def privileged_ids(session: GraphSession) -> set[str]:
    """Object ids of every directory role holder (active assignments, users only)."""
    return (await find_privileged(session, Capabilities(frozenset()), need_upns=False)).ids


async def privileged_members(session: GraphSession, group: str, holders: list[str]) -> tuple[list[str], int]:
    """Which role holders are transitive members of ``group`` (checkMemberGroups in batches of 20).

    Items answered 429, 5xx or unreadably are asked again under the session's READ policy (after
    their Retry-After, capped); returns the members and how many holders could still not be checked.
    """
    members: list[str] = []
    unknown = 0
    for start in range(0, len(holders), 20):
        todo = holders[start : start + 20]
        items = [
            BatchItem(str(n + 1), "POST", f"/directoryObjects/{h}/checkMemberGroups", {"groupIds": [group]})
            for n, h in enumerate(todo)
        ]
        answers = await session.batch_read(items)
        for item, holder in zip(items, todo, strict=True):
            answer = answers[item.id]
            status = int(answer.get("status") or 0)
            raw_body = answer.get("body")
            body: dict[str, Any] = raw_body if isinstance(raw_body, dict) else {}
            if status == 200 and isinstance(body.get("value"), list):
                if group.lower() in [str(g).lower() for g in body["value"]]:
                    members.append(holder)
            elif status != 404:  # 404: a role holder that is not a user any more
                unknown += 1
    return members, unknown
