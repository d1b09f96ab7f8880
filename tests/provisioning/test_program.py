"""The real __main__.py under Pulumi's mock runtime (preview=False), one fresh process per run."""

from __future__ import annotations

import json
import re
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from provisioning.mocks import MemoryDirectory
from revoke_ops.bundle import parse_bundle
from revoke_ops.facts import GRAPH_APP_ID, bundle_schema, rfc3339, utc_seconds
from tests.certs import make_certificate, sha1_thumbprint
from tests.provisioning.conftest import ROOT, Run, run_mockrun

GRAPH_SP = MemoryDirectory().graph_sp_id
CALLER = MemoryDirectory().caller_object_id
REVOKE_ROLE = "77f3a031-c388-4f99-b373-dc68676a979e"
REVOKE_SCOPE = "fc30e98b-8810-4501-81f5-c20a3196387b"
USER_READ_ROLE = "df021288-bdef-4463-88db-98f22de89214"
USER_READ_SCOPE = "a154be20-db9c-4678-8ab7-66f6cc099a59"
GROUP_READ_ROLE = "98830695-27a2-44f7-8c18-0c3ebc9698f6"
ROLE_READ_ROLE = "483bed4a-2ad3-4361-a73b-c83ccdbdc53c"
OPS_GROUP = "0f1e2d3c-4b5a-4697-8877-665544332211"
SOAR_MI = "9a8b7c6d-5e4f-4a3b-9c2d-1e0f9a8b7c6d"

pytestmark = pytest.mark.slow

Program = Callable[..., Run]


def ok(run: Run) -> Run:
    assert run.returncode == 0, run.stderr
    return run


def resource_access(run: Run) -> set[tuple[str, str]]:
    (rra,) = run.one("application:Application")["inputs"]["requiredResourceAccesses"]
    assert rra["resourceAppId"] == GRAPH_APP_ID
    return {(a["id"], a["type"]) for a in rra["resourceAccesses"]}


def consented_roles(run: Run, principal: str) -> set[str]:
    return {
        r["inputs"]["appRoleId"]
        for r in run.of_type("appRoleAssignment:AppRoleAssignment")
        if r["inputs"]["principalObjectId"] == principal and r["inputs"]["resourceObjectId"] == GRAPH_SP
    }


def test_application_mode_consents_exactly_the_app_roles(program: Program):
    run = ok(program({"permissionMode": "application"}))
    sp_id = run.one("servicePrincipal:ServicePrincipal")["outputs"]["objectId"]
    assert resource_access(run) == {(REVOKE_ROLE, "Role"), (USER_READ_ROLE, "Role")}
    assert consented_roles(run, sp_id) == {REVOKE_ROLE, USER_READ_ROLE}
    assert len(run.of_type("appRoleAssignment:AppRoleAssignment")) == 2
    assert run.of_type("servicePrincipalDelegatedPermissionGrant") == []
    app = run.one("application:Application")["inputs"]
    assert app["signInAudience"] == "AzureADMyOrg"
    assert app["preventDuplicateNames"] is True
    assert not app.get("fallbackPublicClientEnabled")
    assert "publicClient" not in app
    assert run.outputs["applicationPermissions"] == ["User.RevokeSessions.All", "User.Read.All"]
    assert run.outputs["delegatedPermissions"] == []


def test_delegated_mode_grants_scope_names_and_is_a_public_client(program: Program):
    run = ok(program({"permissionMode": "delegated"}))
    assert resource_access(run) == {(REVOKE_SCOPE, "Scope"), (USER_READ_SCOPE, "Scope")}
    assert run.of_type("appRoleAssignment:AppRoleAssignment") == []
    grant = run.one("servicePrincipalDelegatedPermissionGrant")["inputs"]
    # claim values are scope NAMES, not ids
    assert grant["claimValues"] == ["User.RevokeSessions.All", "User.Read.All"]
    assert grant["resourceServicePrincipalObjectId"] == GRAPH_SP
    assert grant["servicePrincipalObjectId"] == run.one("servicePrincipal:ServicePrincipal")["outputs"]["objectId"]
    assert "userObjectId" not in grant, "an empty delegatedConsentUsers must consent for all principals"
    app = run.one("application:Application")["inputs"]
    assert app["fallbackPublicClientEnabled"] is True
    assert app["publicClient"]["redirectUris"] == ["http://localhost"]


