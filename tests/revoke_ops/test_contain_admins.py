"""`contain` and administrators, end to end against the sandbox: the last Global Administrator per mode,
and admin status held through a role-assignable group.

Graph ("Update user", "Who can perform sensitive actions"): disabling a user who holds an admin role
takes, app-only, an admin role held by the app (this product grants none) and, delegated,
Directory.AccessAsUser.All with a Privileged Authentication Administrator or Global Administrator
signed in. revoke_ops/contain.py's doc has the rule this file tests path by path.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from tests.revoke_ops.conftest import DOMAIN, Ops, write_bundle
from tests.revoke_ops.test_contain import account_changes, contain_ops
from tests.sandbox.conftest import Running

GLOBAL_ADMINS = ("breakglass1", "breakglass2", "admin.global")
BASE = ("User.RevokeSessions.All", "User.Read.All", "User.EnableDisableAccount.All")


@contextmanager
def only_enabled_global_admin(sandbox: Running, keep: str) -> Iterator[Any]:
    """Disable every seeded Global Administrator but ``keep`` for the test; restore them after."""
    others = [sandbox.user(a) for a in GLOBAL_ADMINS if a != keep]
    for user in others:
        sandbox.sandbox.call(setattr, user, "account_enabled", False)
    try:
        yield sandbox.user(keep)
    finally:
        for user in [*others, sandbox.user(keep)]:
            sandbox.sandbox.call(setattr, user, "account_enabled", True)


def delegated_ops(sandbox: Running, tmp_path: Path, name: str, scopes: tuple[str, ...]) -> Ops:
    """A public client consented ``scopes``; its bundle lists those a stack can grant (Directory.AccessAsUser.All
    is consented by hand in a tenant, never by this product)."""
    creds = sandbox.app(name, scopes=scopes, public_client=True)
    listed = tuple(s for s in scopes if s != "Directory.AccessAsUser.All")
    return Ops(sandbox, creds, write_bundle(sandbox, creds, tmp_path / "b.json", app_roles=(), delegated=listed))


def run_delegated(ops: Ops, operator: str, *args: str) -> Any:
    ops.run.settings(autoApproveUser=f"{operator}@{DOMAIN}")
    try:
        return ops.cli("contain", "--delegated", *args, "--output", "json")
    finally:
        ops.run.settings(autoApproveUser=None)


def ordinary(sandbox: Running, n: int) -> Any:
    users = [u for u in sandbox.sandbox.tenant.users if u.user_principal_name.startswith("user") and not u.roles]
    return [u for u in users if u.account_enabled][n]


def test_with_role_read_the_last_enabled_global_admin_is_refused_and_the_others_proceed(
    sandbox: Running, tmp_path: Path
):
    """Delegated, Directory.AccessAsUser.All, a Privileged Authentication Administrator signed in:
    Graph would disable a Global Administrator; the run disables all but the last enabled one."""
    ops = delegated_ops(
        sandbox, tmp_path, "contain-last-ga", (*BASE, "Directory.AccessAsUser.All", "RoleManagement.Read.Directory")
    )
    plain = ordinary(sandbox, 40)
    changes, revocations = len(account_changes(sandbox)), len(sandbox.revocations())
    with only_enabled_global_admin(sandbox, "admin.global") as last:
        second = sandbox.user("breakglass2")
        sandbox.sandbox.call(setattr, second, "account_enabled", True)  # two enabled: one may go, not both
        result = run_delegated(
            ops, "admin.pauth", "--user", second.id, "--user", last.user_principal_name, "--user", plain.id,
            "--journal", str(tmp_path / "j.jsonl"),
        )  # fmt: skip
        enabled_after = {a: sandbox.user(a).account_enabled for a in ("breakglass2", "admin.global")}
    assert result.returncode == 1, result.stderr
    body = json.loads(result.stdout)
    refused = [r for r in body["notContained"] if r["step"] == "last_global_admin"]
    assert len(refused) == 1 and "last enabled Global Administrator" in refused[0]["reason"]
    assert "sessions were still revoked" in refused[0]["reason"]
    assert body["contain"]["steps"] == {"disabled": 2, "last_global_admin": 1}
    assert sorted(enabled_after.values()) == [False, True], "exactly one Global Administrator stays enabled"
    kept = next(a for a, on in enabled_after.items() if on)
    assert refused[0]["id"] == sandbox.user(kept).id
    disabled = {c["userId"] for c in account_changes(sandbox)[changes:] if c["accountEnabled"] is False}
    assert sandbox.user(kept).id not in disabled and plain.id in disabled
    assert {r["userId"] for r in sandbox.revocations()[revocations:]} == {second.id, last.id, plain.id}
    sandbox.sandbox.call(setattr, plain, "account_enabled", True)


def test_a_global_admin_through_a_role_assignable_group_counts_as_enabled_admin(sandbox: Running, tmp_path: Path):
    """A role-assignable group holding Global Administrator makes its enabled member one: with that
    member left, the only *direct* enabled Global Administrator may be disabled."""
    scopes = (*BASE, "Directory.AccessAsUser.All", "RoleManagement.Read.Directory", "GroupMember.Read.All")
    ops = delegated_ops(sandbox, tmp_path, "contain-ga-group", scopes)
    tenant = sandbox.sandbox.tenant
    member = ordinary(sandbox, 43)
    group = sandbox.sandbox.call(tenant.add_group, "role-global-admins", [member.id])
    sandbox.sandbox.call(setattr, group, "is_assignable_to_role", True)
    sandbox.sandbox.call(group.roles.append, "Global Administrator")
    try:
        with only_enabled_global_admin(sandbox, "admin.global") as direct:
            result = run_delegated(ops, "admin.pauth", "--user", direct.id, "--journal", str(tmp_path / "j.jsonl"))
            disabled = not direct.account_enabled
    finally:
        sandbox.sandbox.call(group.roles.clear)
        sandbox.sandbox.call(group.members.clear)
    assert result.returncode == 0, result.stdout + result.stderr
    assert json.loads(result.stdout)["contain"]["steps"] == {"disabled": 1}
    assert disabled, "the group's member is still an enabled Global Administrator"


def test_app_only_without_role_read_graph_refuses_the_last_global_admin(sandbox: Running, tmp_path: Path):
    """App-only: the roles cannot be read, but Graph refuses to disable any admin-role holder."""
    ops = contain_ops(sandbox, tmp_path, "contain-ga-app-only", roles=BASE)
    plain = ordinary(sandbox, 41)
    changes = len(account_changes(sandbox))
    with only_enabled_global_admin(sandbox, "admin.global") as last:
        result = ops.cli(
            "contain", "--user", last.id, "--user", plain.id, "--journal", str(tmp_path / "j.jsonl"), "--output", "json"
        )
        still_enabled = last.account_enabled
    assert result.returncode == 1, result.stderr
    assert "cannot disable any user holding an admin role" in result.stderr
    body = json.loads(result.stdout)
    (row,) = body["notContained"]
    assert row["id"] == last.id and row["step"] == "forbidden" and row["code"] == "Authorization_RequestDenied"
    assert still_enabled
    assert [c["userId"] for c in account_changes(sandbox)[changes:]] == [plain.id]
    assert body["summary"]["outcomes"]["revoked"] == 2
    sandbox.sandbox.call(setattr, plain, "account_enabled", True)


def test_delegated_without_access_as_user_graph_refuses_admins(sandbox: Running, tmp_path: Path):
    """Delegated without Directory.AccessAsUser.All: even a Global Administrator operator cannot disable one."""
    ops = delegated_ops(sandbox, tmp_path, "contain-ga-delegated", BASE)
    with only_enabled_global_admin(sandbox, "breakglass1"):
        target = sandbox.user("breakglass1")
        result = run_delegated(ops, "admin.pauth", "--user", target.id)
        still_enabled = target.account_enabled
    assert result.returncode == 1, result.stderr
    assert json.loads(result.stdout)["notContained"][0]["step"] == "forbidden"
    assert still_enabled


def test_access_as_user_without_role_read_refuses_before_changing_anything(sandbox: Running, tmp_path: Path):
    """Graph would let this operator disable admins, and the last one cannot be recognised: exit 3."""
    ops = delegated_ops(sandbox, tmp_path, "contain-ga-unknown", (*BASE, "Directory.AccessAsUser.All"))
    plain = ordinary(sandbox, 42)
    changes, revocations = len(account_changes(sandbox)), len(sandbox.revocations())
    result = run_delegated(ops, "admin.pauth", "--user", plain.id, "--user", f"admin.global@{DOMAIN}")
    assert result.returncode == 3, result.stdout + result.stderr
    assert "RoleManagement.Read.Directory" in result.stderr and "Nothing was changed" in result.stderr
    assert len(account_changes(sandbox)) == changes and len(sandbox.revocations()) == revocations
    assert plain.account_enabled


def test_a_member_of_a_role_assignable_group_is_an_admin_target(sandbox: Running, tmp_path: Path):
    """pim.groupadmin holds Privileged Authentication Administrator only through role-privileged-admins:
    app-only contain is refused for them like for a direct holder (still revoked)."""
    ops = contain_ops(sandbox, tmp_path, "contain-role-group", roles=BASE)
    member = sandbox.user("pim.groupadmin")
    assert member.roles == [], "no direct role: the group's role is what makes them an admin"
    before = len(sandbox.revocations())
    result = ops.cli("contain", "--user", member.id, "--journal", str(tmp_path / "j.jsonl"), "--output", "json")
    assert result.returncode == 1, result.stderr
    (row,) = json.loads(result.stdout)["notContained"]
    assert row["step"] == "forbidden" and "admin role" in row["reason"]
    assert member.account_enabled
    assert [r["userId"] for r in sandbox.revocations()[before:]] == [member.id]
