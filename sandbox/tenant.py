"""The emulated tenant's directory: users, groups, directory roles, apps, consent.

Size (~500 lines): the directory model only (seeding is in sandbox/seed.py): one record type per
directory object with its Graph shape (about half), and the :class:`Tenant` that indexes them and
answers the questions every part of the sandbox asks (transitive members, role holders, consented
roles and scopes, app assignment). They change together; splitting the records from the index
would only move imports around.
"""

from __future__ import annotations

import random
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sandbox.catalog import (
    BY_NAME,
    DIRECTORY_ROLES,
    GRAPH_APP_ID,
    GRAPH_SP_ID,
    PERMISSIONS,
)

DOMAIN = "contoso-sandbox.onmicrosoft.com"
#: The seeded tenant's break-glass Global Administrators (sandbox.seed makes them; sign-in activity
#: and tests recognise them by these aliases).
BREAK_GLASS = ("breakglass1", "breakglass2")


def iso(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(slots=True)
class User:
    id: str
    user_principal_name: str
    display_name: str
    mail: str | None
    user_type: str
    external_user_state: str | None
    account_enabled: bool
    department: str | None
    sessions_valid_from: datetime
    roles: list[str] = field(default_factory=list)  # directory role names
    created: float = float("-inf")  # sandbox clock seconds; seeded users exist from the start
    eligible_roles: list[str] = field(default_factory=list)  # PIM: directory roles the user may activate
    # signInActivity: last interactive and non-interactive sign-in (attempts); None = none recorded
    last_sign_in: datetime | None = None
    last_non_interactive_sign_in: datetime | None = None
    on_premises_sync_enabled: bool = False  # synchronised from on-premises AD: Graph refuses cloud writes
    company_name: str | None = None  # filterable only in advanced queries (sandbox.odata.ADVANCED_EQ_FIELDS)

    def sign_in_activity(self) -> dict[str, Any] | None:
        """Graph's signInActivity, or None for a user who never signed in (Graph then omits it)."""
        if self.last_sign_in is None and self.last_non_interactive_sign_in is None:
            return None
        never = "0001-01-01T00:00:00Z"
        return {
            "lastSignInDateTime": iso(self.last_sign_in) if self.last_sign_in else never,
            "lastSignInRequestId": str(uuid.uuid5(uuid.NAMESPACE_OID, self.id)) if self.last_sign_in else None,
            "lastNonInteractiveSignInDateTime": (
                iso(self.last_non_interactive_sign_in) if self.last_non_interactive_sign_in else never
            ),
            "lastNonInteractiveSignInRequestId": None,
        }

    def to_graph(self, select: list[str] | None = None) -> dict[str, Any]:
        full: dict[str, Any] = {
            "id": self.id,
            "userPrincipalName": self.user_principal_name,
            "displayName": self.display_name,
            "mail": self.mail,
            "userType": self.user_type,
            "externalUserState": self.external_user_state,
            "accountEnabled": self.account_enabled,
            "department": self.department,
            "companyName": self.company_name,
            "onPremisesSyncEnabled": True if self.on_premises_sync_enabled else None,
            "signInSessionsValidFromDateTime": iso(self.sessions_valid_from),
            "givenName": self.display_name.split(" ")[0],
            "surname": self.display_name.split(" ")[-1],
            "jobTitle": None,
            "businessPhones": [],
            "mobilePhone": None,
            "officeLocation": None,
            "preferredLanguage": None,
        }
        activity = self.sign_in_activity()
        if activity is not None:
            full["signInActivity"] = activity  # returned only on $select, like Graph
        if select:
            return {"id": self.id, **{k: full[k] for k in select if k in full}}
        # Graph's default user projection: no externalUserState, accountEnabled, department or
        # signInSessionsValidFromDateTime unless asked for with $select.
        keep: tuple[str, ...] = ("id", "businessPhones", "displayName", "givenName", "jobTitle", "mail")
        keep += ("mobilePhone", "officeLocation", "preferredLanguage", "surname", "userPrincipalName")
        return {k: full[k] for k in keep}


@dataclass(slots=True)
class Group:
    id: str
    display_name: str
    members: list[str] = field(default_factory=list)  # user and group ids
    is_assignable_to_role: bool = False  # a role-assignable group (set at creation only, as in Entra)
    roles: list[str] = field(default_factory=list)  # directory roles assigned to the group (role-assignable only)
    added: dict[str, float] = field(default_factory=dict)  # member id -> sandbox clock seconds (seeded: absent)

    def to_graph(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "displayName": self.display_name,
            "mailNickname": self.display_name,
            "securityEnabled": True,
            "mailEnabled": False,
            "groupTypes": [],
            "isAssignableToRole": self.is_assignable_to_role,
        }


@dataclass
class Application:
    id: str
    app_id: str
    display_name: str
    sign_in_audience: str = "AzureADMyOrg"
    is_fallback_public_client: bool = False
    redirect_uris: list[str] = field(default_factory=list)
    required_resource_access: list[dict[str, Any]] = field(default_factory=list)
    key_credentials: list[dict[str, Any]] = field(default_factory=list)
    #: federatedIdentityCredentials (a navigation property: not part of to_graph)
    federated_credentials: list[dict[str, Any]] = field(default_factory=list)
    owners: list[str] = field(default_factory=list)
    tags: list[str] = field(default_factory=list)
    notes: str | None = None

    def to_graph(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "appId": self.app_id,
            "displayName": self.display_name,
            "signInAudience": self.sign_in_audience,
            "isFallbackPublicClient": self.is_fallback_public_client,
            "publicClient": {"redirectUris": list(self.redirect_uris)},
            "requiredResourceAccess": self.required_resource_access,
            "keyCredentials": [
                {k: v for k, v in kc.items() if k != "key"} | {"key": None} for kc in self.key_credentials
            ],
            "tags": self.tags,
            "notes": self.notes,
        }


@dataclass
class ServicePrincipal:
    id: str
    app_id: str
    display_name: str
    app_role_assignment_required: bool = False
    app_roles: list[dict[str, Any]] = field(default_factory=list)
    oauth2_permission_scopes: list[dict[str, Any]] = field(default_factory=list)
    owners: list[str] = field(default_factory=list)
    tags: list[str] = field(default_factory=list)
    service_principal_type: str = "Application"

    def to_graph(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "appId": self.app_id,
            "displayName": self.display_name,
            "appRoleAssignmentRequired": self.app_role_assignment_required,
            "appRoles": self.app_roles,
            "oauth2PermissionScopes": self.oauth2_permission_scopes,
            "servicePrincipalType": self.service_principal_type,
            "tags": self.tags,
        }


@dataclass
class AppRoleAssignment:
    id: str
    principal_id: str
    principal_type: str
    resource_id: str
    app_role_id: str
    created: float  # sandbox clock seconds (scaled), for the consent replication delay

    def to_graph(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "principalId": self.principal_id,
            "principalType": self.principal_type,
            "resourceId": self.resource_id,
            "appRoleId": self.app_role_id,
        }


@dataclass
class PermissionGrant:
    id: str
    client_id: str
    consent_type: str
    principal_id: str | None
    resource_id: str
    scope: str
    created: float

    def to_graph(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "clientId": self.client_id,
            "consentType": self.consent_type,
            "principalId": self.principal_id,
            "resourceId": self.resource_id,
            "scope": self.scope,
        }


@dataclass
class Revocation:
    """The sandbox's own record of one revocation, for comparing with what a client claims."""

    user_id: str
    user_principal_name: str
    by_app: str
    by_user: str | None
    at: str
    request_id: str
    client_request_id: str | None

    def to_json(self) -> dict[str, Any]:
        return {
            "userId": self.user_id,
            "userPrincipalName": self.user_principal_name,
            "byApp": self.by_app,
            "byUser": self.by_user,
            "at": self.at,
            "requestId": self.request_id,
            "clientRequestId": self.client_request_id,
        }


@dataclass(frozen=True, slots=True)
class AccountChange:
    """The sandbox's own record of one accountEnabled change (``/_control/account-changes``)."""

    user_id: str
    user_principal_name: str
    account_enabled: bool
    by_app: str
    by_user: str | None
    at: str
    request_id: str
    client_request_id: str | None

    def to_json(self) -> dict[str, Any]:
        return {
            "userId": self.user_id,
            "userPrincipalName": self.user_principal_name,
            "accountEnabled": self.account_enabled,
            "byApp": self.by_app,
            "byUser": self.by_user,
            "at": self.at,
            "requestId": self.request_id,
            "clientRequestId": self.client_request_id,
        }


class Tenant:
    """All directory state of one emulated tenant. Used from the server's event loop only."""

    def __init__(self, tenant_id: str, seed: int = 1) -> None:
        self.tenant_id = tenant_id
        self.rng = random.Random(seed)
        #: Entra ID P1 (group-based app assignment, signInActivity) and P2 (PIM: eligible role
        #: assignments); P2 includes P1
        self.p1_licence = True
        self.p2_licence = True
        self.seed = seed
        #: Graph's limit for reads of signInActivity (per app, per minute; 0: off) and its buckets
        self.activity_reads_per_minute = 10.0
        self.activity_reads: dict[str, tuple[float, float]] = {}
        self.users: list[User] = []
        self.users_by_id: dict[str, User] = {}
        self.users_by_upn: dict[str, User] = {}
        self.groups: dict[str, Group] = {}
        self.applications: dict[str, Application] = {}
        self.service_principals: dict[str, ServicePrincipal] = {}
        self.assignments: dict[str, AppRoleAssignment] = {}
        self.grants: dict[str, PermissionGrant] = {}
        self.revocations: list[Revocation] = []
        self.account_changes: list[AccountChange] = []
        self.role_object_ids = {r.name: self._uuid() for r in DIRECTORY_ROLES}
        self._closure: dict[str, list[str]] = {}
        self.service_principals[GRAPH_SP_ID] = ServicePrincipal(
            GRAPH_SP_ID,
            GRAPH_APP_ID,
            "Microsoft Graph",
            app_roles=[
                {
                    "id": p.role_id,
                    "value": p.name,
                    "displayName": p.name,
                    "allowedMemberTypes": ["Application"],
                    "isEnabled": True,
                }
                for p in PERMISSIONS
                if p.role_id
            ],
            oauth2_permission_scopes=[
                {
                    "id": p.scope_id,
                    "value": p.name,
                    "type": "Admin",
                    "adminConsentDisplayName": p.name,
                    "isEnabled": True,
                }
                for p in PERMISSIONS
                if p.scope_id
            ],
        )

    @property
    def premium(self) -> bool:
        """Entra ID P1 or P2 (without it Graph refuses to serve signInActivity)."""
        return self.p1_licence or self.p2_licence

    @premium.setter
    def premium(self, value: bool) -> None:
        self.p1_licence = self.p2_licence = value

    def _uuid(self) -> str:
        return str(uuid.UUID(int=self.rng.getrandbits(128), version=4))

    def new_id(self) -> str:
        return self._uuid()

    # -- users and groups ------------------------------------------------------------------
    def add_user(
        self,
        alias: str,
        display_name: str,
        *,
        user_type: str = "Member",
        external_state: str | None = None,
        upn: str | None = None,
        department: str | None = None,
        roles: tuple[str, ...] = (),
        enabled: bool = True,
        created: float = float("-inf"),
    ) -> User:
        upn = upn or f"{alias}@{DOMAIN}"
        mail = None if "#EXT#" in upn else upn
        if "#EXT#" in upn:
            mail = upn.split("#EXT#")[0].replace("_", "@", 1)
        user = User(
            id=self._uuid(),
            user_principal_name=upn,
            display_name=display_name,
            mail=mail,
            user_type=user_type,
            external_user_state=external_state,
            account_enabled=enabled,
            department=department,
            sessions_valid_from=datetime(2026, 1, 1, tzinfo=UTC),
            roles=list(roles),
            created=created,
        )
        self.users.append(user)
        self.users_by_id[user.id] = user
        self.users_by_upn[upn.lower()] = user
        return user

    def add_group(self, name: str, members: list[str]) -> Group:
        group = Group(self._uuid(), name, list(members))
        self.groups[group.id] = group
        self._closure.clear()
        return group

    def add_member(self, group_id: str, member_id: str, at: float) -> None:
        """Add a user or group to a group at sandbox time ``at``."""
        group = self.groups[group_id]
        if member_id not in group.members:
            group.members.append(member_id)
            group.added[member_id] = at
            self._closure.clear()

    def group_named(self, name: str) -> Group:
        return next(g for g in self.groups.values() if g.display_name == name)

    def user(self, key: str) -> User | None:
        """Look a user up by object id or userPrincipalName (case-insensitive)."""
        return self.users_by_id.get(key.lower()) or self.users_by_upn.get(key.lower())

    def transitive_members(self, group_id: str) -> list[str]:
        """Every user and group below ``group_id`` (each once, direct members first)."""
        cached = self._closure.get(group_id)
        if cached is not None:
            return cached
        seen: set[str] = {group_id}
        order: list[str] = []
        queue = [group_id]
        while queue:
            current = self.groups[queue.pop(0)]
            for member in current.members:
                if member in seen:
                    continue
                seen.add(member)
                order.append(member)
                if member in self.groups:
                    queue.append(member)
        self._closure[group_id] = order
        return order

    def role_holders(self) -> Iterator[tuple[str, User]]:
        """Users holding a directory role directly (active assignments)."""
        for user in self.users:
            for role in user.roles:
                yield role, user

    def role_principals(self) -> Iterator[tuple[str, str]]:
        """(role, principal id) of every active assignment: users, then role-assignable groups."""
        for role, user in self.role_holders():
            yield role, user.id
        for group in self.groups.values():
            for role in group.roles:
                yield role, group.id

    def role_eligibilities(self) -> Iterator[tuple[str, User]]:
        """(role, user) of every PIM-eligible assignment."""
        for user in self.users:
            for role in user.eligible_roles:
                yield role, user

    # -- applications and consent -----------------------------------------------------------
    def sp_for_app(self, app_id: str) -> ServicePrincipal | None:
        return next((sp for sp in self.service_principals.values() if sp.app_id == app_id), None)

    def app_by_app_id(self, app_id: str) -> Application | None:
        return next((a for a in self.applications.values() if a.app_id == app_id), None)

    def granted_roles(self, sp_id: str, older_than: float | None = None) -> list[str]:
        """Graph app role names assigned (admin-consented) to a service principal."""
        names = []
        for a in self.assignments.values():
            if (
                a.principal_id == sp_id
                and a.resource_id == GRAPH_SP_ID
                and (older_than is None or a.created <= older_than)
            ):
                role = next(
                    (r for r in self.service_principals[GRAPH_SP_ID].app_roles if r["id"] == a.app_role_id), None
                )
                if role:
                    names.append(role["value"])
        return sorted(set(names))

    def granted_scopes(self, sp_id: str, user_id: str, older_than: float | None = None) -> list[str]:
        scopes: set[str] = set()
        for g in self.grants.values():
            if g.client_id != sp_id or g.resource_id != GRAPH_SP_ID:
                continue
            if older_than is not None and g.created > older_than:
                continue
            if g.consent_type == "AllPrincipals" or g.principal_id == user_id:
                scopes.update(g.scope.split())
        return sorted(scopes)

    def user_assigned(self, sp_id: str, user_id: str) -> bool:
        """Whether a user is assigned to an app: directly, or as a *direct* member of an assigned group.

        Entra does not follow nested groups for app assignment, and group-based assignment needs
        Entra ID P1 or P2 (without it, only direct user assignments count).
        """
        for a in self.assignments.values():
            if a.resource_id != sp_id:
                continue
            if a.principal_id == user_id:
                return True
            group = self.groups.get(a.principal_id)
            if group is not None and self.premium and user_id in group.members:
                return True
        return False

    def grant_app_roles(self, sp_id: str, names: list[str], created: float = 0.0) -> None:
        for name in names:
            role_id = BY_NAME[name].role_id
            assert role_id is not None
            aid = self._uuid()
            self.assignments[aid] = AppRoleAssignment(aid, sp_id, "ServicePrincipal", GRAPH_SP_ID, role_id, created)
