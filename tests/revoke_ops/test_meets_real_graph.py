"""Issue 9 end to end: the request shapes real Graph requires, through the real ``revoke-ops`` command.

Each test drives the strict sandbox (docs/sandbox-conformance.md) the way an operator would and
checks what they see: who was revoked, in which order, the exit code and the messages. The unit
tests of the same shapes (tests/revoke_ops/test_request_shapes.py) check helpers; these check the
command reaches Graph with them.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from tests.revoke_ops.conftest import DOMAIN, Ops, write_bundle
from tests.revoke_ops.test_engine import internal
from tests.revoke_ops.test_privileged_first import incident_group

NO_FAULTS = {"error_5xx": 0.0, "item_429": 0.0, "only": "", "limit": 0, "retry_after": 1, "retry_after_5xx": 1}


@pytest.fixture
def faults(ops: Ops) -> Iterator[Any]:
    """Set the sandbox's faults for one test; always switched off again."""
    try:
        yield lambda **values: ops.run.settings(faults={**NO_FAULTS, **values})
    finally:
        ops.run.settings(faults=NO_FAULTS)


def journal_lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


# -- A8: a 429/5xx while checking who of the privileged is in the group -------------------------


@pytest.mark.parametrize("fault", ["item_429", "error_5xx"])
def test_a_throttled_or_failing_membership_check_is_asked_again_and_the_privileged_still_go_first(
    ops: Ops, faults: Any, fault: str
):
    # Graph answers the first checkMemberGroups items 429 / 503 (with Retry-After): the check is
    # asked again, so the role-group member and the PIM-eligible user still lead the run.
    group, ordinary, privileged = incident_group(ops, f"incident-{fault}", 470)
    before = len(ops.run.revocations())
    faults(**{fault: 1.0, "only": "checkMemberGroups", "limit": 4})
    result = ops.cli("revoke", "--group", group.id, "--yes", "--concurrency", "1")
    assert result.returncode == 0, result.stderr
    revoked = ops.revoked_ids(before)
    assert set(revoked[:2]) == {u.id for u in privileged}, "listed last, revoked first despite the failures"
    assert set(revoked) == {u.id for u in ordinary + privileged} and len(revoked) == 12
    assert "could not be checked" not in result.stderr


def test_a_membership_check_that_keeps_failing_is_said_and_drops_nobody(ops: Ops, faults: Any):
    group, ordinary, privileged = incident_group(ops, "incident-check-down", 520)
    before = len(ops.run.revocations())
    faults(error_5xx=1.0, only="checkMemberGroups")
    result = ops.cli("revoke", "--group", group.id, "--yes", "--concurrency", "1")
    assert result.returncode == 0, result.stderr
    assert "privileged user(s) could not be checked for membership of the group" in result.stderr
    assert "revoked in listing order, not first" in result.stderr
    revoked = ops.revoked_ids(before)
    assert set(revoked) == {u.id for u in ordinary + privileged}, "unchecked is never skipped"


# -- A9: Retry-After on a 5xx item of a $batch -------------------------------------------------


def test_a_5xx_items_retry_after_is_waited_before_it_is_sent_again(ops: Ops, faults: Any, tmp_path: Path):
    # Microsoft Graph error responses: a 503 may say in Retry-After how long to wait.
    users = internal(ops, 150, 3)
    journal = tmp_path / "j.jsonl"
    before = len(ops.run.revocations())
    faults(error_5xx=1.0, only="revokeSignInSessions", limit=1, retry_after_5xx=3)
    result = ops.cli("revoke", *(a for u in users for a in ("--user", u.id)), "--yes", "--journal", str(journal))
    assert result.returncode == 0, result.stderr
    assert sorted(ops.revoked_ids(before)) == sorted(u.id for u in users)
    attempts = [line for line in journal_lines(journal) if line["type"] == "attempt"]
    assert len(attempts) == 2, attempts  # the batch, then the one user Graph answered 503
    sent = [datetime.fromisoformat(a["at"]) for a in attempts]
    # Without Retry-After the first backoff is 0.1-0.2 s.
    assert (sent[1] - sent[0]).total_seconds() >= 3, "the 503's Retry-After: 3 was not waited"


def test_a_5xx_items_retry_after_beyond_the_cap_is_capped_and_journaled(ops: Ops, faults: Any, tmp_path: Path):
    users = internal(ops, 160, 3)
    journal = tmp_path / "j.jsonl"
    faults(error_5xx=1.0, only="revokeSignInSessions", limit=1, retry_after_5xx=3600)
    args = ["revoke", *(a for u in users for a in ("--user", u.id)), "--yes", "-v", "--journal", str(journal)]
    result = ops.cli(*args, "--max-retry-wait", "0.5")
    assert result.returncode == 0, result.stderr
    assert "Graph failed for now: Graph asked to wait 3600 s; waiting 0 s (--max-retry-wait)" in result.stderr
    pauses = [line for line in journal_lines(journal) if line["type"] == "pause"]
    assert [(p["reason"], p["asked"]) for p in pauses] == [("retry-after-capped", 3600)]


