"""Seeding an emulated tenant: its named accounts, ordinary users, groups and sign-in activity.

Every seeded user is described by an :class:`Account` and made by :func:`make` (one way to make a
user). The tenant's random stream decides every id and choice, so the same seed gives the same
tenant: the calls here keep the order in which they draw from it (tests and the benchmarks rely on
the seeded shapes and counts).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from sandbox.tenant import BREAK_GLASS, DOMAIN, Tenant, User

DEPARTMENTS = ("Sales", "Engineering", "Finance", "Support", "Marketing", "Legal", "Operations")
GIVEN = ("Ada", "Ben", "Chloe", "Dev", "Eva", "Femi", "Gus", "Hana", "Ivo", "Jun", "Kai", "Lena", "Mo", "Nia", "Omar")
FAMILY = ("Ito", "Kowalski", "Nguyen", "Okafor", "Petrov", "Quinn", "Rossi", "Silva", "Tanaka", "Urban", "Varga")
#: Users synchronised from on-premises AD (seeded last; members of no group).
HYBRID_USERS: Final = ("hybrid.synced1", "hybrid.synced2")


@dataclass(frozen=True, slots=True)
class Account:
    """One seeded user: what :func:`make` needs to create it."""

    alias: str
    display_name: str
    roles: tuple[str, ...] = ()
    department: str | None = None
    user_type: str = "Member"
    external_state: str | None = None
    upn: str | None = None  # None: alias@DOMAIN
    enabled: bool = True
    synced: bool = False  # onPremisesSyncEnabled: Graph refuses cloud writes of accountEnabled
    eligible_roles: tuple[str, ...] = ()  # PIM-eligible directory roles (no active assignment)


def make(tenant: Tenant, account: Account) -> User:
    """Add the user ``account`` describes to ``tenant`` (draws one id from the tenant's stream)."""
    user = tenant.add_user(
        account.alias,
        account.display_name,
        user_type=account.user_type,
        external_state=account.external_state,
        upn=account.upn,
        department=account.department,
        roles=account.roles,
        enabled=account.enabled,
    )
    user.on_premises_sync_enabled = account.synced
    user.eligible_roles.extend(account.eligible_roles)
    return user


def _guest(alias: str, display_name: str, home: str, user_type: str = "Guest", state: str = "Accepted") -> Account:
    """A B2B account: its UPN is ``<user>_<home domain>#EXT#@<tenant domain>``."""
    return Account(alias, display_name, user_type=user_type, external_state=state, upn=f"{home}#EXT#@{DOMAIN}")


#: The named accounts, in the order they are made: two break-glass Global Administrators, one admin
#: per emulated directory role, an operator without roles, a guest and a B2B member.
NAMED: Final = (
    *(Account(alias, f"Break Glass {alias[-1]}", roles=("Global Administrator",)) for alias in BREAK_GLASS),
    *(
        Account(alias, f"{role} (sandbox)", roles=(role,), department="IT")
        for alias, role in (
            ("admin.global", "Global Administrator"),
            ("admin.pauth", "Privileged Authentication Administrator"),
            ("admin.privrole", "Privileged Role Administrator"),
            ("admin.security", "Security Administrator"),
            ("admin.users", "User Administrator"),
            ("admin.helpdesk", "Helpdesk Administrator"),
            ("admin.password", "Password Administrator"),
            ("admin.readers", "Directory Readers"),
        )
    ),
    Account("operator", "Ops Without Role", department="IT"),
    _guest("guest", "Gail Guest", "gail_fabrikam.com"),
    _guest("b2bmember", "Bo Member (B2B)", "bo_woodgrove.com", user_type="Member"),
)
#: Privilege that is not an active direct assignment: a member of ``role-privileged-admins`` and a
#: PIM-eligible Global Administrator.
PRIVILEGED: Final = (
    Account("pim.groupadmin", "Role Group Member (sandbox)", department="IT"),
    Account(
        "pim.eligible", "Eligible Global Admin (sandbox)", department="IT", eligible_roles=("Global Administrator",)
    ),
)
HYBRID: Final = tuple(
    Account(alias, f"Synced User {n} (sandbox)", department="Sales", synced=True)
    for n, alias in enumerate(HYBRID_USERS, 1)
)


def _ordinary(tenant: Tenant, i: int) -> Account:
    """The ``i``-th ordinary account: about 2 % guests, the rest members in a department (3 % disabled)."""
    rng = tenant.rng
    name = f"{rng.choice(GIVEN)} {rng.choice(FAMILY)}"
    if rng.random() < 0.02:
        state = "Accepted" if rng.random() < 0.8 else "PendingAcceptance"
        return _guest(f"ext{i:06d}", name, f"ext{i:06d}_partner.example", state=state)
    department = rng.choice(DEPARTMENTS)
    return Account(f"user{i:06d}", name, department=department, enabled=rng.random() > 0.03)


def seed(tenant: Tenant, users: int = 2000, groups: int = 20, group_size: int = 300, bulk_group: int = 0) -> Tenant:
    """Populate a tenant deterministically (the tenant's seed decides every id and choice).

    The :data:`NAMED` accounts, ordinary users up to ``users``, and ``compromised-sales``: a group
    of about ``group_size`` members that nests ``sales-emea`` and includes a break-glass account, an
    external user and a privileged admin; ``bulk_group``: also ``incident-bulk`` with that many
    transitive members; ``team-NNN`` groups up to ``groups``; then sign-in activity, the
    :data:`PRIVILEGED` accounts and the :data:`HYBRID` (synced) ones.
    """
    rng = tenant.rng
    named = {account.alias: make(tenant, account) for account in NAMED}
    ordinary: list[User] = []
    for i in range(max(0, users - len(tenant.users))):
        account = _ordinary(tenant, i)
        user = make(tenant, account)
        if account.user_type == "Member":
            ordinary.append(user)
    sales = [u for u in ordinary if u.department == "Sales"]
    emea_size = min(len(sales) // 3, group_size // 3)
    emea = tenant.add_group("sales-emea", [u.id for u in sales[:emea_size]])
    direct = [u.id for u in sales[emea_size : emea_size + max(0, group_size - emea_size - 4)]]
    direct += [named["breakglass1"].id, named["guest"].id, named["admin.security"].id, emea.id]
    tenant.add_group("compromised-sales", direct)
    if bulk_group:
        # A large group for scale runs (time to first revocation over 100,000 transitive members):
        # half direct members, half in nested groups two levels deep, as real incident groups are.
        ids = [u.id for u in ordinary[:bulk_group]]
        half = len(ids) // 2
        parts = [ids[half + n :: 10] for n in range(10)]
        inner = [tenant.add_group(f"incident-bulk-part-{n:02d}", part) for n, part in enumerate(parts[:5])]
        outer = [
            tenant.add_group(f"incident-bulk-part-{n + 5:02d}", [*part, inner[n].id])
            for n, part in enumerate(parts[5:])
        ]
        tenant.add_group("incident-bulk", ids[:half] + [g.id for g in outer])
    for g in range(groups - 2):
        members = [u.id for u in rng.sample(ordinary, min(len(ordinary), rng.randint(5, 60)))]
        tenant.add_group(f"team-{g:03d}", members)
    from sandbox.activity import seed_activity  # sandbox.activity builds on sandbox.tenant

    seed_activity(tenant)
    seed_privileged(tenant)
    seed_hybrid(tenant)
    return tenant


def seed_hybrid(tenant: Tenant) -> None:
    """Users with ``onPremisesSyncEnabled``: Graph refuses to update their accountEnabled."""
    for account in HYBRID:
        make(tenant, account)


def seed_privileged(tenant: Tenant) -> None:
    """Privilege that is not an active direct assignment (seeded last: the rest of the tenant is unchanged).

    ``role-privileged-admins``, a role-assignable group holding Privileged Authentication
    Administrator, with one member (``pim.groupadmin``); ``pim.eligible``, PIM-eligible for Global
    Administrator (no active role).
    """
    member, _eligible = (make(tenant, account) for account in PRIVILEGED)
    group = tenant.add_group("role-privileged-admins", [member.id])
    group.is_assignable_to_role = True
    group.roles.append("Privileged Authentication Administrator")
