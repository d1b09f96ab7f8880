"""The sandbox's PATCH /users/{id} accountEnabled: permissions, privileged targets, synced users, payloads."""

from __future__ import annotations

from typing import Any

import pytest

from tests.sandbox.conftest import AppCredentials, Running, bearer
from tests.sandbox.test_graph import FULL, batch

DISABLE = (*FULL, "User.EnableDisableAccount.All")


@pytest.fixture(scope="module")
def disabler(sandbox: Running) -> AppCredentials:
    return sandbox.app("accounts-disabler", app_roles=DISABLE)


def patch(sandbox: Running, creds: AppCredentials, user_id: str, body: Any) -> Any:
    return sandbox.http.patch(f"/users/{user_id}", json=body, headers=bearer(sandbox, creds))


def error_of(response: Any) -> tuple[int, str, str]:
    error = response.json()["error"]
    return response.status_code, error["code"], error["message"]


def test_disable_and_enable_a_user_with_the_least_privileged_pair(sandbox: Running, disabler: AppCredentials):
    user = sandbox.user("user000030") or sandbox.sandbox.tenant.users[70]
    before = len(sandbox.control.get("/account-changes").json())
    assert patch(sandbox, disabler, user.id, {"accountEnabled": False}).status_code == 204
    assert user.account_enabled is False
    assert patch(sandbox, disabler, user.id, {"accountEnabled": True}).status_code == 204
    changes = sandbox.control.get("/account-changes").json()[before:]
    assert [(c["userId"], c["accountEnabled"]) for c in changes] == [(user.id, False), (user.id, True)]


def test_without_the_permission_or_for_an_admin_it_is_403(sandbox: Running, disabler: AppCredentials):
    reader = sandbox.app("accounts-reader", app_roles=FULL)
    user = sandbox.sandbox.tenant.users[71]
    assert error_of(patch(sandbox, reader, user.id, {"accountEnabled": False}))[:2] == (
        403,
        "Authorization_RequestDenied",
    )
    admin = sandbox.user("admin.helpdesk")
    assert error_of(patch(sandbox, disabler, admin.id, {"accountEnabled": False}))[:2] == (
        403,
        "Authorization_RequestDenied",
    )
    assert admin.account_enabled


def test_synced_users_and_bad_payloads_are_refused(sandbox: Running, disabler: AppCredentials):
    synced = sandbox.user("hybrid.synced2")
    status, code, message = error_of(patch(sandbox, disabler, synced.id, {"accountEnabled": False}))
    assert (status, code) == (400, "Request_BadRequest") and "on-premises mastered Directory Sync" in message
    user = sandbox.sandbox.tenant.users[72]
    assert error_of(patch(sandbox, disabler, user.id, {}))[2] == "Empty Payload. JSON content expected."
    assert "accountEnabled" in error_of(patch(sandbox, disabler, user.id, {"accountEnabled": "no"}))[2]
    assert (
        "emulates updates of accountEnabled only" in error_of(patch(sandbox, disabler, user.id, {"jobTitle": "x"}))[2]
    )
    assert user.account_enabled and synced.account_enabled


def test_patch_in_a_batch_needs_body_and_content_type(sandbox: Running, disabler: AppCredentials):
    user = sandbox.sandbox.tenant.users[73]
    bare = batch(sandbox, disabler, [{"id": "1", "method": "PATCH", "url": f"/users/{user.id}"}])
    assert bare.status_code == 400 and "does not contain Content-Type header or body" in bare.text
    item = {
        "id": "1",
        "method": "PATCH",
        "url": f"/users/{user.id}",
        "body": {"accountEnabled": False},
        "headers": {"Content-Type": "application/json"},
    }
    answer = batch(sandbox, disabler, [item]).json()["responses"][0]
    assert answer["status"] == 204 and user.account_enabled is False
    sandbox.sandbox.call(setattr, user, "account_enabled", True)
