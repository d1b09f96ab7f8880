"""Who holds directory roles: role-assignable groups and PIM eligibility, as Graph lists them."""

from __future__ import annotations

from typing import Any

from tests.sandbox.conftest import AppCredentials, Running, bearer

GLOBAL_ADMIN = "62e90394-69f5-4237-9190-012177145e10"


def listing(run: Running, creds: AppCredentials, path: str, **params: str) -> Any:
    return run.http.get(path, params=params or None, headers=bearer(run, creds))


def test_role_assignments_expand_group_principals_of_role_assignable_groups(sandbox: Running):
    reader = sandbox.app("roles-reader", app_roles=("RoleManagement.Read.Directory",))
    tenant = sandbox.sandbox.tenant
    group = tenant.group_named("role-privileged-admins")
    rows = listing(sandbox, reader, "/roleManagement/directory/roleAssignments", **{"$expand": "principal"})
    assert rows.status_code == 200, rows.text
    by_principal = {r["principalId"]: r for r in rows.json()["value"]}
    row = by_principal[group.id]
    assert row["principal"]["@odata.type"] == "#microsoft.graph.group"
    assert row["principal"]["isAssignableToRole"] is True
    assert by_principal[sandbox.user("admin.global").id]["principal"]["@odata.type"] == "#microsoft.graph.user"
    assert sandbox.user("pim.groupadmin").id not in by_principal, "members hold the role through the group"
    plain = listing(sandbox, reader, "/roleManagement/directory/roleAssignments").json()["value"]
    assert all("principal" not in r for r in plain), "principal only with $expand"


def test_eligibility_instances_need_p2_and_a_permission(sandbox: Running):
    reader = sandbox.app("eligibility-reader", app_roles=("RoleManagement.Read.Directory",))
    path = "/roleManagement/directory/roleEligibilityScheduleInstances"
    rows = listing(sandbox, reader, path, **{"$expand": "principal"})
    assert rows.status_code == 200, rows.text
    eligible = {(r["principalId"], r["roleDefinitionId"]) for r in rows.json()["value"]}
    assert (sandbox.user("pim.eligible").id, GLOBAL_ADMIN) in eligible
    assert all(r["principal"]["id"] == r["principalId"] for r in rows.json()["value"])
    no_permission = sandbox.app("eligibility-no-permission", app_roles=("User.Read.All",))
    denied = listing(sandbox, no_permission, path)
    assert denied.status_code == 403 and denied.json()["error"]["code"] == "Authorization_RequestDenied"
    sandbox.settings(p2Licence=False)
    try:
        unlicensed = listing(sandbox, reader, path)
    finally:
        sandbox.settings(p2Licence=True)
    assert unlicensed.status_code == 403
    assert unlicensed.json()["error"]["code"] == "AadPremiumLicenseRequired"
