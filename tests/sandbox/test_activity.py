"""signInActivity refusals the revoke-ops tests do not reach: a delegated caller's role, and the
filter clauses Graph cannot parse (tests/revoke_ops/test_activity_sandbox.py has the rest)."""

from __future__ import annotations

import pytest

from tests.sandbox.conftest import Running, bearer
from tests.sandbox.test_identity import device_code_token

ACTIVITY = ("User.Read.All", "AuditLog.Read.All")


def test_a_delegated_caller_needs_a_role_that_reads_reports(sandbox: Running):
    creds = sandbox.app("activity-delegated", scopes=ACTIVITY, public_client=True)

    def read(operator: str) -> tuple[int, dict[str, str]]:
        token = device_code_token(sandbox, creds.client_id, f"{operator}@contoso-sandbox.onmicrosoft.com")
        answer = sandbox.http.get(
            "/users?$select=id,signInActivity&$top=5", headers={"Authorization": f"Bearer {token}"}
        )
        return answer.status_code, answer.json().get("error", {})

    status, error = read("admin.helpdesk")
    assert status == 403 and error["code"] == "Authentication_RequestFromUnsupportedUserRole"
    assert error["message"] == "User is not in the allowed roles"
    assert read("admin.security")[0] == 200


@pytest.mark.parametrize(
    ("clause", "code", "message"),
    [
        (
            "not(signInActivity/lastSignInDateTime ge 2026-01-01T00:00:00Z",
            "Request_UnsupportedQuery",
            "Invalid filter clause: unbalanced parentheses",
        ),
        (
            "signInActivity/lastSeen ge 2026-01-01T00:00:00Z",
            "Request_UnsupportedQuery",
            "Could not find a property named 'lastSeen' on type 'microsoft.graph.signInActivity'.",
        ),
        (
            "signInActivity/lastSignInDateTime gt 2026-01-01T00:00:00Z",
            "Request_UnsupportedQuery",
            "Unsupported query operator 'gt' for property 'signInActivity/lastSignInDateTime'.",
        ),
        (
            "signInActivity/lastSignInDateTime ge yesterday",
            "BadRequest",
            "Invalid filter clause: 'yesterday' is not a valid DateTimeOffset literal.",
        ),
    ],
)
def test_filter_clauses_graph_cannot_take_are_400(sandbox: Running, clause: str, code: str, message: str):
    sandbox.sandbox.tenant.activity_reads_per_minute = 0  # this test is not about the read limit
    try:
        answer = sandbox.http.get(
            f"/users?$filter={clause}", headers=bearer(sandbox, sandbox.app("activity-filters", app_roles=ACTIVITY))
        )
    finally:
        sandbox.sandbox.tenant.activity_reads_per_minute = 10.0
    assert answer.status_code == 400
    assert answer.json()["error"]["code"] == code and message in answer.json()["error"]["message"]
