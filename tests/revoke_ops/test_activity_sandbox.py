"""The sandbox serves signInActivity under Graph's rules (docs/activity-ordering.md): permission,
licence, filters on it alone, 500 per page, no $orderby, 10 reads a minute — over HTTPS."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from revoke_ops.activity import format_time
from tests.sandbox.conftest import Running, bearer

READ = ("User.Read.All",)
ACTIVITY = ("User.Read.All", "AuditLog.Read.All")


def get(run: Running, headers: dict[str, str], query: str) -> Any:
    return run.http.get(f"/users?{query}", headers=headers)


def test_reading_sign_in_activity_needs_audit_log_read_all_and_a_premium_licence(sandbox: Running) -> None:
    plain = bearer(sandbox, sandbox.app("activity-no-auditlog", app_roles=READ))
    refused = get(sandbox, plain, "$select=id,signInActivity&$top=5")
    assert refused.status_code == 403
    assert refused.json()["error"]["code"] == "Authentication_MSGraphPermissionMissing"
    assert "AuditLog.Read.All" in refused.json()["error"]["message"]
    assert get(sandbox, plain, "$select=id,userType&$top=5").status_code == 200  # the rest is unaffected

    headers = bearer(sandbox, sandbox.app("activity-licence", app_roles=ACTIVITY))
    sandbox.sandbox.tenant.premium = False
    try:
        unlicensed = get(sandbox, headers, "$filter=signInActivity/lastSignInDateTime ge 2026-01-01T00:00:00Z")
    finally:
        sandbox.sandbox.tenant.premium = True
    assert unlicensed.status_code == 403
    assert unlicensed.json()["error"]["code"] == "Authentication_RequestFromNonPremiumTenantOrB2CTenant"
    ok = get(sandbox, headers, "$select=id,signInActivity&$top=500")
    assert ok.status_code == 200


def test_filters_page_size_and_ordering_follow_the_documented_support(sandbox: Running) -> None:
    headers = bearer(sandbox, sandbox.app("activity-queries", app_roles=ACTIVITY))
    tenant = sandbox.sandbox.tenant
    since = datetime.now(UTC) - timedelta(days=1)
    text = f"signInActivity/lastNonInteractiveSignInDateTime ge {format_time(since)}"
    found = get(sandbox, headers, f"$filter={text}&$select=id,signInActivity&$top=500")
    assert found.status_code == 200, found.text
    expected = {u.id for u in tenant.users if (u.last_non_interactive_sign_in or since - timedelta(1)) >= since}
    assert {u["id"] for u in found.json()["value"]} == expected and expected
    assert all("signInActivity" in u for u in found.json()["value"])

    never = next(u for u in tenant.users if u.last_sign_in is None and u.last_non_interactive_sign_in is None)
    one = sandbox.http.get(f"/users/{never.id}?$select=id,signInActivity", headers=headers).json()
    assert "signInActivity" not in one  # not returned for a user who never signed in

    too_big = get(sandbox, headers, "$select=id,signInActivity&$top=999")
    assert too_big.status_code == 400 and "500" in too_big.json()["error"]["message"]
    mixed = get(sandbox, headers, f"$filter={text} and userType eq 'Member'")
    assert mixed.status_code == 400 and mixed.json()["error"]["code"] == "Request_UnsupportedQuery"
    ordered = get(sandbox, headers, "$select=id,signInActivity&$orderby=signInActivity/lastSignInDateTime desc")
    assert ordered.status_code == 400
    gt = get(sandbox, headers, f"$filter=signInActivity/lastSignInDateTime gt {format_time(since)}")
    assert gt.status_code == 400  # only eq, ne, not, ge, le


def test_sign_in_activity_reads_are_limited_to_ten_a_minute(sandbox: Running) -> None:
    headers = bearer(sandbox, sandbox.app("activity-limit", app_roles=ACTIVITY))
    answers = [get(sandbox, headers, "$select=id,signInActivity&$top=1") for _ in range(11)]
    assert [a.status_code for a in answers[:10]] == [200] * 10
    assert answers[10].status_code == 429 and int(answers[10].headers["Retry-After"]) >= 1
    assert get(sandbox, headers, "$select=id&$top=1").status_code == 200  # other reads are not affected
