"""The seeded tenant: its named accounts, and the same tenant for the same seed.

Tests and the benchmarks depend on the seeded shapes and counts, and on the ids a seed gives (a
state directory's bundles name them), so the fingerprint below pins one seeded tenant exactly: a
change to seeding that moves an id, a name, a department or a membership must be meant.
"""

from __future__ import annotations

import hashlib
import json

from sandbox.seed import HYBRID, NAMED, PRIVILEGED, seed
from sandbox.tenant import BREAK_GLASS, Tenant

#: sha256 of _fingerprint(seed(Tenant("t", seed=7), users=400, groups=6, group_size=60, bulk_group=100))
PINNED = "725e947375e25fdc85a934435f02faf93c196a18d62e6b52dbe9cb1a780ba198"


def _fingerprint(tenant: Tenant) -> str:
    users = [
        (
            u.id,
            u.user_principal_name,
            u.display_name,
            u.mail,
            u.user_type,
            u.external_user_state,
            u.account_enabled,
            u.department,
            u.roles,
            u.eligible_roles,
            u.on_premises_sync_enabled,
            u.last_sign_in is None,
        )
        for u in tenant.users
    ]
    groups = [(g.id, g.display_name, g.members, g.is_assignable_to_role, g.roles) for g in tenant.groups.values()]
    text = json.dumps([users, groups, tenant.role_object_ids, tenant.new_id()], sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()


def test_the_same_seed_gives_the_same_tenant_as_before():
    tenant = seed(Tenant("t", seed=7), users=400, groups=6, group_size=60, bulk_group=100)
    assert _fingerprint(tenant) == PINNED, "seeding changed the seeded tenant (ids, names, memberships)"


def test_every_named_account_is_seeded_with_its_roles():
    tenant = seed(Tenant("t"), users=100, groups=3, group_size=20)
    for account in (*NAMED, *PRIVILEGED, *HYBRID):
        user = tenant.user(account.upn or f"{account.alias}@contoso-sandbox.onmicrosoft.com")
        assert user is not None, account.alias
        assert (user.roles, user.eligible_roles) == (list(account.roles), list(account.eligible_roles))
        assert user.on_premises_sync_enabled is account.synced
    assert {a.alias for a in NAMED} >= set(BREAK_GLASS)
    group = tenant.group_named("role-privileged-admins")
    assert group.is_assignable_to_role and group.roles == ["Privileged Authentication Administrator"]
    assert [tenant.users_by_id[m].user_principal_name.split("@")[0] for m in group.members] == ["pim.groupadmin"]
    assert len(tenant.users) == 100 + len(PRIVILEGED) + len(HYBRID)
