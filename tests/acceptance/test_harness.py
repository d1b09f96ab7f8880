"""The acceptance harness itself, tested here: its skip contract, and its lifecycle driven with a
fake ``pulumi`` on PATH against the sandbox tenant (step order, destroy on failure, the
signInSessionsValidFromDateTime check, state kept when destroy fails)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from tests.acceptance.harness import ROOT, Lifecycle
from tests.acceptance.settings import AcceptanceError, Settings, redact, skip_reason, valid_from_moved
from tests.sandbox.conftest import Running, sandbox  # noqa: F401  # the fixture

SECRET = "fake-deployer-secret-value"
PASSPHRASE = "acceptance-passphrase"


def clean_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith(("REVOKE_ACC", "ARM_", "PULUMI_"))}


def run_without_tenant(*command: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(command, cwd=ROOT, env=clean_env(), capture_output=True, text=True, timeout=600, check=False)


# -- the skip contract ----------------------------------------------------------------------------
def test_without_the_variables_the_suite_is_skipped_with_what_to_set():
    result = run_without_tenant(
        sys.executable, "-m", "pytest", "-rs", "-p", "no:cacheprovider", "tests/acceptance/test_real_tenant.py"
    )
    assert "1 skipped" in result.stdout and "passed" not in result.stdout, result.stdout
    assert "SKIPPED" in result.stdout
    assert "not run: set REVOKE_ACC=1, ARM_TENANT_ID, ARM_CLIENT_ID" in result.stdout
    assert "REVOKE_ACC_USER_ID" in result.stdout


def test_scripts_acceptance_exits_non_zero_not_run_when_skipped():
    result = run_without_tenant(str(ROOT / "scripts" / "acceptance"))
    assert result.returncode == 3, result.stdout + result.stderr
    assert "acceptance: NOT RUN" in result.stderr
    assert "set REVOKE_ACC=1" in result.stderr


def test_switched_on_but_incomplete_settings_fail_naming_every_variable():
    with pytest.raises(AcceptanceError) as err:
        Settings.from_env(
            {
                "REVOKE_ACC": "1",
                "ARM_TENANT_ID": "contoso.onmicrosoft.com",
                "ARM_CLIENT_ID": "11111111-1111-4111-8111-111111111111",
                "ARM_CLIENT_SECRET": SECRET,
                "ARM_USE_OIDC": "true",
                "REVOKE_ACC_USER_UPN": "no-at-sign",
                "REVOKE_ACC_CLOUD": "germany",
                "REVOKE_ACC_SETTLE": "soon",
            }
        )
    message = str(err.value)
    assert "ARM_TENANT_ID must be a GUID (got 'contoso.onmicrosoft.com')" in message
    assert "set exactly one deployer credential" in message and "(found secret, oidc)" in message
    assert "PULUMI_CONFIG_PASSPHRASE is not set" in message
    assert "REVOKE_ACC_USER_ID is not set" in message
    assert "REVOKE_ACC_USER_UPN must be a userPrincipalName" in message
    assert "REVOKE_ACC_CLOUD must be one of public, usgovernment, usgovernmentdod, china (got 'germany')" in message
    assert "REVOKE_ACC_SETTLE must be a positive number of seconds (got 'soon')" in message
    assert SECRET not in message
    assert skip_reason({"REVOKE_ACC": "1"}) is None
    assert skip_reason({"REVOKE_ACC": "yes"}) is not None


def test_valid_from_must_be_later_than_before_and_not_older_than_the_request():
    sent = datetime(2026, 12, 7, 15, 0, 0, 400000, tzinfo=UTC)
    before = datetime(2026, 12, 1, tzinfo=UTC)
    assert valid_from_moved(before, sent.replace(microsecond=0), sent)  # whole seconds, as Graph returns
    assert valid_from_moved(None, sent, sent)
    assert not valid_from_moved(before, None, sent)  # unreadable
    assert not valid_from_moved(before, before, sent)  # did not move
    assert not valid_from_moved(before, sent - timedelta(minutes=10), sent)  # moved, but by something older
    assert valid_from_moved(before, sent - timedelta(seconds=60), sent)  # the client's clock ahead by a minute


def test_secrets_are_redacted_from_anything_shown():
    env = {"ARM_CLIENT_SECRET": SECRET, "PULUMI_CONFIG_PASSPHRASE": PASSPHRASE}
    shown = redact(f"error: bad secret {SECRET} and {PASSPHRASE}", env)
    assert SECRET not in shown and PASSPHRASE not in shown
    assert "<ARM_CLIENT_SECRET>" in shown and "<PULUMI_CONFIG_PASSPHRASE>" in shown


# -- the lifecycle, with a fake pulumi and the sandbox as the tenant ---------------------------------
class Rig:
    def __init__(self, run: Running, tmp_path: Path) -> None:
        self.run = run
        self.bin = tmp_path / "bin"
        self.bin.mkdir()
        self.log = tmp_path / "pulumi.log"
        fake = self.bin / "pulumi"
        fake.write_text(f'#!/bin/sh\nexec "{sys.executable}" "{Path(__file__).parent / "fake_pulumi.py"}" "$@"\n')
        fake.chmod(0o755)
        group = run.sandbox.tenant.group_named("compromised-sales")
        members = [run.sandbox.tenant.users_by_id.get(m) for m in run.sandbox.tenant.transitive_members(group.id)]
        self.user = next(u for u in members if u is not None and u.user_type == "Member")
        self.group_id = group.id
        self.env = {
            **clean_env(),
            "PATH": f"{self.bin}{os.pathsep}{os.environ['PATH']}",
            "FAKE_PULUMI_LOG": str(self.log),
            "FAKE_PULUMI_ROOT": str(ROOT),
            "FAKE_PULUMI_SANDBOX": str(run.sandbox.state_dir),
            "ARM_CLIENT_SECRET": SECRET,
            "PULUMI_CONFIG_PASSPHRASE": PASSPHRASE,
            "SSL_CERT_FILE": run.ca,
            "REQUESTS_CA_BUNDLE": run.ca,
            "REVOKE_OPS_ALLOW_CUSTOM_CLOUD": "1",
        }
        self.workdir = tmp_path / "acc"

    def settings(self, **changes: Any) -> Settings:
        base: dict[str, Any] = {
            "tenant_id": self.run.info["tenantId"],
            "deployer_client_id": self.run.info["deployer"]["clientId"],
            "deployer_credential": "secret",
            "user_id": self.user.id,
            "user_upn": self.user.user_principal_name,
            "group_id": self.group_id,
            "device_code": False,
            "consent_wait": 30.0,
            "settle": 5.0,
        }
        return Settings(**{**base, **changes})

    def lifecycle(self, settings: Settings, **kwargs: Any) -> Lifecycle:
        return Lifecycle(settings, environ=self.env, workdir=self.workdir, poll=0.2, log=lambda _line: None, **kwargs)

    def commands(self) -> list[str]:
        lines = [json.loads(line) for line in self.log.read_text().splitlines()]
        return [" ".join(a[:2]) if a[0] in ("stack", "config") else a[0] for a in lines]

    def apps_named(self, display_name: str) -> list[Any]:
        return [a for a in self.run.sandbox.tenant.applications.values() if a.display_name == display_name]


@pytest.fixture
def rig(sandbox: Running, tmp_path: Path) -> Rig:  # noqa: F811
    return Rig(sandbox, tmp_path)


@pytest.mark.slow
def test_the_lifecycle_provisions_revokes_every_way_checks_valid_from_and_destroys(rig: Rig):
    rig.run.settings(autoApproveUser=rig.user.user_principal_name)  # the test user approves the device code
    before = rig.user.sessions_valid_from
    lifecycle = rig.lifecycle(rig.settings(device_code=True))
    try:
        report = lifecycle.run()
    finally:
        rig.run.settings(autoApproveUser=None)
    assert [(s.name, s.status) for s in report.steps] == [
        ("copy project", "ok"),
        ("stack init", "ok"),
        ("config", "ok"),
        ("pulumi up", "ok"),
        ("preview: no changes", "ok"),
        ("bundle", "ok"),
        ("doctor --wait", "ok"),
        ("revoke by id", "ok"),
        ("revoke by UPN", "ok"),
        ("revoke through group", "ok"),
        ("revoke from a file ($batch)", "ok"),
        ("delegated device code", "ok"),
        ("contain a cloud-only user", "skipped"),
        ("contain a synced user", "skipped"),
        ("pulumi destroy", "ok"),
        ("stack rm", "ok"),
    ], report.text()
    commands = rig.commands()
    assert commands[:2] == ["stack init", "config set"]
    assert [c for c in commands if c != "config set"] == [
        "stack init",
        "up",
        "preview",
        "stack output",
        "destroy",
        "stack rm",
    ]
    # the stack was configured as the operator asked (with the group, reads need GroupMember.Read.All)
    configured = [json.loads(line) for line in rig.log.read_text().splitlines() if '"config"' in line]
    pairs = {a[-2]: a[-1] for a in (c[:-1] if c[-1] == "--non-interactive" else c for c in configured)}
    assert pairs["revoke-sessions:permissionMode"] == "both"
    assert pairs["revoke-sessions:readPermissions[1]"] == "GroupMember.Read.All"
    assert pairs["azuread:environment"] == "public"
    # what a user would see: the user's sessions were revoked (five times, each later), the app is gone
    assert rig.user.sessions_valid_from > before
    revoked = [r for r in rig.run.revocations() if r["userId"] == rig.user.id]
    assert len(revoked) >= 5
    assert rig.apps_named(lifecycle.display_name) == []
    assert not rig.workdir.exists()
    assert not list((ROOT / "stacks").glob("Pulumi.acc-*.yaml")), "the checkout's stacks/ is never touched"
    assert SECRET not in report.text() and PASSPHRASE not in report.text()


@pytest.mark.slow
def test_a_revocation_that_does_not_show_in_valid_from_fails_and_the_stack_is_still_destroyed(rig: Rig):
    stuck = datetime(2026, 1, 1, tzinfo=UTC)
    lifecycle = rig.lifecycle(rig.settings(settle=1.0), read=lambda _bundle, _user: stuck)
    with pytest.raises(AcceptanceError) as err:
        lifecycle.run()
    message = str(err.value)
    assert message.startswith("revoke by id: signInSessionsValidFromDateTime of")
    assert "did not move within 1 s" in message
    statuses = {s.name: s.status for s in lifecycle.report.steps}
    assert statuses["revoke by id"] == "failed"
    assert "revoke by UPN" not in statuses
    assert statuses["pulumi destroy"] == "ok" and statuses["stack rm"] == "ok"
    assert rig.commands()[-2:] == ["destroy", "stack rm"]
    assert rig.apps_named(lifecycle.display_name) == []
    assert not rig.workdir.exists()


def test_a_second_run_that_proposes_changes_fails_showing_the_diff_and_the_stack_is_destroyed(rig: Rig):
    # What the real providers would show if the certificate's end date were sent as pulumi-tls
    # writes it (issue 9 A2): azuread reads it back in UTC whole seconds, and end_date forces a new one.
    diff = "  +-azuread:index/applicationCertificate:ApplicationCertificate: (replace)\n      ~ endDate: ..."
    rig.env["FAKE_PULUMI_PREVIEW_DIFF"] = diff
    lifecycle = rig.lifecycle(rig.settings())
    with pytest.raises(AcceptanceError) as err:
        lifecycle.run()
    message = str(err.value)
    assert message.startswith("preview: no changes: `")
    assert "no changes were expected but changes were proposed" in message and "(replace)" in message
    statuses = {s.name: s.status for s in lifecycle.report.steps}
    assert statuses["preview: no changes"] == "failed" and "bundle" not in statuses
    assert statuses["pulumi destroy"] == "ok" and statuses["stack rm"] == "ok"
    preview = next(json.loads(line) for line in rig.log.read_text().splitlines() if '"preview"' in line)
    assert "--expect-no-changes" in preview and "--diff" in preview
    assert rig.apps_named(lifecycle.display_name) == []


def test_when_destroy_fails_the_stack_and_its_state_are_kept_and_said_where(rig: Rig):
    rig.env["FAKE_PULUMI_FAIL"] = "up,destroy"
    lifecycle = rig.lifecycle(rig.settings())
    with pytest.raises(AcceptanceError) as err:
        lifecycle.run()
    message = str(err.value)
    assert message.startswith("pulumi up: `")
    assert "up failed (FAKE_PULUMI_FAIL)" in message
    assert f"The stack {lifecycle.stack} was NOT removed: its state is kept in {rig.workdir / 'state'}" in message
    assert lifecycle.display_name in message
    assert rig.commands()[-2:] == ["up", "destroy"], "never `stack rm` a stack that may still have resources"
    assert lifecycle.report.kept and (rig.workdir / "state").exists()
    assert PASSPHRASE not in message and SECRET not in message


def test_without_pulumi_on_path_the_run_says_so_and_leaves_nothing(rig: Rig, tmp_path: Path):
    rig.env["PATH"] = str(tmp_path / "empty")
    lifecycle = rig.lifecycle(rig.settings())
    with pytest.raises(AcceptanceError, match=r"stack init: no `pulumi` on PATH: install the Pulumi CLI"):
        lifecycle.run()
    assert not rig.workdir.exists()


# -- the opt-in contain steps (issue 14) ------------------------------------------------------------
def test_contain_settings_are_checked():
    base = {
        "REVOKE_ACC": "1",
        "ARM_TENANT_ID": "11111111-1111-4111-8111-111111111111",
        "ARM_CLIENT_ID": "11111111-1111-4111-8111-111111111111",
        "ARM_CLIENT_SECRET": SECRET,
        "PULUMI_CONFIG_PASSPHRASE": PASSPHRASE,
        "REVOKE_ACC_USER_ID": "22222222-2222-4222-8222-222222222222",
        "REVOKE_ACC_USER_UPN": "test@contoso.example",
    }
    ok = Settings.from_env({**base, "REVOKE_ACC_CONTAIN": "1", "REVOKE_ACC_SYNCED_USER_ID": SYNCED})
    assert ok.contain and ok.synced_user_id == SYNCED
    assert not Settings.from_env(base).contain and Settings.from_env(base).synced_user_id is None
    with pytest.raises(AcceptanceError) as err:
        Settings.from_env({**base, "REVOKE_ACC_CONTAIN": "yes", "REVOKE_ACC_SYNCED_USER_ID": "synced@contoso"})
    assert "REVOKE_ACC_CONTAIN must be 1 or 0 (got 'yes')" in str(err.value)
    assert "REVOKE_ACC_SYNCED_USER_ID must be a GUID (got 'synced@contoso')" in str(err.value)
    with pytest.raises(AcceptanceError, match="must name another user than REVOKE_ACC_USER_ID"):
        Settings.from_env({**base, "REVOKE_ACC_SYNCED_USER_ID": base["REVOKE_ACC_USER_ID"]})


SYNCED = "33333333-3333-4333-8333-333333333333"


@pytest.mark.slow
def test_contain_steps_disable_and_undo_the_cloud_user_and_see_graph_refuse_the_synced_one(rig: Rig):
    tenant = rig.run.sandbox.tenant
    synced = rig.run.user("hybrid.synced1")
    assert synced.on_premises_sync_enabled
    enabled_before = rig.user.account_enabled
    changes_before = len(rig.run.control.get("/account-changes").json())
    revocations_before = len(rig.run.revocations())
    lifecycle = rig.lifecycle(rig.settings(contain=True, synced_user_id=synced.id))
    report = lifecycle.run()
    steps = {s.name: s for s in report.steps}
    assert steps["contain a cloud-only user"].status == "ok", report.text()
    assert steps["contain a synced user"].status == "ok", report.text()
    assert "on_premises_synced (Graph answered 400 Request_BadRequest)" in steps["contain a synced user"].detail
    # what really happened: the cloud user was disabled, then re-enabled by the undo; the synced one untouched
    changes = list(rig.run.control.get("/account-changes").json()[changes_before:])
    if enabled_before:
        assert [(c["userId"], c["accountEnabled"]) for c in changes] == [(rig.user.id, False), (rig.user.id, True)]
        assert "undone: enabled again" in steps["contain a cloud-only user"].detail
    assert rig.user.account_enabled == enabled_before
    assert synced.account_enabled and synced.id not in {c["userId"] for c in changes}
    revoked = {r["userId"] for r in rig.run.revocations()[revocations_before:]}
    assert {rig.user.id, synced.id} <= revoked
    # the throwaway stack asked for the containment permission, and is gone
    configured = rig.log.read_text()
    assert "revoke-sessions:containmentPermissions[0]" in configured and "User.EnableDisableAccount.All" in configured
    assert rig.apps_named(lifecycle.display_name) == []
    assert tenant.user(synced.id) is synced


@pytest.mark.slow
def test_a_synced_user_graph_disables_after_all_is_re_enabled_and_the_step_fails(rig: Rig):
    """REVOKE_ACC_SYNCED_USER_ID names a user Graph lets us disable (not synced after all)."""
    wrong = next(
        u
        for u in rig.run.sandbox.tenant.users[400:]
        if u.user_type == "Member" and u.account_enabled and not u.roles and u.id != rig.user.id
    )
    lifecycle = rig.lifecycle(rig.settings(group_id=None, synced_user_id=wrong.id))
    with pytest.raises(AcceptanceError) as err:
        lifecycle.run()
    message = str(err.value)
    assert message.startswith(f"contain a synced user: Graph disabled {wrong.id}")
    assert "the account was re-enabled" in message
    assert wrong.account_enabled
    statuses = {s.name: s.status for s in lifecycle.report.steps}
    assert statuses["contain a synced user"] == "failed"
    assert statuses["pulumi destroy"] == "ok" and statuses["stack rm"] == "ok"