def test_both_modes_with_every_read_permission(program: Program):
    perms = ["User.Read.All", "GroupMember.Read.All", "RoleManagement.Read.Directory"]
    run = ok(program({"permissionMode": "both", "readPermissions": perms}))
    sp_id = run.one("servicePrincipal:ServicePrincipal")["outputs"]["objectId"]
    assert consented_roles(run, sp_id) == {REVOKE_ROLE, USER_READ_ROLE, GROUP_READ_ROLE, ROLE_READ_ROLE}
    roles = {i for i, t in resource_access(run) if t == "Role"}
    scopes = {i for i, t in resource_access(run) if t == "Scope"}
    assert roles == {REVOKE_ROLE, USER_READ_ROLE, GROUP_READ_ROLE, ROLE_READ_ROLE}
    assert REVOKE_SCOPE in scopes
    assert len(scopes) == 4
    assert run.one("servicePrincipalDelegatedPermissionGrant")["inputs"]["claimValues"] == [
        "User.RevokeSessions.All",
        *perms,
    ]


def test_no_read_permissions_is_the_minimal_footprint(program: Program):
    run = ok(program({"permissionMode": "both", "readPermissions": []}))
    assert resource_access(run) == {(REVOKE_ROLE, "Role"), (REVOKE_SCOPE, "Scope")}
    assert run.one("servicePrincipalDelegatedPermissionGrant")["inputs"]["claimValues"] == ["User.RevokeSessions.All"]


def test_grant_to_principals_and_operators_group(program: Program):
    run = ok(program({"permissionMode": "both", "grantToPrincipals": [SOAR_MI], "operatorsGroup": OPS_GROUP}))
    assert consented_roles(run, SOAR_MI) == {REVOKE_ROLE, USER_READ_ROLE}
    sp = run.one("servicePrincipal:ServicePrincipal")
    assert sp["inputs"]["appRoleAssignmentRequired"] is True
    (operators,) = [
        r["inputs"]
        for r in run.of_type("appRoleAssignment:AppRoleAssignment")
        if r["inputs"]["principalObjectId"] == OPS_GROUP
    ]
    assert operators["resourceObjectId"] == sp["outputs"]["objectId"]
    assert operators["appRoleId"] == "00000000-0000-0000-0000-000000000000"


def test_assignment_not_required_without_operators_group(program: Program):
    run = ok(program({"permissionMode": "both"}))
    assert run.one("servicePrincipal:ServicePrincipal")["inputs"]["appRoleAssignmentRequired"] is False


def test_delegated_consent_for_listed_users_only(program: Program):
    users = ["7d6c5b4a-3928-4716-a5b4-c3d2e1f0a9b8", "1a2b3c4d-5e6f-4a7b-8c9d-0e1f2a3b4c5d"]
    run = ok(program({"permissionMode": "delegated", "delegatedConsentUsers": users}))
    grants = run.of_type("servicePrincipalDelegatedPermissionGrant")
    assert sorted(g["inputs"]["userObjectId"] for g in grants) == sorted(users)


def test_owners_default_to_the_deployer_and_protect_is_applied(program: Program):
    run = ok(program({"protect": True}))
    app, sp = run.one("application:Application"), run.one("servicePrincipal:ServicePrincipal")
    assert app["inputs"]["owners"] == [CALLER]
    assert sp["inputs"]["owners"] == [CALLER]
    assert app["options"]["protect"]
    assert sp["options"]["protect"]
    owner = "aaaaaaaa-0000-4000-8000-000000000001"
    assert ok(program({"owners": [owner]})).one("application:Application")["inputs"]["owners"] == [owner]
    assert not ok(program({"permissionMode": "application"})).one("application:Application")["options"]["protect"]


