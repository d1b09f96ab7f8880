"""python -m sandbox apply: the real program, applied through the sandbox's Graph endpoints."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from revoke_ops.bundle import load_bundle
from sandbox import catalog
from sandbox.apply import ApplyError, apply
from sandbox.server import DEPLOYER_ROLES
from tests.provisioning.conftest import ROOT
from tests.sandbox.conftest import Running, claims
from tests.sandbox.test_identity import device_code_token

pytestmark = pytest.mark.slow


def project(tmp_path: Path, stack: str, config: dict[str, Any]) -> Path:
    for name in ("__main__.py", "Pulumi.yaml"):
        shutil.copy(ROOT / name, tmp_path / name)
    (tmp_path / "stacks").mkdir()
    lines = ["config:"] + [f"  {k}: {json.dumps(v)}" for k, v in config.items()]
    (tmp_path / "stacks" / f"Pulumi.{stack}.yaml").write_text("\n".join(lines) + "\n")
    return tmp_path


def bundle_token(run: Running, bundle: dict[str, Any]) -> dict[str, Any]:
    from azure.identity import CertificateCredential

    credential = CertificateCredential(
        bundle["tenantId"],
        bundle["clientId"],
        certificate_data=(bundle["privateKeyPem"] + bundle["certificatePem"]).encode(),
        authority=bundle["authorityHost"],
        disable_instance_discovery=True,
    )
    return claims(credential.get_token(bundle["graphScope"]).token)


def test_sandbox_stack_applies_to_a_working_bundle(sandbox: Running, tmp_path: Path):
    out = tmp_path / "bundle.json"
    outputs = apply(Path(sandbox.sandbox.state_dir), "sandbox", out)
    assert oct(out.stat().st_mode & 0o777) == "0o600"
    bundle = load_bundle(out, allow_custom_cloud=True)  # validates against the committed schema
    assert bundle.graph_endpoint == sandbox.info["graphEndpoint"]
    token = bundle_token(sandbox, outputs)
    assert sorted(token["roles"]) == sorted(outputs["applicationPermissions"])
    # the key credential the program registered is the one the bundle's key signs with
    app = sandbox.sandbox.tenant.app_by_app_id(outputs["clientId"])
    assert app is not None
    assert [kc["keyId"] for kc in app.key_credentials] == [c["keyId"] for c in outputs["certificates"]]


@pytest.mark.parametrize("mode", ["application", "delegated", "both"])
def test_each_permission_mode_yields_the_right_token_claims(sandbox: Running, tmp_path: Path, mode: str):
    stack = f"mode-{mode}"
    config = {
        "azuread:tenantId": sandbox.info["tenantId"],
        "revoke-sessions:displayName": f"revoker {mode}",
        "revoke-sessions:permissionMode": mode,
        "revoke-sessions:readPermissions": ["User.Read.All"],
    }
    outputs = apply(Path(sandbox.sandbox.state_dir), stack, tmp_path / "b.json", project(tmp_path, stack, config))
    token = bundle_token(sandbox, outputs)
    if mode == "delegated":
        assert "roles" not in token, "delegated mode must not consent application permissions"
    else:
        assert sorted(token["roles"]) == ["User.Read.All", "User.RevokeSessions.All"]
    if mode != "application":
        user = claims(device_code_token(sandbox, outputs["clientId"], "admin.helpdesk@contoso-sandbox.onmicrosoft.com"))
        assert user["scp"] == "User.Read.All User.RevokeSessions.All"


def test_missing_consent_shows_up_as_403_not_papered_over(sandbox: Running, tmp_path: Path):
    stack = "no-read"
    config = {
        "azuread:tenantId": sandbox.info["tenantId"],
        "revoke-sessions:displayName": "revoker minimal",
        "revoke-sessions:readPermissions": [],
    }
    outputs = apply(Path(sandbox.sandbox.state_dir), stack, tmp_path / "b.json", project(tmp_path, stack, config))
    token = bundle_token(sandbox, outputs)
    assert token["roles"] == ["User.RevokeSessions.All"]
    from azure.identity import CertificateCredential

    credential = CertificateCredential(
        outputs["tenantId"],
        outputs["clientId"],
        certificate_data=(outputs["privateKeyPem"] + outputs["certificatePem"]).encode(),
        authority=outputs["authorityHost"],
        disable_instance_discovery=True,
    )
    raw = credential.get_token(outputs["graphScope"]).token
    assert sandbox.http.get("/users", headers={"Authorization": f"Bearer {raw}"}).status_code == 403


def test_apply_twice_replaces_the_previous_apply(sandbox: Running, tmp_path: Path):
    stack = "twice"
    config = {"azuread:tenantId": sandbox.info["tenantId"], "revoke-sessions:displayName": "revoker twice"}
    directory = project(tmp_path, stack, config)
    replaced: list[str] = []
    first = apply(Path(sandbox.sandbox.state_dir), stack, tmp_path / "1.json", directory, replaced=replaced)
    assert replaced == []
    second = apply(Path(sandbox.sandbox.state_dir), stack, tmp_path / "2.json", directory, replaced=replaced)
    assert replaced == [first["applicationObjectId"]], "the caller is told the previous app was deleted"
    tenant = sandbox.sandbox.tenant
    assert tenant.app_by_app_id(first["clientId"]) is None
    assert tenant.sp_for_app(first["clientId"]) is None
    assert tenant.app_by_app_id(second["clientId"]) is not None
    assert [a.display_name for a in tenant.applications.values()].count("revoker twice") == 1


@pytest.mark.parametrize(
    ("setting", "message"),
    [
        ({"revoke-sessions:permissionMode": "app"}, "permissionMode must be one of application, delegated, both"),
        ({"revoke-sessions:readPermission": "User.Read.All"}, "did you mean revoke-sessions:readPermissions"),
        ({"revoke-sessions:certificates": '[{"slot": "a", "source": "supplied"}]'}, "certificates"),
    ],
)
def test_bad_stack_config_is_refused_before_the_tenant_changes(
    sandbox: Running, tmp_path: Path, setting: dict[str, str], message: str
):
    tenant = sandbox.sandbox.tenant

    def directory_objects() -> tuple[int, ...]:
        return len(tenant.applications), len(tenant.service_principals), len(tenant.assignments), len(tenant.grants)

    before = directory_objects()
    stack = "bad"
    config = {"azuread:tenantId": sandbox.info["tenantId"], **setting}
    with pytest.raises(ApplyError, match=message):
        apply(Path(sandbox.sandbox.state_dir), stack, tmp_path / "b.json", project(tmp_path, stack, config))
    assert directory_objects() == before, "nothing was created in the tenant"
    assert not (tmp_path / "b.json").exists(), "no bundle for a stack that was not applied"


def test_every_problem_of_a_bad_stack_config_is_shown(sandbox: Running, tmp_path: Path):
    stack = "twobad"
    config = {
        "azuread:tenantId": sandbox.info["tenantId"],
        "revoke-sessions:permissionMode": "app",
        "revoke-sessions:readPermission": "User.Read.All",
    }
    with pytest.raises(ApplyError) as info:
        apply(Path(sandbox.sandbox.state_dir), stack, tmp_path / "b.json", project(tmp_path, stack, config))
    assert "permissionMode must be one of application, delegated, both" in str(info.value)
    assert "did you mean revoke-sessions:readPermissions" in str(info.value)


def test_apply_without_a_running_sandbox(tmp_path: Path):
    with pytest.raises(ApplyError, match="no running sandbox in"):
        apply(tmp_path, "sandbox", tmp_path / "b.json")


def test_catalog_agrees_with_the_shared_facts():
    from revoke_ops.facts import GRAPH_APP_ID, READ_PERMISSIONS, REVOKE_PERMISSION

    assert catalog.GRAPH_APP_ID == GRAPH_APP_ID
    for fact in (REVOKE_PERMISSION, *READ_PERMISSIONS.values()):
        emulated = catalog.BY_NAME[fact.name]
        assert (emulated.role_id, emulated.scope_id) == (fact.role_id, fact.scope_id), fact.name


def test_serve_command_writes_sandbox_json_and_stops_cleanly(tmp_path: Path):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "sandbox", "serve", "--state-dir", str(tmp_path), "--users", "120", "--seed", "3"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        cwd=ROOT,
    )
    try:
        assert proc.stdout is not None
        lines = []
        for line in proc.stdout:
            lines.append(line)
            if line.startswith("}"):
                break
        printed = json.loads("".join(lines))
        written = json.loads((tmp_path / "sandbox.json").read_text())
        assert "controlToken" not in printed, "the control token is only in sandbox.json (0600)"
        assert printed == {k: v for k, v in written.items() if k != "controlToken"}
        assert len(written["controlToken"]) >= 40
        assert written["tenantId"] == "5a1db0c5-0000-4000-8000-00000000beef"
        assert set(written) >= {
            "tenantId",
            "authorityHost",
            "graphEndpoint",
            "graphScope",
            "caBundle",
            "controlEndpoint",
            "sampleUsers",
        }
        assert all(set(u) == {"id", "userPrincipalName"} for u in written["sampleUsers"])
        assert oct((tmp_path / "sandbox.json").stat().st_mode & 0o777) == "0o600"
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
        assert not (tmp_path / "sandbox.json").exists()
        assert not (tmp_path / "server.pem").exists() and not (tmp_path / "deployer.pem").exists()
    finally:
        if proc.poll() is None:
            proc.kill()


def test_scripts_sandbox_serves_and_applies_from_any_directory_with_the_callers_relative_paths(tmp_path: Path):
    script = ROOT / "scripts" / "sandbox"
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"} | {"PYTHON": sys.executable}
    serve = [str(script), "serve", "--state-dir", "state", "--users", "60"]
    proc = subprocess.Popen(serve, cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        for _ in range(600):
            if (tmp_path / "state" / "sandbox.json").exists() or proc.poll() is not None:
                break
            time.sleep(0.1)
        assert proc.poll() is None, proc.stderr.read().decode() if proc.stderr else "the sandbox exited"
        apply_ = [str(script), "apply", "--state-dir", "state", "--out", "bundle.json"]
        applied = subprocess.run(
            apply_, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300, check=False
        )
        assert applied.returncode == 0, applied.stderr
        assert "bundle written to" in applied.stderr and str(tmp_path / "bundle.json") in applied.stderr
        bundle = load_bundle(tmp_path / "bundle.json", allow_custom_cloud=True)
        assert bundle.tenant_id == json.loads((tmp_path / "state" / "sandbox.json").read_text())["tenantId"]
        assert (tmp_path / "bundle.json").stat().st_mode & 0o777 == 0o600
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
    assert not (tmp_path / "state" / "sandbox.json").exists()


def test_seeding_is_deterministic():
    from sandbox.seed import seed
    from sandbox.tenant import Tenant

    one = seed(Tenant("t", seed=5), users=300)
    two = seed(Tenant("t", seed=5), users=300)
    assert [(u.id, u.user_principal_name) for u in one.users] == [(u.id, u.user_principal_name) for u in two.users]
    assert [u.id for u in seed(Tenant("t", seed=6), users=300).users] != [u.id for u in one.users]
    kinds = {(u.user_type, "#EXT#" in u.user_principal_name) for u in one.users}
    assert kinds >= {("Member", False), ("Guest", True), ("Member", True)}


def test_the_bulk_group_has_n_transitive_members_half_of_them_nested():
    from sandbox.seed import seed
    from sandbox.tenant import Tenant

    tenant = seed(Tenant("t"), users=3000, groups=4, group_size=100, bulk_group=1000)
    group = tenant.group_named("incident-bulk")
    members = tenant.transitive_members(group.id)
    users = [m for m in members if m in tenant.users_by_id]
    assert len(users) == len(set(users)) == 1000
    direct_users = [m for m in group.members if m in tenant.users_by_id]
    assert len(direct_users) == 500, "the other half come through nested groups"


def test_the_deployer_holds_exactly_the_least_set(sandbox: Running):
    tenant = sandbox.sandbox.tenant
    deployer = tenant.sp_for_app(sandbox.info["deployer"]["clientId"])
    assert tenant.granted_roles(deployer.id) == sorted(DEPLOYER_ROLES)
    # ... and that set is the one docs/pipelines.md tells a deployer to hold (issue 9 A11).
    text = (ROOT / "docs" / "pipelines.md").read_text()
    least = text.split("**Least set, tested:**", 1)[1].split("(", 1)[0]
    assert sorted(p.strip(" `,\n") for p in least.replace("\n", " ").split(",")) == sorted(DEPLOYER_ROLES)


@pytest.mark.parametrize("permission", DEPLOYER_ROLES)
def test_apply_without_one_deployer_permission_fails_naming_it(sandbox: Running, tmp_path: Path, permission: str):
    tenant = sandbox.sandbox.tenant
    deployer = tenant.sp_for_app(sandbox.info["deployer"]["clientId"])
    role_id = catalog.BY_NAME[permission].role_id
    removed = next(a for a in tenant.assignments.values() if a.principal_id == deployer.id and a.app_role_id == role_id)
    sandbox.sandbox.call(tenant.assignments.pop, removed.id)
    stack = "least"
    config = {
        "azuread:tenantId": sandbox.info["tenantId"],
        "revoke-sessions:displayName": "revoker least",
        "revoke-sessions:permissionMode": "both",  # delegated too: a permission grant is made
    }
    try:
        with pytest.raises(ApplyError) as info:
            apply(Path(sandbox.sandbox.state_dir), stack, tmp_path / "l.json", project(tmp_path, stack, config))
    finally:
        sandbox.sandbox.call(tenant.assignments.__setitem__, removed.id, removed)
    assert "-> 403" in str(info.value) and permission in str(info.value).split("the deployer needs", 1)[1]
