"""revoke-sessions:federatedCredentials: presets, Graph's rules, and the program under the mock runtime."""

from __future__ import annotations

from typing import Any

import jsonschema
import pytest

from provisioning.config import FederatedCredential, load
from provisioning.errors import StackConfigError
from revoke_ops.bundle import parse_bundle
from revoke_ops.facts import bundle_schema
from tests.provisioning.conftest import Run

TENANT = "5a1db0c5-0000-4000-8000-00000000beef"
GITHUB = "https://token.actions.githubusercontent.com"
AUDIENCE = "api://AzureADTokenExchange"
ORG = "11111111-2222-4333-8444-555555555555"
CONNECTION = "66666666-7777-4888-9999-aaaaaaaaaaaa"


def federated(entries: list[Any], **extra: Any) -> tuple[FederatedCredential, ...]:
    return load({"federatedCredentials": entries, **extra}, azuread={"tenantId": TENANT}).federated_credentials


def problems(entries: Any, **extra: Any) -> str:
    with pytest.raises(StackConfigError) as caught:
        load({"federatedCredentials": entries, **extra}, azuread={"tenantId": TENANT})
    return str(caught.value)


def test_presets_write_each_platforms_issuer_and_subject():
    gh = {"owner": "contoso", "repository": "revoker", "environment": "prod"}
    found = federated(
        [
            {"name": "gh-immutable", "github": {**gh, "ownerId": 1001, "repositoryId": 2002}},
            {"name": "gh-names", "github": gh},
            {"name": "ado", "azureDevOps": {"organizationId": ORG, "serviceConnectionId": CONNECTION}},
            {
                "name": "ado-legacy",
                "azureDevOps": {
                    "organization": "contoso",
                    "project": "ops",
                    "serviceConnection": "rv",
                    "organizationId": ORG,
                },
            },
            {
                "name": "aks",
                "kubernetes": {
                    "issuer": "https://eastus.oic.prod-aks.azure.com/t/c/",
                    "namespace": "ops",
                    "serviceAccount": "rv",
                },
            },
            {"name": "explicit", "issuer": "https://issuer.example", "subject": "job-7", "audience": "api://custom"},
        ]
    )
    by_name = {f.name: (f.issuer, f.subject, f.audience) for f in found}
    assert by_name["gh-immutable"] == (GITHUB, "repo:contoso@1001/revoker@2002:environment:prod", AUDIENCE)
    assert by_name["gh-names"] == (GITHUB, "repo:contoso/revoker:environment:prod", AUDIENCE)
    # The Microsoft Entra issuer of new service connections: the tenant and Azure DevOps' app id as .NET GUID
    # bytes in base64url (the tenant part of 72f988bf-... is v4j5cvGGr0GRqy180BHbRw, as Entra shows it).
    assert by_name["ado"] == (
        f"https://login.microsoftonline.com/{TENANT}/v2.0",
        f"/eid1/c/pub/t/xbAdWgAAAECAAAAAAAC-7w/a/rISbSSETf0KqFyZ8ppdXmA/sc/{ORG}/{CONNECTION}",
        AUDIENCE,
    )
    assert by_name["ado-legacy"] == (f"https://vstoken.dev.azure.com/{ORG}", "sc://contoso/ops/rv", AUDIENCE)
    assert by_name["aks"] == ("https://eastus.oic.prod-aks.azure.com/t/c/", "system:serviceaccount:ops:rv", AUDIENCE)
    assert by_name["explicit"] == ("https://issuer.example", "job-7", "api://custom")


def test_graphs_rules_are_checked_before_anything_is_declared():
    text = problems(
        [
            {"name": "has space", "issuer": "http://issuer.example", "subject": "s"},
            {"name": "x" * 121, "issuer": "https://i.example", "subject": "s"},
            {"name": "two", "issuer": "https://i.example", "subject": "t", "audience": [AUDIENCE, "api://x"]},
            {"name": "gh", "github": {"owner": "contoso"}},
            {"name": "ids", "github": {"owner": "o", "repository": "r", "environment": "e", "ownerId": 5}},
            {"name": "ado", "azureDevOps": {"organizationId": "not-a-guid", "serviceConnectionId": CONNECTION}},
            {"name": "both", "issuer": "https://i.example", "subject": "u", "github": {}},
        ]
    )
    key = "revoke-sessions:federatedCredentials"
    assert f"{key}[0].name must be 1-120 URL-friendly characters" in text
    assert f"{key}[0].issuer must be an https URL" in text  # reported together with the name
    assert f"{key}[1].name must be 1-120" in text
    assert f"{key}[2].audience takes exactly one audience" in text
    assert f"{key}[3].github needs repository, environment" in text
    assert f"{key}[4].github takes ownerId and repositoryId together" in text
    assert f"{key}[5].azureDevOps takes either" in text
    assert f"{key}[6] has issuer, subject; allowed: github, name" in text


