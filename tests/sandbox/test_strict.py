"""The sandbox refuses what Microsoft Graph and Entra refuse (strict by default).

Each test here pins one row of docs/sandbox-conformance.md and fails if the sandbox were lenient.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

import pytest
from azure.core.exceptions import ClientAuthenticationError

from sandbox.tenant import AppRoleAssignment
from tests.sandbox.conftest import DOMAIN, AppCredentials, Running, bearer
from tests.sandbox.test_graph import FULL, WRITE_ITEM, batch
from tests.sandbox.test_identity import device_code_token

DEPLOYER = ("Application.ReadWrite.All", "AppRoleAssignment.ReadWrite.All", "DelegatedPermissionGrant.ReadWrite.All")


@pytest.fixture(scope="module")
def full(sandbox: Running) -> AppCredentials:
    return sandbox.app("strict-full", app_roles=FULL)


def guest_user(sandbox: Running) -> Any:
    return sandbox.sandbox.tenant.user(f"gail_fabrikam.com#EXT#@{DOMAIN}")


def revoke_item(item_id: str, user_id: str, **extra: Any) -> dict[str, Any]:
    return {"id": item_id, "method": "POST", "url": f"/users/{user_id}/revokeSignInSessions", **extra}


def error_of(response: Any) -> tuple[int, str, str]:
    error = response.json()["error"]
    return response.status_code, error["code"], error["message"]


# -- $batch -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "shape",
    [{}, {"body": {}}, {"headers": {"Content-Type": "application/json"}}],
    ids=["neither", "body-only", "content-type-only"],
)
def test_batch_write_item_without_body_or_content_type_fails_the_whole_batch(
    sandbox: Running, full: AppCredentials, shape: dict[str, Any]
):
    users = sandbox.sandbox.tenant.users[400:402]
    before = len(sandbox.revocations())
    response = batch(
        sandbox, full, [revoke_item("1", users[0].id, **WRITE_ITEM), revoke_item("2", users[1].id, **shape)]
    )
    assert error_of(response) == (
        400,
        "BadRequest",
        "Write request id : 2 does not contain Content-Type header or body.",
    )
    assert len(sandbox.revocations()) == before, "Graph validates the batch before running any item"


def test_batch_refuses_absolute_urls_more_than_20_items_and_duplicate_ids(sandbox: Running, full: AppCredentials):
    user = sandbox.sandbox.tenant.users[403]
    absolute = batch(
        sandbox, full, [{"id": "1", "method": "GET", "url": f"{sandbox.info['graphEndpoint']}/users/{user.id}"}]
    )
    assert absolute.status_code == 400 and "relative" in absolute.json()["error"]["message"]
    many = batch(sandbox, full, [{"id": str(i), "method": "GET", "url": f"/users/{user.id}"} for i in range(21)])
    assert error_of(many)[:2] == (400, "BadRequest") and "20" in error_of(many)[2]
    twice = batch(sandbox, full, [{"id": "7", "method": "GET", "url": f"/users/{user.id}"}] * 2)
    assert error_of(twice)[:2] == (400, "BadRequest") and "'7'" in error_of(twice)[2]
    assert batch(sandbox, full, [{"id": "1", "method": "GET", "url": f"/users/{user.id}"}]).status_code == 200


def test_batch_item_url_loses_everything_after_an_unencoded_hash(sandbox: Running, full: AppCredentials):
    guest = guest_user(sandbox)
    raw, encoded = guest.user_principal_name, quote(guest.user_principal_name, safe="@")
    response = batch(
        sandbox,
        full,
        [
            {"id": "1", "method": "GET", "url": f"/users/{raw}"},
            {"id": "2", "method": "GET", "url": f"/users/{encoded}"},
        ],
    )
    by_id = {r["id"]: r for r in response.json()["responses"]}
    assert by_id["1"]["status"] == 404  # asked for "gail_fabrikam.com": the rest was a fragment
    assert by_id["2"]["status"] == 200 and by_id["2"]["body"]["id"] == guest.id


# -- paths ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def dollar_user(sandbox: Running) -> Any:
    tenant = sandbox.sandbox.tenant
    return sandbox.sandbox.call(tenant.add_user, "svc", "Dollar Service", upn=f"$svc@{DOMAIN}")


def test_path_segments_are_percent_decoded_one_by_one(sandbox: Running, full: AppCredentials):
    guest = guest_user(sandbox)
    response = sandbox.http.get(f"/users/{quote(guest.user_principal_name, safe='@')}", headers=bearer(sandbox, full))
    assert response.status_code == 200 and response.json()["id"] == guest.id
    # "%2F" stays inside its segment: a key that does not exist, not a longer path.
    slash = sandbox.http.get(f"/users/{guest.id}%2FrevokeSignInSessions", headers=bearer(sandbox, full))
    assert error_of(slash)[:2] == (404, "Request_ResourceNotFound")


def test_upn_starting_with_dollar_needs_the_parenthesised_form(
    sandbox: Running, full: AppCredentials, dollar_user: Any
):
    headers = bearer(sandbox, full)
    refused = sandbox.http.post(
        f"/users/{quote(dollar_user.user_principal_name, safe='@$')}/revokeSignInSessions", headers=headers
    )
    assert refused.status_code == 400
    before = len(sandbox.revocations())
    accepted = sandbox.http.post(
        f"/users('{quote(dollar_user.user_principal_name, safe='@$')}')/revokeSignInSessions", headers=headers
    )
    assert accepted.status_code == 200, accepted.text
    assert [r["userId"] for r in sandbox.revocations()[before:]] == [dollar_user.id]
    in_batch = batch(
        sandbox,
        full,
        [
            {
                "id": "1",
                "method": "POST",
                "url": f"/users/{dollar_user.user_principal_name}/revokeSignInSessions",
                **WRITE_ITEM,
            }
        ],
    )
    assert in_batch.json()["responses"][0]["status"] == 400


def test_apostrophe_upn_in_the_parenthesised_form_is_doubled(sandbox: Running, full: AppCredentials):
    tenant = sandbox.sandbox.tenant
    user = sandbox.sandbox.call(tenant.add_user, "obrien", "Pat O'Brien", upn=f"o'brien@{DOMAIN}")
    response = sandbox.http.get(f"/users('o''brien@{DOMAIN}')", headers=bearer(sandbox, full))
    assert response.status_code == 200 and response.json()["id"] == user.id


# -- advanced queries -------------------------------------------------------------------------

EVENTUAL = {"ConsistencyLevel": "eventual"}


@pytest.mark.parametrize(
    ("flt", "check"),
    [
        (
            "endswith(userPrincipalName,'.global@contoso-sandbox.onmicrosoft.com')",
            lambda u: u.user_principal_name.startswith("admin.global@"),
        ),
        ("userType ne 'Member'", lambda u: u.user_type != "Member"),
        ("not(startswith(userPrincipalName,'user'))", lambda u: not u.user_principal_name.startswith("user")),
        # the advanced-queries page's table of user properties: "null values" are advanced only
        ("department eq null", lambda u: u.department is None),
        # ... and companyName is filterable only in advanced queries, whatever the operator
        ("companyName eq 'Northwind Traders'", lambda u: u.company_name == "Northwind Traders"),
    ],
    ids=["endswith", "ne", "not", "eq-null", "advanced-only-property"],
)
def test_advanced_filters_need_consistency_level_and_count(
    sandbox: Running, full: AppCredentials, flt: str, check: Any
):
    headers = bearer(sandbox, full)
    params = {"$filter": flt, "$select": "id", "$top": "999"}
    bare = sandbox.http.get("/users", params=params, headers=headers)
    assert error_of(bare)[:2] == (400, "Request_UnsupportedQuery")
    assert "ConsistencyLevel:eventual" in error_of(bare)[2]
    header_only = sandbox.http.get("/users", params=params, headers={**headers, **EVENTUAL})
    assert error_of(header_only)[:2] == (400, "Request_UnsupportedQuery") and "$count=true" in error_of(header_only)[2]
    both = sandbox.http.get("/users", params={**params, "$count": "true"}, headers={**headers, **EVENTUAL})
    assert both.status_code == 200, both.text
    expected = [u.id for u in sandbox.sandbox.tenant.users if check(u)]
    assert [u["id"] for u in both.json()["value"]] == expected[:999]
    assert both.json()["@odata.count"] == len(expected)


def test_a_cast_on_transitive_members_is_an_advanced_query(sandbox: Running, full: AppCredentials):
    group = sandbox.sandbox.tenant.group_named("compromised-sales")
    url = f"/groups/{group.id}/transitiveMembers/microsoft.graph.user"
    headers = bearer(sandbox, full)
    assert error_of(sandbox.http.get(url, headers=headers))[:2] == (400, "Request_UnsupportedQuery")
    response = sandbox.http.get(url, params={"$count": "true", "$top": "999"}, headers={**headers, **EVENTUAL})
    assert response.status_code == 200
    users = [m for m in sandbox.sandbox.tenant.transitive_members(group.id) if m in sandbox.sandbox.tenant.users_by_id]
    assert [m["id"] for m in response.json()["value"]] == users
    assert response.json()["@odata.count"] == len(users)
    # Without the cast nothing is advanced: the plain listing needs no headers.
    assert sandbox.http.get(f"/groups/{group.id}/transitiveMembers", headers=headers).status_code == 200


def test_search_needs_consistency_level(sandbox: Running, full: AppCredentials):
    headers = bearer(sandbox, full)
    params = {"$search": '"displayName:Break Glass"', "$select": "id"}
    assert error_of(sandbox.http.get("/users", params=params, headers=headers))[:2] == (400, "Request_UnsupportedQuery")
    found = sandbox.http.get("/users", params=params, headers={**headers, **EVENTUAL}).json()["value"]
    assert {u["id"] for u in found} == {sandbox.user("breakglass1").id, sandbox.user("breakglass2").id}


def test_advanced_queries_lag_behind_changes_when_asked_to(sandbox: Running, full: AppCredentials):
    tenant = sandbox.sandbox.tenant
    group = tenant.group_named("sales-emea")
    sandbox.settings(advancedQueryLag=3600)
    try:
        newcomer = sandbox.sandbox.call(
            lambda: tenant.add_user("late", "Late Arrival", created=sandbox.sandbox.clock.now())
        )
        sandbox.sandbox.call(tenant.add_member, group.id, newcomer.id, sandbox.sandbox.clock.now())
        headers = bearer(sandbox, full)
        flt = {"$filter": "startswith(userPrincipalName,'late@')", "$select": "id"}
        assert [u["id"] for u in sandbox.http.get("/users", params=flt, headers=headers).json()["value"]] == [
            newcomer.id
        ]
        eventual = sandbox.http.get("/users", params={**flt, "$count": "true"}, headers={**headers, **EVENTUAL})
        assert eventual.json()["value"] == [] and eventual.json()["@odata.count"] == 0
        plain = sandbox.http.get(f"/groups/{group.id}/transitiveMembers", params={"$top": "999"}, headers=headers)
        assert newcomer.id in [m["id"] for m in plain.json()["value"]]
        cast = sandbox.http.get(
            f"/groups/{group.id}/transitiveMembers/microsoft.graph.user",
            params={"$top": "999", "$count": "true"},
            headers={**headers, **EVENTUAL},
        )
        assert newcomer.id not in [m["id"] for m in cast.json()["value"]]
    finally:
        sandbox.settings(advancedQueryLag=0)


# -- consent ----------------------------------------------------------------------------------


def test_duplicate_grant_is_409_and_duplicate_app_role_assignment_is_400(sandbox: Running):
    deployer = sandbox.app("strict-deployer", app_roles=DEPLOYER)
    client = sandbox.app("strict-client")
    tenant = sandbox.sandbox.tenant
    client_sp = tenant.sp_for_app(client.client_id)
    graph_sp = tenant.sp_for_app("00000003-0000-0000-c000-000000000000")
    headers = bearer(sandbox, deployer)
    grant = {
        "clientId": client_sp.id,
        "resourceId": graph_sp.id,
        "consentType": "AllPrincipals",
        "scope": "User.Read.All",
    }
    assert sandbox.http.post("/oauth2PermissionGrants", json=grant, headers=headers).status_code == 201
    again = sandbox.http.post(
        "/oauth2PermissionGrants", json={**grant, "scope": "User.RevokeSessions.All"}, headers=headers
    )
    assert error_of(again)[0] == 409 and error_of(again)[2] == "Permission entry already exists."
    role = next(r["id"] for r in graph_sp.app_roles if r["value"] == "User.RevokeSessions.All")
    assignment = {"principalId": client_sp.id, "resourceId": graph_sp.id, "appRoleId": role}
    url = f"/servicePrincipals/{graph_sp.id}/appRoleAssignedTo"
    assert sandbox.http.post(url, json=assignment, headers=headers).status_code == 201
    assert error_of(sandbox.http.post(url, json=assignment, headers=headers)) == (
        400,
        "Request_BadRequest",
        "Permission being assigned already exists on the object.",
    )


# -- app assignment ---------------------------------------------------------------------------


def test_app_assignment_through_a_group_admits_direct_members_only_and_needs_p1(sandbox: Running):
    creds = sandbox.app(
        "strict-gated", scopes=("User.RevokeSessions.All",), public_client=True, assignment_required=True
    )
    tenant = sandbox.sandbox.tenant
    outer = tenant.group_named("compromised-sales")
    nested = tenant.group_named("sales-emea")
    direct = next(tenant.users_by_id[m] for m in outer.members if m in tenant.users_by_id and m not in nested.members)
    indirect = tenant.users_by_id[nested.members[0]]
    assert indirect.id not in outer.members
    sp = tenant.sp_for_app(creds.client_id)

    def assign() -> None:
        tenant.assignments["strict-group"] = AppRoleAssignment(
            "strict-group", outer.id, "Group", sp.id, "00000000-0000-0000-0000-000000000000", 0
        )

    sandbox.sandbox.call(assign)
    assert device_code_token(sandbox, creds.client_id, direct.user_principal_name)
    with pytest.raises(ClientAuthenticationError, match="AADSTS50105"):
        device_code_token(sandbox, creds.client_id, indirect.user_principal_name)
    sandbox.settings(p1Licence=False)
    try:
        with pytest.raises(ClientAuthenticationError, match="AADSTS50105"):
            device_code_token(sandbox, creds.client_id, direct.user_principal_name)
    finally:
        sandbox.settings(p1Licence=True)


# -- throttling costs -------------------------------------------------------------------------


def test_resource_unit_costs_follow_the_published_table(sandbox: Running, full: AppCredentials):
    headers = bearer(sandbox, full)
    group = sandbox.sandbox.tenant.group_named("compromised-sales")

    def units(path: str, params: dict[str, str] | None = None, extra: dict[str, str] | None = None) -> int:
        response = sandbox.http.get(path, params=params, headers={**headers, **(extra or {})})
        assert response.status_code == 200, response.text
        return int(response.headers["x-ms-resource-unit"])

    assert units("/users") == 2
    assert units("/users", {"$select": "id"}) == 1
    assert units("/users", {"$top": "5"}) == 1
    assert units(f"/users/{sandbox.user('operator').id}") == 1
    assert units(f"/groups/{group.id}/members") == 3
    assert units(f"/groups/{group.id}/transitiveMembers") == 5
    assert units(f"/groups/{group.id}/transitiveMembers", {"$select": "id", "$top": "10"}) == 3
    assert units("/roleManagement/directory/roleAssignments", {"$expand": "principal"}) == 2
    revoke = sandbox.http.post(f"/users/{sandbox.sandbox.tenant.users[404].id}/revokeSignInSessions", headers=headers)
    assert revoke.headers["x-ms-resource-unit"] == "1"