def test_delegated_mode_without_operators_group_warns_the_deployer(program: Program):
    run = ok(program({"permissionMode": "delegated"}))
    assert "every user in the tenant can sign in to the app and obtain the delegated scopes" in run.stderr
    assert "operatorsGroup is not set" not in ok(program({"permissionMode": "application"})).stderr


def test_every_resource_is_a_child_of_the_component(program: Program):
    run = ok(program({"permissionMode": "both"}))
    (component,) = run.of_type("provisioning:RevokerApp")
    assert component["type"] == "revoke-sessions:provisioning:RevokerApp"
    for resource in run.resources:
        if resource is not component:
            assert resource["options"]["parent"].endswith("$revoke-sessions:provisioning:RevokerApp::revoker"), (
                resource["name"]
            )


def test_generated_certificate_key_is_secret_and_matches(program: Program):
    run = ok(program({"certificates": [{"name": "primary", "rsaBits": 3072, "validityDays": 90}]}))
    assert run.one("tls:index/privateKey:PrivateKey")["inputs"]["rsaBits"] == 3072
    cert_res = run.one("tls:index/selfSignedCert:SelfSignedCert")
    assert cert_res["inputs"]["validityPeriodHours"] == 90 * 24
    app_cert = run.one("applicationCertificate:ApplicationCertificate")
    assert app_cert["inputs"]["value"] == cert_res["outputs"]["certPem"]
    assert app_cert["inputs"]["applicationId"] == "/applications/" + run.outputs["applicationObjectId"]
    assert run.secret_outputs == ["privateKeyPem"]
    key = serialization.load_pem_private_key(run.outputs["privateKeyPem"].encode(), password=None)
    cert = x509.load_pem_x509_certificate(run.outputs["certificatePem"].encode())
    assert key.public_key().public_numbers() == cert.public_key().public_numbers()
    (entry,) = run.outputs["certificates"]
    assert entry["thumbprint"] == sha1_thumbprint(run.outputs["certificatePem"])
    assert entry["keyId"] == app_cert["outputs"]["keyId"]
    assert entry["notAfter"] == utc_seconds(cert_res["outputs"]["validityEndTime"])


def test_provider_times_in_go_format_reach_bundle_and_end_date_as_utc_whole_seconds(program: Program):
    run = ok(program({"certificates": [{"name": "primary", "rsaBits": 2048, "validityDays": 30}]}))
    end = run.one("tls:index/selfSignedCert:SelfSignedCert")["outputs"]["validityEndTime"]
    # The mocks answer as pulumi-tls does: Go's MarshalText, a local offset and a fraction.
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{1,9})?[+-]\d\d:\d\d", end), end
    app_cert = run.one("applicationCertificate:ApplicationCertificate")
    # end_date forces a new credential and azuread reads it back from Graph as UTC whole seconds:
    # what the program sends must equal what is read back, or every `up` replaces the certificate.
    assert app_cert["inputs"]["endDate"] == app_cert["outputs"]["endDate"] == utc_seconds(end)
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", app_cert["inputs"]["endDate"])
    cert = x509.load_pem_x509_certificate(run.outputs["certificatePem"].encode())
    assert app_cert["inputs"]["endDate"] == rfc3339(cert.not_valid_after_utc)
    # `revoke-ops bundle check` accepts the bundle exactly as `pulumi stack output --json` prints it.
    bundle = parse_bundle(json.loads(json.dumps(run.outputs)))
    assert [c.not_after for c in bundle.certificates] == [app_cert["inputs"]["endDate"]]


def test_no_configured_tags_read_back_different(program: Program):
    # Graph returns a service principal's tags merged with its application's: any tags set on the
    # service principal would differ from what is read back, a diff on every run.
    run = ok(program({"permissionMode": "both"}))
    for resource in run.resources:
        if "tags" in resource["inputs"]:
            assert resource["outputs"]["tags"] == resource["inputs"]["tags"], resource["name"]
    sp = run.one("servicePrincipal:ServicePrincipal")
    assert "revoke-sessions" in sp["outputs"]["tags"]  # inherited from the application


