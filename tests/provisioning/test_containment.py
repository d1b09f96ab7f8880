"""containmentPermissions under Pulumi's mock runtime (preview=False): what the program really declares.

Issue 14: with ``containmentPermissions: [User.EnableDisableAccount.All]`` the app is consented
exactly User.EnableDisableAccount.All and User.Read.All (Graph's least-privileged pair for
``accountEnabled``; User.Read.All once, whatever readPermissions says), as app-role assignments
and/or delegated grant scopes with admin consent, and lists them in requiredResourceAccess; without
the key, nothing of it exists. Ids are the shared facts' (revoke_ops/facts.py), which the mock
Graph service principal serves as the real one does.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from provisioning.mocks import MemoryDirectory
from revoke_ops.facts import DISABLE_PERMISSION, GRAPH_APP_ID, READ_PERMISSIONS, REVOKE_PERMISSION
from tests.provisioning.conftest import Run

pytestmark = pytest.mark.slow

Program = Callable[..., Run]
GRAPH_SP = MemoryDirectory().graph_sp_id
USER_READ = READ_PERMISSIONS["User.Read.All"]
ROLES = [str(p.role_id) for p in (REVOKE_PERMISSION, USER_READ, DISABLE_PERMISSION)]
SCOPES = [str(p.scope_id) for p in (REVOKE_PERMISSION, USER_READ, DISABLE_PERMISSION)]
CONTAIN = {"containmentPermissions": ["User.EnableDisableAccount.All"]}


def ok(run: Run) -> Run:
    assert run.returncode == 0, run.stderr
    return run


def resource_access(run: Run) -> list[tuple[str, str]]:
    (rra,) = run.one("application:Application")["inputs"]["requiredResourceAccesses"]
    assert rra["resourceAppId"] == GRAPH_APP_ID
    return [(a["id"], a["type"]) for a in rra["resourceAccesses"]]


def app_roles(run: Run) -> list[str]:
    """The Graph app roles consented to the app's own service principal (one assignment each)."""
    sp = run.one("servicePrincipal:ServicePrincipal")["outputs"]["objectId"]
    found: list[dict[str, Any]] = run.of_type("appRoleAssignment:AppRoleAssignment")
    return [
        r["inputs"]["appRoleId"]
        for r in found
        if r["inputs"]["principalObjectId"] == sp and r["inputs"]["resourceObjectId"] == GRAPH_SP
    ]


def grant_scopes(run: Run) -> list[str]:
    grant = run.one("servicePrincipalDelegatedPermissionGrant")["inputs"]
    assert grant["resourceServicePrincipalObjectId"] == GRAPH_SP
    assert "userObjectId" not in grant, "admin consent for all principals"
    return list(grant["claimValues"])


@pytest.mark.parametrize("read", [[], ["User.Read.All"]], ids=["no-read-permissions", "user-read-already"])
def test_application_mode_consents_the_disable_role_and_user_read_once(program: Program, read: list[str]):
    run = ok(program({"permissionMode": "application", "readPermissions": read, **CONTAIN}))
    roles = app_roles(run)
    assert sorted(roles) == sorted(ROLES)
    assert len(roles) == len(set(roles)) == 3, "each app role consented once"
    assert sorted(resource_access(run)) == sorted((i, "Role") for i in ROLES)
    assert run.of_type("servicePrincipalDelegatedPermissionGrant") == []
    assert run.outputs["applicationPermissions"].count("User.Read.All") == 1
    assert "User.EnableDisableAccount.All" in run.outputs["applicationPermissions"]


@pytest.mark.parametrize("read", [[], ["User.Read.All"]], ids=["no-read-permissions", "user-read-already"])
def test_delegated_mode_grants_the_disable_scope_and_user_read_once(program: Program, read: list[str]):
    run = ok(program({"permissionMode": "delegated", "readPermissions": read, **CONTAIN}))
    scopes = grant_scopes(run)
    assert sorted(scopes) == sorted(["User.RevokeSessions.All", "User.Read.All", "User.EnableDisableAccount.All"])
    assert len(scopes) == len(set(scopes))
    assert sorted(resource_access(run)) == sorted((i, "Scope") for i in SCOPES)
    assert run.of_type("appRoleAssignment:AppRoleAssignment") == []
    assert run.outputs["delegatedPermissions"].count("User.Read.All") == 1


def test_both_modes_consent_it_as_role_and_scope(program: Program):
    run = ok(program({"permissionMode": "both", "readPermissions": ["User.Read.All"], **CONTAIN}))
    assert sorted(app_roles(run)) == sorted(ROLES)
    assert grant_scopes(run).count("User.EnableDisableAccount.All") == 1
    assert grant_scopes(run).count("User.Read.All") == 1
    access = resource_access(run)
    assert len(access) == len(set(access)) == 6
    assert (DISABLE_PERMISSION.role_id, "Role") in access and (DISABLE_PERMISSION.scope_id, "Scope") in access


@pytest.mark.parametrize("mode", ["application", "delegated", "both"])
def test_without_the_key_nothing_of_it_exists(program: Program, mode: str):
    run = ok(program({"permissionMode": mode, "readPermissions": []}))
    ids = {DISABLE_PERMISSION.role_id, DISABLE_PERMISSION.scope_id, USER_READ.role_id, USER_READ.scope_id}
    assert not ids & {i for i, _ in resource_access(run)}
    assert not ids & set(app_roles(run))
    grants = run.of_type("servicePrincipalDelegatedPermissionGrant")
    assert all(g["inputs"]["claimValues"] == ["User.RevokeSessions.All"] for g in grants)
    for key in ("applicationPermissions", "delegatedPermissions"):
        assert run.outputs[key] in ([], ["User.RevokeSessions.All"])