def test_names_and_issuer_subject_pairs_are_unique_and_at_most_20():
    one = {"name": "a", "issuer": "https://i.example", "subject": "s"}
    assert "[1].name 'a' is used by more than one federated credential" in problems([one, {**one, "subject": "t"}])
    assert "[1] has the same issuer and subject as 'a'" in problems([one, {**one, "name": "b"}])
    many = [{"name": f"n{i}", "issuer": "https://i.example", "subject": f"s{i}"} for i in range(21)]
    assert "lists 21 credentials; an application holds at most 20" in problems(many)
    assert "must be a list of federated credentials" in problems({"name": "a"})


def test_a_certificate_less_stack_needs_another_way_to_sign_in():
    gh = [{"name": "gh", "github": {"owner": "o", "repository": "r", "environment": "e"}}]
    assert federated(gh, certificates="[]")[0].name == "gh"
    assert "certificates is empty and no federatedCredentials are set" in problems([], certificates="[]")
    cfg = load({"certificates": "[]", "permissionMode": "delegated"}, azuread={"tenantId": TENANT})
    assert cfg.certificates == ()


@pytest.mark.slow
def test_a_stack_with_only_federated_credentials_provisions_them_as_children_of_the_app(program: Any):
    entries = [
        {"name": "github-prod", "github": {"owner": "contoso", "repository": "revoker", "environment": "prod"}},
        {
            "name": "aks-soar",
            "kubernetes": {"issuer": "https://aks.example/oidc", "namespace": "soar", "serviceAccount": "rv"},
        },
    ]
    run: Run = program({"certificates": [], "federatedCredentials": entries})
    assert run.returncode == 0, run.stderr
    assert run.of_type("applicationCertificate") == [] and run.of_type("tls:") == []
    app = run.one("application:Application")
    fics = {r["name"]: r for r in run.of_type("applicationFederatedIdentityCredential")}
    assert set(fics) == {"revoker-fic-github-prod", "revoker-fic-aks-soar"}
    gh = fics["revoker-fic-github-prod"]
    assert gh["inputs"]["applicationId"] == f"/applications/{app['outputs']['objectId']}"
    assert gh["inputs"]["displayName"] == "github-prod"
    assert gh["inputs"]["issuer"] == GITHUB and gh["inputs"]["audiences"] == [AUDIENCE]
    assert gh["inputs"]["subject"] == "repo:contoso/revoker:environment:prod"
    assert gh["options"]["parent"].endswith("$revoke-sessions:provisioning:RevokerApp::revoker")
    # The bundle lists them (no secret involved), validates, and revoke-ops reads it.
    listed = {f["name"]: f for f in run.outputs["federatedCredentials"]}
    assert listed["aks-soar"]["subject"] == "system:serviceaccount:soar:rv"
    assert listed["github-prod"]["credentialId"] == gh["outputs"]["credentialId"]
    assert run.outputs["certificates"] == [] and "privateKeyPem" not in run.outputs
    jsonschema.Draft202012Validator(bundle_schema()).validate(run.outputs)
    parsed = parse_bundle(run.outputs, source="outputs")
    assert parsed.certificates == ()
    assert {(f.name, f.audience) for f in parsed.federated_credentials} == {
        ("github-prod", AUDIENCE),
        ("aks-soar", AUDIENCE),
    }, "revoke-ops --credential github-actions reads each credential's audience from the bundle"


VAULT_URL = "https://contoso-revoke.vault.azure.net/certificates/revoker"


def test_a_key_vault_slot_registers_the_public_part_supplied_beside_the_vault_url(tmp_path: Any):
    from tests.certs import make_certificate

    pem = make_certificate(days=400)[0]
    cfg = load(
        {"certificates": [{"name": "vault", "keyVaultCertificate": VAULT_URL, "pem": pem}]},
        azuread={"tenantId": TENANT},
    )
    (slot,) = cfg.certificates
    assert slot.key_vault_certificate == VAULT_URL and "BEGIN CERTIFICATE" in slot.pem
    with pytest.raises(StackConfigError) as caught:
        load(
            {
                "certificates": [
                    {"name": "a", "keyVaultCertificate": VAULT_URL},
                    {"name": "b", "keyVaultCertificate": "https://example.com/certificates/x", "pem": pem},
                ]
            },
            azuread={"tenantId": TENANT},
        )
    text = str(caught.value)
    assert "certificates[0] with keyVaultCertificate also needs the certificate's public part as pemFile" in text
    assert "certificates[1].keyVaultCertificate 'example.com' is not a Key Vault host" in text


@pytest.mark.slow
def test_a_key_vault_slot_is_in_the_bundle_with_its_url_and_no_key(program: Any):
    from tests.certs import make_certificate

    pem = make_certificate(days=400)[0]
    run: Run = program({"certificates": [{"name": "vault", "keyVaultCertificate": VAULT_URL, "pem": pem}]})
    assert run.returncode == 0, run.stderr
    (entry,) = run.outputs["certificates"]
    assert entry["source"] == "keyVault" and entry["keyVaultCertificate"] == VAULT_URL
    assert "privateKeyPem" not in run.outputs and run.of_type("tls:") == []
    jsonschema.Draft202012Validator(bundle_schema()).validate(run.outputs)