def test_supplied_certificate_keeps_the_private_key_out_of_state(program: Program):
    cert_pem, key_pem = make_certificate(days=200)
    run = ok(program({"certificates": [{"name": "hsm", "pem": cert_pem}]}))
    assert run.of_type("tls:") == []
    assert "privateKeyPem" not in run.outputs
    assert "certificatePem" not in run.outputs
    app_cert = run.one("applicationCertificate:ApplicationCertificate")
    assert app_cert["inputs"]["value"].strip() == cert_pem.strip()
    assert app_cert["inputs"]["endDate"] == rfc3339(
        x509.load_pem_x509_certificate(cert_pem.encode()).not_valid_after_utc
    )
    (entry,) = run.outputs["certificates"]
    assert entry == {**entry, "slot": "hsm", "source": "provided", "thumbprint": sha1_thumbprint(cert_pem)}
    body = "".join(key_pem.splitlines()[1:-1])
    assert body[:40] not in json.dumps(run.resources) + json.dumps(run.outputs)


def test_rotation_two_slots_are_registered_at_once(program: Program):
    cert_pem, _ = make_certificate()
    slots = [{"name": "old", "pem": cert_pem}, {"name": "new", "rsaBits": 2048, "validityDays": 30}]
    run = ok(program({"certificates": slots}))
    creds = run.of_type("applicationCertificate:ApplicationCertificate")
    assert {c["name"] for c in creds} == {"revoker-old", "revoker-new"}
    assert len({c["inputs"]["applicationId"] for c in creds}) == 1
    assert len({c["outputs"]["keyId"] for c in creds}) == 2
    assert [c["slot"] for c in run.outputs["certificates"]] == ["old", "new"]
    # the bundle's key is the generated (new) slot's
    assert run.outputs["certificatePem"] == run.one("tls:index/selfSignedCert:SelfSignedCert")["outputs"]["certPem"]


def test_invalid_config_fails_before_any_resource_with_one_message(program: Program):
    run = program({"permissionMode": "app"})
    assert run.returncode != 0
    assert "revoke-sessions:permissionMode must be one of application, delegated, both (got 'app')" in run.stderr
    assert "Traceback" not in run.stderr


def stacks() -> list[str]:
    return sorted(p.name.removeprefix("Pulumi.").removesuffix(".yaml") for p in (ROOT / "stacks").glob("Pulumi.*.yaml"))


@pytest.mark.parametrize("stack", stacks())
def test_committed_stack_runs_and_exports_a_valid_bundle(stack: str, tmp_path: Path):
    # A copy of the project, so supplied certificates (pemFile) can be generated fresh for the run.
    for name in ("__main__.py", "Pulumi.yaml"):
        shutil.copy(ROOT / name, tmp_path / name)
    shutil.copytree(ROOT / "stacks", tmp_path / "stacks")
    text = (ROOT / "stacks" / f"Pulumi.{stack}.yaml").read_text()
    for line in text.splitlines():
        if "pemFile:" in line:
            path = tmp_path / line.split("pemFile:", 1)[1].strip()
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(make_certificate(days=400)[0])
    run = run_mockrun(stack=stack, stack_file=True, project_dir=tmp_path)
    assert run.returncode == 0, run.stderr
    jsonschema.Draft202012Validator(bundle_schema()).validate(run.outputs)
    assert ("privateKeyPem" in run.outputs) == ("privateKeyPem" in run.secret_outputs)


def test_the_example_stacks_differ_in_mode_certificate_source_and_cloud():
    import yaml

    examples = [
        yaml.safe_load((ROOT / "stacks" / f"Pulumi.{s}.yaml").read_text())["config"] for s in stacks() if s != "sandbox"
    ]
    assert len(examples) >= 2
    modes = {c.get("revoke-sessions:permissionMode", "application") for c in examples}
    clouds = {c.get("revoke-sessions:cloud", "public") for c in examples}
    sources = {("pem" in json.dumps(c.get("revoke-sessions:certificates"))) for c in examples}
    assert len(modes) > 1
    assert len(clouds) > 1
    assert sources == {True, False}


