"""doctor and delegated sign-in, through the real command against the sandbox (issue 11 #13, #14, #21; 9)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from revoke_ops.cli import ExitCode
from tests.revoke_ops.conftest import DOMAIN, FULL, Ops, write_bundle
from tests.sandbox.conftest import Running

PROMPT = "To sign in, open"


def delegated_ops(
    sandbox: Running,
    tmp_path: Path,
    name: str,
    scopes: tuple[str, ...],
    *,
    listed: tuple[str, ...] | None = None,
    **extra: Any,
) -> Ops:
    """A public-client app with delegated consent for ``scopes``; its bundle lists ``listed``."""
    creds = sandbox.app(name, scopes=scopes, public_client=True)
    bundle = write_bundle(sandbox, creds, tmp_path / f"{name}.json", app_roles=(), delegated=listed or scopes)
    if extra:
        bundle.write_text(json.dumps({**json.loads(bundle.read_text()), **extra}))
    return Ops(sandbox, creds, bundle)


@pytest.fixture
def signed_in_as(sandbox: Running) -> Iterator[Any]:
    def sign_in(alias: str) -> None:
        sandbox.settings(autoApproveUser=f"{alias}@{DOMAIN}")

    yield sign_in
    sandbox.settings(autoApproveUser=None)


def checks(result: Any) -> dict[str, dict[str, str]]:
    return {c["name"]: c for c in json.loads(result.stdout)}


@pytest.mark.parametrize(
    "command",
    [
        ("doctor",),
        ("me",),
        ("revoke", "--user", "operator@" + DOMAIN, "--yes"),
        ("contain", "--user", "user000012@" + DOMAIN, "--yes"),
    ],
)
def test_one_device_code_per_command(sandbox: Running, tmp_path: Path, signed_in_as: Any, command: tuple[str, ...]):
    scopes = ("User.RevokeSessions.All", "User.Read.All", "User.EnableDisableAccount.All")
    ops = delegated_ops(sandbox, tmp_path, f"one-code-{command[0]}", scopes)
    signed_in_as("operator")
    result = ops.cli(*command, "--delegated")
    assert result.stderr.count(PROMPT) == 1, result.stderr
    assert result.returncode in (ExitCode.OK, ExitCode.NOT_ALL_REVOKED), result.stderr


def test_doctor_wait_sees_consent_that_replicates_meanwhile(sandbox: Running, tmp_path: Path):
    sandbox.settings(consentDelay=3)
    try:
        creds = sandbox.app("doctor-wait-replication", app_roles=FULL)
        ops = Ops(sandbox, creds, write_bundle(sandbox, creds, tmp_path / "b.json"))
        result = ops.cli("doctor", "--wait", "30", "--output", "json")
    finally:
        sandbox.settings(consentDelay=0)
    assert result.returncode == ExitCode.OK, result.stdout + result.stderr
    found = checks(result)
    assert found["permissions"]["status"] == "ok"
    assert "User.RevokeSessions.All" in found["permissions"]["detail"]


def test_doctor_wait_renews_a_delegated_token_without_a_new_code(sandbox: Running, tmp_path: Path, signed_in_as: Any):
    # The bundle lists User.Read.All, which was never consented: doctor keeps asking for fresh
    # tokens for a few seconds — through the refresh token, never with a second device code.
    ops = delegated_ops(
        sandbox,
        tmp_path,
        "doctor-wait-delegated",
        ("User.RevokeSessions.All",),
        listed=("User.RevokeSessions.All", "User.Read.All"),
    )
    signed_in_as("operator")
    result = ops.cli("doctor", "--delegated", "--wait", "3", "--output", "json")
    assert result.stderr.count(PROMPT) == 1, result.stderr
    found = checks(result)
    assert found["permissions"]["status"] == "warn"
    assert "granted but not yet in the token: User.Read.All" in found["permissions"]["detail"]


def test_doctor_delegated_warns_about_an_operator_without_a_role(sandbox: Running, tmp_path: Path, signed_in_as: Any):
    scopes = ("User.RevokeSessions.All", "RoleManagement.Read.Directory")
    ops = delegated_ops(sandbox, tmp_path, "doctor-operator-role", scopes, operatorsGroup=None)
    signed_in_as("operator")
    plain = checks(ops.cli("doctor", "--delegated", "--output", "json"))
    assert plain["operator role"]["status"] == "warn"
    assert "you hold no directory role" in plain["operator role"]["detail"]
    assert "Privileged Authentication Administrator" in plain["operator role"]["detail"]
    assert plain["operators group"]["status"] == "warn"
    assert "every user in the tenant can sign in" in plain["operators group"]["detail"]
    signed_in_as("admin.helpdesk")
    helpdesk = checks(ops.cli("doctor", "--delegated", "--output", "json"))
    assert helpdesk["operator role"]["status"] == "ok"


def test_doctor_delegated_warns_about_nested_operator_groups(sandbox: Running, tmp_path: Path, signed_in_as: Any):
    group = sandbox.sandbox.tenant.group_named("compromised-sales")  # holds the group sales-emea
    nested = sandbox.sandbox.tenant.group_named("sales-emea")
    scopes = ("User.RevokeSessions.All", "GroupMember.Read.All")
    ops = delegated_ops(sandbox, tmp_path, "doctor-nested", scopes, operatorsGroup=group.id)
    signed_in_as("operator")
    result = ops.cli("doctor", "--delegated", "--output", "json")
    found = checks(result)
    assert found["operators group"]["status"] == "warn", result.stdout
    assert "has nested groups: sales-emea" in found["operators group"]["detail"]
    assert nested.id in found["operators group"]["detail"]
    assert "App assignment does not follow nested groups" in found["operators group"]["detail"]


def test_doctor_delegated_says_when_the_operators_group_cannot_be_read(
    sandbox: Running, tmp_path: Path, signed_in_as: Any
):
    group = sandbox.sandbox.tenant.group_named("compromised-sales")
    ops = delegated_ops(sandbox, tmp_path, "doctor-group-unread", ("User.RevokeSessions.All",), operatorsGroup=group.id)
    signed_in_as("operator")
    result = ops.cli("doctor", "--delegated", "--output", "json")
    detail = checks(result)["operators group"]
    assert detail["status"] == "warn", result.stdout
    assert f"the operators group {group.id} could not be read (403 " in detail["detail"], detail
    assert "needs GroupMember.Read.All" in detail["detail"]


def test_me_says_who_when_and_that_it_writes_no_journal(sandbox: Running, tmp_path: Path, signed_in_as: Any):
    ops = delegated_ops(sandbox, tmp_path, "me-record", ("User.RevokeSessions.All", "User.Read.All"))
    signed_in_as("operator")
    before = len(sandbox.revocations())
    text = ops.cli("me", "--delegated")
    assert text.returncode == ExitCode.OK, text.stderr
    assert f"your sign-in sessions were revoked (operator@{DOMAIN}" in text.stdout
    assert "`me` writes no journal: note this in your incident record" in text.stdout
    as_json = json.loads(ops.cli("me", "--delegated", "--output", "json").stdout)
    assert as_json["user"] == f"operator@{DOMAIN}" and as_json["journal"] is None and as_json["requestId"]
    assert [r["userId"] for r in sandbox.revocations()[before:]] == [sandbox.user("operator").id] * 2