# -- A6: --all-users --filter with a filter that needs advanced query headers ------------------


@pytest.mark.parametrize(
    ("operator_filter", "matches"),
    [
        (f"endsWith(userPrincipalName,'l@{DOMAIN}')", lambda u: u.user_principal_name.endswith(f"l@{DOMAIN}")),
        (
            "department ne 'Sales' and startsWith(userPrincipalName,'admin.')",
            lambda u: u.department != "Sales" and u.user_principal_name.startswith("admin."),
        ),
    ],
    ids=["endsWith", "ne"],
)
def test_an_advanced_filter_lists_and_revokes_exactly_its_users(ops: Ops, operator_filter: str, matches: Any):
    # Graph refuses endsWith / ne without ConsistencyLevel: eventual and $count=true (the strict
    # sandbox too): the listing, the count and the privileged lookup must all send them.
    tenant = ops.run.sandbox.tenant
    internal = [u for u in tenant.users if u.user_type == "Member" and "#EXT#" not in u.user_principal_name]
    expected = {u.id for u in internal if matches(u)}
    assert expected and any(tenant.users_by_id[i].roles for i in expected), "a privileged user among them"
    before = len(ops.run.revocations())
    result = ops.cli("revoke", "--all-users", "--filter", operator_filter, "--yes", "--concurrency", "1")
    assert result.returncode == 0, result.stderr
    revoked = ops.revoked_ids(before)
    assert set(revoked) == expected and len(revoked) == len(expected)
    assert tenant.users_by_id[revoked[0]].roles, "privileged first"


def test_a_null_comparison_is_an_advanced_query_too(ops: Ops):
    # Graph's table of user properties marks comparisons with null advanced only (a plain request
    # is refused, e.g. "Unsupported property filter clause operator 'NotEqualsMatch'." for ne null).
    tenant = ops.run.sandbox.tenant
    result = ops.cli("revoke", "--all-users", "--filter", "department eq null", "--dry-run", "-o", "jsonl", "--yes")
    assert result.returncode == 0, result.stderr
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    would = {line["id"] for line in lines if line["type"] == "wouldRevoke"}
    internal = [u for u in tenant.users if u.user_type == "Member" and "#EXT#" not in u.user_principal_name]
    assert would == {u.id for u in internal if u.department is None}
    assert would and any(tenant.users_by_id[i].roles for i in would), "a privileged user among them"


def test_a_filter_on_a_property_graph_filters_only_in_advanced_queries_works(ops: Ops):
    # companyName is one of the user properties Graph's table marks advanced for every operator.
    tenant = ops.run.sandbox.tenant
    chosen = [*internal(ops, 560, 2), ops.user("admin.helpdesk")]

    def set_company() -> None:
        for user in chosen:
            user.company_name = "Tailspin Toys"

    ops.run.sandbox.call(set_company)
    result = ops.cli(
        "revoke", "--all-users", "--filter", "companyName eq 'Tailspin Toys'", "--dry-run", "-o", "jsonl", "--yes"
    )
    assert result.returncode == 0, result.stderr
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    would = [line["id"] for line in lines if line["type"] == "wouldRevoke"]
    assert would[0] == ops.user("admin.helpdesk").id, "privileged first"
    assert set(would) == {u.id for u in chosen}
    assert tenant.users_by_id[chosen[0].id].company_name == "Tailspin Toys"


# -- A7: UPNs Graph addresses specially, as targets given by UPN -------------------------------


@pytest.fixture
def awkward_upns(ops: Ops) -> list[Any]:
    tenant = ops.run.sandbox.tenant
    made = []
    for upn in (f"$svc.i9@{DOMAIN}", f"o'neil.i9@{DOMAIN}", f"$o'hara.i9@{DOMAIN}"):
        made.append(tenant.user(upn) or ops.run.sandbox.call(tenant.add_user, upn.split("@")[0], upn, upn=upn))
    return made


@pytest.mark.parametrize("permissions", ["full", "revoke-only"])
def test_upns_beginning_with_dollar_or_holding_apostrophes_are_revoked_by_upn(
    ops: Ops, awkward_upns: list[Any], tmp_path: Path, permissions: str
):
    # With User.Read.All the UPNs are looked up in a $filter (apostrophes doubled); without it the
    # revocations go by UPN inside $batch (`/users('$x@y')` for a leading $). Either way all three.
    if permissions == "revoke-only":
        creds = ops.run.app("ops-awkward-revoke-only", app_roles=("User.RevokeSessions.All",))
        bundle = write_bundle(ops.run, creds, tmp_path / "b.json", app_roles=("User.RevokeSessions.All",))
        ops = Ops(ops.run, creds, bundle)
    before = len(ops.run.revocations())
    targets = tmp_path / "t.txt"
    targets.write_text("".join(f"{u.user_principal_name}\n" for u in awkward_upns))
    result = ops.cli("revoke", "--from-file", str(targets), "--yes")
    assert result.returncode == 0, result.stderr
    assert sorted(ops.revoked_ids(before)) == sorted(u.id for u in awkward_upns)