def test_sandbox_stack_is_the_custom_cloud_with_a_fixed_tenant():
    import yaml

    cfg: dict[str, Any] = yaml.safe_load((ROOT / "stacks" / "Pulumi.sandbox.yaml").read_text())["config"]
    assert cfg["revoke-sessions:cloud"] == "custom"
    assert cfg["azuread:tenantId"] == "5a1db0c5-0000-4000-8000-00000000beef"


GRANT_TYPES = ("appRoleAssignment:AppRoleAssignment", "servicePrincipalDelegatedPermissionGrant")
PRINCIPALS = [f"{n}a8b7c6d-5e4f-4a3b-9c2d-1e0f9a8b7c6d" for n in "123"]
USERS = [f"{n}e2d3c4b-0000-4000-8000-00000000000{n}" for n in "123"]


def grants(run: Run) -> list[dict[str, Any]]:
    return [r for r in run.resources if any(t in r["type"] for t in GRANT_TYPES)]


def plan(before: list[dict[str, Any]], after: list[dict[str, Any]]) -> dict[str, list[str]]:
    """What `pulumi up` does going from state ``before`` to program ``after`` (URN, else alias).

    Every input of a grant forces a new one, and Pulumi creates the new grant before it deletes
    the old: for the same principal that is a duplicate, which Graph refuses with 409.
    """
    state = {r["name"]: r for r in before}
    matched: set[str] = set()
    result: dict[str, list[str]] = {"create": [], "replace": [], "delete": []}
    for resource in after:
        names = [resource["name"], *resource["options"].get("aliases", [])]
        prior = next((state[n] for n in names if n in state and n not in matched), None)
        if prior is None:
            result["create"].append(resource["name"])
            continue
        matched.add(prior["name"])
        # principalObjectId of the app's own grants is the new service principal's id in each run.
        keys = ["appRoleId", "userObjectId", "claimValues"]
        keys += ["principalObjectId"] if resource["inputs"].get("principalObjectId") in PRINCIPALS else []
        if any(prior["inputs"].get(k) != resource["inputs"].get(k) for k in keys):
            result["replace"].append(resource["name"])
    result["delete"] = sorted(set(state) - matched)
    return result


def test_reordering_or_removing_principals_and_users_replaces_no_grant(program: Program):
    first = ok(program({"permissionMode": "both", "grantToPrincipals": PRINCIPALS, "delegatedConsentUsers": USERS}))
    reordered = [PRINCIPALS[2], PRINCIPALS[0]], [USERS[2], USERS[0]]
    second = ok(
        program({"permissionMode": "both", "grantToPrincipals": reordered[0], "delegatedConsentUsers": reordered[1]})
    )
    changes = plan(grants(first), grants(second))
    assert changes["create"] == [] and changes["replace"] == [], changes
    # Only what was removed goes: the second principal's two roles and the second user's grant.
    removed = [
        r for r in grants(first) if PRINCIPALS[1] in json.dumps(r["inputs"]) or USERS[1] in json.dumps(r["inputs"])
    ]
    assert len(removed) == 3
    assert changes["delete"] == sorted(r["name"] for r in removed)


def test_stack_deployed_with_position_names_is_renamed_in_place(program: Program):
    config = {"permissionMode": "both", "grantToPrincipals": PRINCIPALS, "delegatedConsentUsers": USERS}
    run = ok(program(config))
    # The state an earlier release left: grants named by their position in the lists.
    old_state = []
    for resource in grants(run):
        name, inputs = resource["name"], resource["inputs"]
        for i, pid in enumerate(PRINCIPALS):
            name = name.replace(f"-{pid}-", f"-principal{i + 1}-")
        if inputs.get("userObjectId"):
            name = f"revoker-delegated-user{USERS.index(inputs['userObjectId']) + 1}"
        old_state.append({**resource, "name": name})
    assert {r["name"] for r in old_state} >= {"revoker-principal2-User.Read.All", "revoker-delegated-user3"}
    assert plan(old_state, grants(run)) == {"create": [], "replace": [], "delete": []}
