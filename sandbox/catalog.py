"""Well-known Entra and Microsoft Graph ids the sandbox emulates (a superset of revoke_ops.facts)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

GRAPH_APP_ID: Final = "00000003-0000-0000-c000-000000000000"
GRAPH_SP_ID: Final = "2b8e1f5c-6a3d-4c1e-9f00-00000000a11c"  # the Graph service principal's object id here


@dataclass(frozen=True)
class Permission:
    name: str
    role_id: str | None
    scope_id: str | None


#: Microsoft Graph permissions with their real ids (app role = application, scope = delegated).
PERMISSIONS: Final[tuple[Permission, ...]] = (
    Permission(
        "User.RevokeSessions.All", "77f3a031-c388-4f99-b373-dc68676a979e", "fc30e98b-8810-4501-81f5-c20a3196387b"
    ),
    Permission(
        "User.EnableDisableAccount.All",
        "3011c876-62b7-4ada-afa2-506cbbecc68c",
        "f92e74e7-2563-467f-9dd0-902688cb5863",
    ),
    Permission("Directory.AccessAsUser.All", None, "0e263e50-5827-48a4-b97c-d940288653c7"),
    Permission("User.Read.All", "df021288-bdef-4463-88db-98f22de89214", "a154be20-db9c-4678-8ab7-66f6cc099a59"),
    Permission("User.ReadWrite.All", "741f803b-c850-494e-b5df-cde7c675a1ca", "204e0828-b5ca-4ad8-b9f3-f32a958e7cc4"),
    Permission("User.ReadBasic.All", None, "b340eb25-3456-403f-be2f-af7a0d370277"),
    Permission("GroupMember.Read.All", "98830695-27a2-44f7-8c18-0c3ebc9698f6", "bc024368-1153-4739-b217-4326f2e966d0"),
    Permission("Group.Read.All", "5b567255-7703-4780-807c-7be8301ae99b", "5f8c59db-677d-491f-a6b8-5f174b11ec1d"),
    Permission("Directory.Read.All", "7ab1d382-f21e-4acd-a863-ba3e13f7da61", "06da0dbc-49e2-44d2-8312-53f166ab848a"),
    Permission(
        "Directory.ReadWrite.All", "19dbc75e-c2e2-444c-a770-ec69d8559fc7", "c5366453-9fb0-48a5-a156-24f0c49a4b84"
    ),
    Permission("AuditLog.Read.All", "b0afded3-3588-46d8-8b3d-9842eff778da", "e4c9e354-4dc5-45b8-9e7c-e1393b0b1a20"),
    Permission(
        "RoleManagement.Read.Directory", "483bed4a-2ad3-4361-a73b-c83ccdbdc53c", "741c54c3-0c1e-44a1-818b-3f97ab4e8c83"
    ),
    Permission("Application.Read.All", "9a5d68dd-52b0-4cc2-bd40-abcf44ac3a30", "c79f8feb-a9db-4090-85f9-90d820caa0eb"),
    Permission(
        "Application.ReadWrite.All", "1bfefb4e-e0b5-418b-a88f-73c46d2cc8e9", "bdfbf15f-ee85-4955-8675-146e8e5296b5"
    ),
    Permission("Application.ReadWrite.OwnedBy", "18a4783c-866b-4cc7-a460-3d5e5662c884", None),
    Permission(
        "AppRoleAssignment.ReadWrite.All",
        "06b708a9-e830-4db3-a914-8e69da51d44f",
        "84bccea3-f856-4a8a-967b-dbe0a3d53a64",
    ),
    Permission(
        "DelegatedPermissionGrant.ReadWrite.All",
        "8e8e4742-1d95-4f68-9d56-6ee75648c72a",
        "41ce6ca6-6826-4807-84f1-1c82854f7ee5",
    ),
)
BY_NAME: Final = {p.name: p for p in PERMISSIONS}

# Least-privileged permission for each operation, followed by the broader ones Graph also accepts.
REVOKE: Final = frozenset({"User.RevokeSessions.All", "User.ReadWrite.All", "Directory.ReadWrite.All"})
#: accountEnabled (Graph "Update user": User.EnableDisableAccount.All with User.Read.All is the
#: least-privileged combination; the broader write permissions also allow it)
ENABLE_DISABLE: Final = frozenset({"User.EnableDisableAccount.All", "User.ReadWrite.All", "Directory.ReadWrite.All"})
READ_USERS: Final = frozenset(
    {"User.Read.All", "User.ReadWrite.All", "Directory.Read.All", "Directory.ReadWrite.All", "User.ReadBasic.All"}
)
READ_MEMBERS: Final = frozenset(
    {"GroupMember.Read.All", "Group.Read.All", "Directory.Read.All", "Directory.ReadWrite.All"}
)
READ_ROLES: Final = frozenset({"RoleManagement.Read.Directory", "Directory.Read.All", "Directory.ReadWrite.All"})
#: PIM eligibility (Graph "List roleEligibilityScheduleInstances"; Directory.Read.All is not among them)
READ_ELIGIBILITY: Final = frozenset(
    {
        "RoleEligibilitySchedule.Read.Directory",
        "RoleEligibilitySchedule.ReadWrite.Directory",
        "RoleManagement.Read.All",
        "RoleManagement.Read.Directory",
        "RoleManagement.ReadWrite.Directory",
    }
)
WRITE_APPS: Final = frozenset({"Application.ReadWrite.All", "Directory.ReadWrite.All"})
READ_APPS: Final = frozenset({"Application.Read.All", "Application.ReadWrite.All", "Directory.Read.All"}) | WRITE_APPS
#: create applications (the caller becomes their owner), and manage only the ones it owns
WRITE_OWNED_APPS: Final = frozenset({"Application.ReadWrite.OwnedBy"})
#: directory reads that owners/$ref and appRoleAssignedTo need besides their write permission
READ_DIRECTORY_FOR_APPS: Final = frozenset(
    {"Application.Read.All", "Application.ReadWrite.All", "Directory.Read.All", "Directory.ReadWrite.All"}
)
WRITE_ASSIGNMENTS: Final = frozenset({"AppRoleAssignment.ReadWrite.All"})
WRITE_GRANTS: Final = frozenset({"DelegatedPermissionGrant.ReadWrite.All"})


@dataclass(frozen=True)
class DirectoryRole:
    template_id: str
    name: str
    #: what holding the role makes its holder as a *target*: "limited" or "privileged" admin
    target_tier: str
    #: up to which target tier a holder may revoke others' sessions (0 none, 1 non-admins,
    #: 2 limited admins, 3 privileged admins)
    power: int


DIRECTORY_ROLES: Final[tuple[DirectoryRole, ...]] = (
    DirectoryRole("62e90394-69f5-4237-9190-012177145e10", "Global Administrator", "privileged", 3),
    DirectoryRole("7be44c8a-adaf-4e2a-84d6-ab2649e08a13", "Privileged Authentication Administrator", "privileged", 3),
    DirectoryRole("e8611ab8-c189-46e8-94e1-60213ab1f814", "Privileged Role Administrator", "privileged", 0),
    DirectoryRole("194ae4cb-b126-40b2-bd5b-6091b380977d", "Security Administrator", "privileged", 0),
    DirectoryRole("fe930be7-5e62-47db-91af-98c3a49a38b1", "User Administrator", "limited", 2),
    DirectoryRole("729827e3-9c14-49f7-bb1b-9608f156bbb8", "Helpdesk Administrator", "limited", 1),
    DirectoryRole("966707d0-3269-4727-9be2-8c3a10f19b9d", "Password Administrator", "limited", 1),
    DirectoryRole("88d8e3e3-8f55-4a1e-953a-9b9898b8876b", "Directory Readers", "limited", 0),
)
ROLES_BY_NAME: Final = {r.name: r for r in DIRECTORY_ROLES}
ROLES_BY_TEMPLATE: Final = {r.template_id: r for r in DIRECTORY_ROLES}
TIER_RANK: Final = {"none": 1, "limited": 2, "privileged": 3}
