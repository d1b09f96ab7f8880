"""Privileged users go first end to end: role-assignable groups' members and PIM-eligible users too."""

from __future__ import annotations

from typing import Any

from tests.revoke_ops.conftest import Ops


def incident_group(ops: Ops, name: str, first: int) -> tuple[Any, list[Any], list[Any]]:
    """A group listing ten ordinary members before one role-group member and one PIM-eligible user."""
    tenant = ops.run.sandbox.tenant
    ordinary = [
        u
        for u in tenant.users[first : first + 40]
        if u.user_type == "Member" and not u.roles and "#EXT#" not in u.user_principal_name and u.account_enabled
    ][:10]
    privileged = [ops.user("pim.groupadmin"), ops.user("pim.eligible")]
    group = ops.run.sandbox.call(tenant.add_group, name, [u.id for u in ordinary + privileged])
    return group, ordinary, privileged


def test_role_group_members_and_pim_eligible_users_are_revoked_first(ops: Ops):
    group, ordinary, privileged = incident_group(ops, "incident-pim", 360)
    before = len(ops.run.revocations())
    result = ops.cli("revoke", "--group", group.id, "--yes", "--concurrency", "1")
    assert result.returncode == 0, result.stderr
    revoked = ops.revoked_ids(before)
    assert set(revoked) == {u.id for u in ordinary + privileged}
    assert len(revoked) == len(ordinary) + 2, "nobody is revoked twice"
    assert set(revoked[:2]) == {u.id for u in privileged}, "listed last, revoked first"
    assert "PIM-eligible role assignments were not checked" not in result.stderr


def test_without_p2_eligible_users_go_in_listing_order_and_the_operator_is_told(ops: Ops):
    group, ordinary, privileged = incident_group(ops, "incident-no-p2", 420)
    ops.run.settings(p2Licence=False)
    try:
        before = len(ops.run.revocations())
        result = ops.cli("revoke", "--group", group.id, "--yes", "--concurrency", "1")
    finally:
        ops.run.settings(p2Licence=True)
    assert result.returncode == 0, result.stderr
    revoked = ops.revoked_ids(before)
    assert set(revoked) == {u.id for u in ordinary + privileged}
    assert revoked[0] == ops.user("pim.groupadmin").id, "the role group still counts without P2"
    assert revoked[-1] == ops.user("pim.eligible").id, "eligibility could not be read: listing order"
    assert "PIM-eligible role assignments were not checked" in result.stderr
