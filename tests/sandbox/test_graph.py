"""The Graph slice, driven by msgraph-sdk (responses must deserialize into its models)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from kiota_abstractions.base_request_configuration import RequestConfiguration
from msgraph.generated.models.o_data_errors.o_data_error import ODataError
from msgraph.generated.users.users_request_builder import UsersRequestBuilder

from tests.sandbox.conftest import AppCredentials, Running, app_credential, bearer, graph_client
from tests.sandbox.test_identity import device_code_token

FULL = ("User.RevokeSessions.All", "User.Read.All", "GroupMember.Read.All", "RoleManagement.Read.Directory")


def with_client(run: Running, creds: AppCredentials, action: Callable[[Any], Awaitable[Any]]) -> Any:
    async def go() -> Any:
        credential = app_credential(run, creds)
        async with credential:
            return await action(graph_client(run, credential))

    return asyncio.run(go())


@pytest.fixture(scope="module")
def full(sandbox: Running) -> AppCredentials:
    return sandbox.app("graph-full", app_roles=FULL)


def odata_error(run: Running, creds: AppCredentials, action: Callable[[Any], Awaitable[Any]]) -> ODataError:
    with pytest.raises(ODataError) as info:
        with_client(run, creds, action)
    return info.value


def test_revoke_by_id_and_upn_updates_the_user_and_the_record(sandbox: Running, full: AppCredentials):
    target = sandbox.user("user000010") or sandbox.sandbox.tenant.users[40]
    before = len(sandbox.revocations())
    result = with_client(sandbox, full, lambda c: c.users.by_user_id(target.id).revoke_sign_in_sessions.post())
    assert result.value is True
    result = with_client(
        sandbox, full, lambda c: c.users.by_user_id(target.user_principal_name).revoke_sign_in_sessions.post()
    )
    assert result.value is True
    records = sandbox.revocations()[before:]
    assert [r["userId"] for r in records] == [target.id, target.id]
    assert records[0]["byApp"] == full.client_id and records[0]["byUser"] is None

    async def read(c: Any) -> tuple[Any, Any]:
        plain = await c.users.by_user_id(target.id).get()
        config = RequestConfiguration(
            query_parameters=UsersRequestBuilder.UsersRequestBuilderGetQueryParameters(
                select=["id", "signInSessionsValidFromDateTime"]
            )
        )
        selected = await c.users.by_user_id(target.id).get(request_configuration=config)
        return plain, selected

    plain, selected = with_client(sandbox, full, read)
    assert plain.sign_in_sessions_valid_from_date_time is None, "only returned with $select"
    assert selected.sign_in_sessions_valid_from_date_time.isoformat().startswith(records[-1]["at"][:19])


def test_unknown_user_is_404_request_resource_not_found(sandbox: Running, full: AppCredentials):
    err = odata_error(
        sandbox,
        full,
        lambda c: c.users.by_user_id("nobody@contoso-sandbox.onmicrosoft.com").revoke_sign_in_sessions.post(),
    )
    assert err.response_status_code == 404
    assert err.error.code == "Request_ResourceNotFound"
    assert err.response_headers  # request-id and friends come back


def test_permissions_are_enforced_like_graph(sandbox: Running):
    reader = sandbox.app("reader-only", app_roles=("User.Read.All",))
    target = sandbox.sandbox.tenant.users[50]
    err = odata_error(sandbox, reader, lambda c: c.users.by_user_id(target.id).revoke_sign_in_sessions.post())
    assert err.response_status_code == 403
    assert err.error.code == "Authorization_RequestDenied"
    revoker = sandbox.app("revoke-only", app_roles=("User.RevokeSessions.All",))
    assert odata_error(sandbox, revoker, lambda c: c.users.get()).response_status_code == 403
    assert (
        odata_error(
            sandbox,
            revoker,
            lambda c: c.groups.by_group_id(
                sandbox.sandbox.tenant.group_named("compromised-sales").id
            ).transitive_members.get(),
        ).response_status_code
        == 403
    )
    assert with_client(sandbox, revoker, lambda c: c.users.by_user_id(target.id).revoke_sign_in_sessions.post()).value


def test_me_with_an_app_token_is_400(sandbox: Running, full: AppCredentials):
    err = odata_error(sandbox, full, lambda c: c.me.revoke_sign_in_sessions.post())
    assert err.response_status_code == 400


def test_users_paging_select_and_filters(sandbox: Running, full: AppCredentials):
    async def all_guests(c: Any) -> list[Any]:
        config = RequestConfiguration(
            query_parameters=UsersRequestBuilder.UsersRequestBuilderGetQueryParameters(
                filter="userType eq 'Guest'", select=["id", "userPrincipalName", "userType", "externalUserState"], top=5
            )
        )
        page = await c.users.get(request_configuration=config)
        found = list(page.value)
        while page.odata_next_link:
            page = await c.users.with_url(page.odata_next_link).get()
            found += page.value
        return found

    guests = with_client(sandbox, full, all_guests)
    expected = [u for u in sandbox.sandbox.tenant.users if u.user_type == "Guest"]
    assert [g.id for g in guests] == [u.id for u in expected]
    assert all(g.external_user_state in ("Accepted", "PendingAcceptance") for g in guests)


def get(
    run: Running,
    creds: AppCredentials,
    path: str,
    headers: dict[str, str] | None = None,
    params: dict[str, str] | None = None,
) -> Any:
    return run.http.get(path, params=params, headers={**bearer(run, creds), **(headers or {})})


@pytest.mark.parametrize(
    ("flt", "check"),
    [
        ("startswith(userPrincipalName,'admin.')", lambda u: u.user_principal_name.startswith("admin.")),
        ("startswith(displayName,'Break')", lambda u: u.display_name.startswith("Break")),
        ("accountEnabled eq false", lambda u: not u.account_enabled),
        (
            "department eq 'Sales' and userType eq 'Member'",
            lambda u: u.department == "Sales" and u.user_type == "Member",
        ),
        (
            "userType eq 'Guest' or startswith(userPrincipalName,'breakglass')",
            lambda u: u.user_type == "Guest" or u.user_principal_name.startswith("breakglass"),
        ),
        (
            "userPrincipalName eq 'OPERATOR@contoso-sandbox.onmicrosoft.com'",
            lambda u: u.user_principal_name == "operator@contoso-sandbox.onmicrosoft.com",
        ),
    ],
)
def test_supported_filters(sandbox: Running, full: AppCredentials, flt: str, check: Callable[[Any], bool]):
    response = get(sandbox, full, "/users", params={"$filter": flt, "$top": "999", "$select": "id"})
    assert response.status_code == 200, response.text
    assert [u["id"] for u in response.json()["value"]] == [u.id for u in sandbox.sandbox.tenant.users if check(u)]


def test_in_filter_and_its_limit(sandbox: Running, full: AppCredentials):
    users = sandbox.sandbox.tenant.users[:3]
    ids = ",".join(f"'{u.id}'" for u in users)
    response = get(sandbox, full, "/users", params={"$filter": f"id in ({ids})"})
    assert {u["id"] for u in response.json()["value"]} == {u.id for u in users}
    many = ",".join(f"'{u.user_principal_name}'" for u in sandbox.sandbox.tenant.users[:16])
    response = get(sandbox, full, "/users", params={"$filter": f"userPrincipalName in ({many})"})
    assert response.status_code == 400
    assert "Max allowed: 15" in response.json()["error"]["message"]


@pytest.mark.parametrize("flt", ["jobTitle eq 'x'", "startswith(mail,'a')", "displayName ne 'x'", "endswith(mail,'x')"])
def test_unsupported_filters_are_400(sandbox: Running, full: AppCredentials, flt: str):
    response = get(sandbox, full, "/users", params={"$filter": flt})
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "Request_UnsupportedQuery"
    assert set(response.json()["error"]["innerError"]) == {"date", "request-id", "client-request-id"}


def test_count_needs_consistency_level(sandbox: Running, full: AppCredentials):
    assert get(sandbox, full, "/users", params={"$count": "true"}).status_code == 400
    response = get(sandbox, full, "/users", {"ConsistencyLevel": "eventual"}, params={"$count": "true", "$top": "1"})
    assert response.json()["@odata.count"] == len(sandbox.sandbox.tenant.users)
    assert get(sandbox, full, "/users", params={"$top": "1000"}).status_code == 400


def test_transitive_members_include_nested_groups_and_are_paged(sandbox: Running, full: AppCredentials):
    tenant = sandbox.sandbox.tenant
    group = tenant.group_named("compromised-sales")

    async def members(c: Any) -> list[Any]:
        page = await c.groups.by_group_id(group.id).transitive_members.get()
        found = list(page.value)
        while page.odata_next_link:
            page = await c.groups.by_group_id(group.id).transitive_members.with_url(page.odata_next_link).get()
            found += page.value
        return found

    found = with_client(sandbox, full, members)
    ids = [m.id for m in found]
    emea = tenant.group_named("sales-emea")
    assert emea.id in ids and all(m in ids for m in emea.members)
    assert sandbox.user("breakglass1").id in ids
    assert len(ids) == len(set(ids)) == len(tenant.transitive_members(group.id))
    users = [m for m in found if m.odata_type == "#microsoft.graph.user"]
    assert all(u.user_principal_name for u in users)


def test_members_without_user_read_have_limited_information(sandbox: Running):
    members_only = sandbox.app("members-only", app_roles=("GroupMember.Read.All",))
    group = sandbox.sandbox.tenant.group_named("compromised-sales")
    response = get(
        sandbox,
        members_only,
        f"/groups/{group.id}/transitiveMembers/microsoft.graph.user",
        {"ConsistencyLevel": "eventual"},
        params={"$top": "999", "$count": "true"},
    )
    assert response.status_code == 200
    assert all(set(m) == {"@odata.type", "id"} for m in response.json()["value"])


def test_directory_roles_and_role_assignments(sandbox: Running, full: AppCredentials):
    roles = get(sandbox, full, "/directoryRoles").json()["value"]
    ga = next(r for r in roles if r["displayName"] == "Global Administrator")
    members = get(sandbox, full, f"/directoryRoles/{ga['id']}/members").json()["value"]
    assert {m["userPrincipalName"].split("@")[0] for m in members} == {"breakglass1", "breakglass2", "admin.global"}
    assignments = get(
        sandbox,
        full,
        "/roleManagement/directory/roleAssignments",
        params={"$filter": f"roleDefinitionId eq '{ga['roleTemplateId']}'"},
    ).json()["value"]
    assert {a["principalId"] for a in assignments} == {m["id"] for m in members}
    reader = sandbox.app("no-role-read", app_roles=("User.Read.All",))
    assert get(sandbox, reader, "/directoryRoles").status_code == 403


#: what Graph requires of every write item in a $batch, even one whose operation takes no body
WRITE_ITEM: dict[str, Any] = {"body": {}, "headers": {"Content-Type": "application/json"}}


def batch(run: Running, creds: AppCredentials, requests: list[dict[str, Any]]) -> Any:
    return run.http.post("/$batch", json={"requests": requests}, headers=bearer(run, creds))


def test_batch_items_answer_on_their_own(sandbox: Running, full: AppCredentials):
    target = sandbox.sandbox.tenant.users[60]
    response = batch(
        sandbox,
        full,
        [
            {"id": "1", "method": "POST", "url": f"/users/{target.id}/revokeSignInSessions", **WRITE_ITEM},
            {
                "id": "2",
                "method": "POST",
                "url": "/users/ghost@contoso-sandbox.onmicrosoft.com/revokeSignInSessions",
                **WRITE_ITEM,
            },
            {"id": "3", "method": "GET", "url": f"/users/{target.id}?$select=id,userType"},
        ],
    )
    assert response.status_code == 200
    by_id = {r["id"]: r for r in response.json()["responses"]}
    assert by_id["1"]["status"] == 200 and by_id["1"]["body"]["value"] is True
    assert by_id["2"]["status"] == 404 and by_id["2"]["body"]["error"]["code"] == "Request_ResourceNotFound"
    assert by_id["3"]["body"] == {
        "@odata.context": by_id["3"]["body"]["@odata.context"],
        "id": target.id,
        "userType": "Member",
    }
    too_many = batch(sandbox, full, [{"id": str(i), "method": "GET", "url": "/users"} for i in range(21)])
    assert too_many.status_code == 400


def test_item_level_429_inside_a_200_batch(sandbox: Running, full: AppCredentials):
    sandbox.settings(faults={"item_429": 1.0, "retry_after": 3})
    try:
        response = batch(
            sandbox,
            full,
            [
                {
                    "id": str(i),
                    "method": "POST",
                    "url": f"/users/{sandbox.sandbox.tenant.users[70 + i].id}/revokeSignInSessions",
                    **WRITE_ITEM,
                }
                for i in range(3)
            ],
        )
    finally:
        sandbox.settings(faults={"item_429": 0.0})
    assert response.status_code == 200
    for item in response.json()["responses"]:
        assert item["status"] == 429
        assert item["headers"]["Retry-After"] == "3"


def test_injected_faults(sandbox: Running, full: AppCredentials):
    import httpx

    target = sandbox.sandbox.tenant.users[80]
    sandbox.settings(faults={"error_5xx": 1.0})
    try:
        err = odata_error(sandbox, full, lambda c: c.users.by_user_id(target.id).get())
    finally:
        sandbox.settings(faults={"error_5xx": 0.0})
    assert err.response_status_code == 503
    sandbox.settings(faults={"malformed": 1.0})
    try:
        response = get(sandbox, full, f"/users/{target.id}")
    finally:
        sandbox.settings(faults={"malformed": 0.0})
    assert response.status_code == 200
    with pytest.raises(ValueError, match=r"Expecting|Unterminated"):
        response.json()
    sandbox.settings(faults={"reset": 1.0})
    try:
        with pytest.raises(httpx.HTTPError):
            get(sandbox, full, f"/users/{target.id}")
    finally:
        sandbox.settings(faults={"reset": 0.0})


def test_injected_faults_can_be_aimed_at_one_path_a_number_of_times(sandbox: Running, full: AppCredentials):
    # A test tool (issue 9 A8/A9): fail only the privileged-membership check, or only the first
    # few revocations, with the Retry-After a test asks for.
    users = sandbox.sandbox.tenant.users[81:84]
    items = [
        {"id": "1", "method": "GET", "url": f"/users/{users[0].id}"},
        {"id": "2", "method": "POST", "url": f"/users/{users[1].id}/revokeSignInSessions", **WRITE_ITEM},
        {"id": "3", "method": "POST", "url": f"/users/{users[2].id}/revokeSignInSessions", **WRITE_ITEM},
    ]
    sandbox.settings(faults={"error_5xx": 1.0, "only": "revokeSignInSessions", "limit": 1, "retry_after_5xx": 7})
    try:
        first = {r["id"]: r for r in batch(sandbox, full, items).json()["responses"]}
        second = {r["id"]: r for r in batch(sandbox, full, items).json()["responses"]}
    finally:
        sandbox.settings(faults={"error_5xx": 0.0, "only": "", "limit": 0, "retry_after_5xx": 1})
    assert first["1"]["status"] == 200, "another path: not aimed at"
    assert sorted(r["status"] for r in (first["2"], first["3"])) == [200, 503], "one injection only"
    failed = first["2"] if first["2"]["status"] == 503 else first["3"]
    assert failed["headers"]["Retry-After"] == "7"
    assert [second[i]["status"] for i in "123"] == [200, 200, 200], "the limit was reached"


def test_delegated_revocation_follows_directory_roles(sandbox: Running):
    creds = sandbox.app("ops-delegated", scopes=("User.RevokeSessions.All", "User.Read.All"), public_client=True)
    ordinary = sandbox.sandbox.tenant.users[90]

    def revoke(operator: str, target: str, path: str | None = None) -> int:
        token = device_code_token(sandbox, creds.client_id, f"{operator}@contoso-sandbox.onmicrosoft.com")
        url = path or f"/users/{target}/revokeSignInSessions"
        return sandbox.http.post(url, headers={"Authorization": f"Bearer {token}"}).status_code

    assert revoke("admin.helpdesk", ordinary.id) == 200
    assert revoke("admin.helpdesk", sandbox.user("admin.password").id) == 403  # a limited admin
    assert revoke("admin.users", sandbox.user("admin.password").id) == 200
    assert revoke("admin.users", sandbox.user("breakglass1").id) == 403  # a privileged admin
    assert revoke("admin.pauth", sandbox.user("breakglass1").id) == 200
    # a member of a role-assignable group: privileged as a target, and the group's role is theirs
    assert revoke("admin.users", sandbox.user("pim.groupadmin").id) == 403
    assert revoke("admin.pauth", sandbox.user("pim.groupadmin").id) == 200
    assert revoke("pim.groupadmin", sandbox.user("admin.password").id) == 200
    assert revoke("operator", ordinary.id) == 403  # no directory role
    assert revoke("operator", "", path="/me/revokeSignInSessions") == 200
    record = sandbox.revocations()[-1]
    assert record["byUser"] == sandbox.user("operator").id and record["userId"] == sandbox.user("operator").id
