"""revoke-ops --credential github-actions, end to end: a GitHub Actions ID-token service stand-in on
127.0.0.1 (the sandbox's, backed by its own OIDC issuer) -> azure-identity's ClientAssertionCredential
-> the sandbox's token endpoint matching the app's federated credential -> Graph. No certificate and
no secret anywhere."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from revoke_ops.bundle import load_bundle
from revoke_ops.credentials import github_actions_identity
from revoke_ops.credentials.federated import ActionsTokenSource
from revoke_ops.errors import AuthError, InputError
from tests.revoke_ops.conftest import FULL, Ops, write_bundle
from tests.sandbox.conftest import Running

AUDIENCE = "api://AzureADTokenExchange"
SUBJECT = "repo:contoso@1001/revoker@2002:environment:contoso-prod"


def _keyless_ops(
    sandbox: Running, tmp_path: Path, name: str, subject: str = SUBJECT, audience: str = AUDIENCE
) -> tuple[Ops, str]:
    """A revoker app whose only usable credential is a federated one for the sandbox issuer ``name``."""
    creds = sandbox.app(name, app_roles=FULL)
    issuer = sandbox.sandbox.call(sandbox.sandbox.federation.issuer, name).url
    fic = {"id": name, "name": "github-contoso-prod", "issuer": issuer, "subject": subject, "audiences": [audience]}
    sandbox.sandbox.call(creds.app.federated_credentials.append, fic | {"description": None})
    return Ops(sandbox, creds, write_bundle(sandbox, creds, tmp_path / "bundle.json", with_key=False)), name


def _actions_run(sandbox: Running, issuer: str, subject: str) -> dict[str, str]:
    run = sandbox.control.post(f"/issuers/{issuer}/actions-run", json={"subject": subject})
    run.raise_for_status()
    body: dict[str, str] = run.json()
    return {k: v for k, v in body.items() if k.startswith("ACTIONS_")}


def test_github_actions_job_revokes_with_the_federated_credential(sandbox: Running, tmp_path: Path):
    ops, issuer = _keyless_ops(sandbox, tmp_path, "gha-ok")
    env = _actions_run(sandbox, issuer, SUBJECT)
    target = ops.user("operator")
    before = len(ops.run.revocations())
    journal = tmp_path / "j.jsonl"
    result = ops.cli(
        "revoke", "--credential", "github-actions", "--user", target.id, "--yes", "--journal", str(journal), env=env
    )
    assert result.returncode == 0, result.stderr
    assert ops.revoked_ids(before) == [target.id]
    run = next(r for r in sandbox.sandbox.federation.runs.values() if r.request_token in env.values())
    assert run.requests and set(run.requests) == {AUDIENCE}, "the token was asked for Entra's exchange audience"
    header = json.loads(journal.read_text().splitlines()[0])
    assert header["clientId"] == ops.creds.client_id
    # neither the run's request token nor any JWT reaches the output or the journal
    for text in (result.stdout, result.stderr, journal.read_text()):
        assert env["ACTIONS_ID_TOKEN_REQUEST_TOKEN"] not in text
        assert "eyJ" not in text


@pytest.mark.parametrize(
    ("case", "code", "words"),
    [
        ("subject", "AADSTS700213", "environment"),
        ("issuer", "AADSTS700211", "federatedCredentials"),
    ],
)
def test_wrong_subject_or_issuer_fails_with_entras_code_and_what_to_do(
    sandbox: Running, tmp_path: Path, case: str, code: str, words: str
):
    ops, issuer = _keyless_ops(sandbox, tmp_path, f"gha-{case}")
    if case == "subject":
        env = _actions_run(sandbox, issuer, "repo:contoso@1001/revoker@2002:ref:refs/heads/main")
    else:
        env = _actions_run(sandbox, f"gha-{case}-elsewhere", SUBJECT)
    before = len(ops.run.revocations())
    result = ops.cli("revoke", "--credential", "github-actions", "--user", ops.user("operator").id, "--yes", env=env)
    assert result.returncode == 3, result.stderr
    assert code in result.stderr and "what to do" in result.stderr and words in result.stderr
    assert len(ops.run.revocations()) == before


def test_wrong_audience_is_aadsts700212(sandbox: Running, tmp_path: Path):
    """A token asked for another audience (GitHub's default is the owner's URL) is refused."""
    ops, issuer = _keyless_ops(sandbox, tmp_path, "gha-audience")
    env = _actions_run(sandbox, issuer, SUBJECT)
    bundle = load_bundle(ops.bundle, allow_custom_cloud=True)
    identity = github_actions_identity(bundle=bundle, environ=env, audience="https://github.com/contoso")
    with pytest.raises(AuthError) as caught:
        asyncio.run(identity.token())
    asyncio.run(identity.close())
    assert caught.value.code == "AADSTS700212" and "api://AzureADTokenExchange" in str(caught.value)


def test_a_credential_with_its_own_audience_gets_a_token_for_it(sandbox: Running, tmp_path: Path):
    """Graph lets a federated credential name an audience other than api://AzureADTokenExchange (the
    stack's `audience` key; federatedIdentityCredential resource type). revoke-ops asks GitHub for the
    audience the bundle lists for this job's issuer and subject; with a bundle that does not list it
    (exported before the credential existed) Entra's AADSTS700212 comes with what to do."""
    custom = "api://revoker-contoso-prod"
    ops, issuer = _keyless_ops(sandbox, tmp_path, "gha-own-audience", audience=custom)
    env = _actions_run(sandbox, issuer, SUBJECT)
    target = ops.user("operator")
    before = len(ops.run.revocations())
    stale = ops.cli("revoke", "--credential", "github-actions", "--user", target.id, "--yes", env=env)
    assert stale.returncode == 3, stale.stderr
    assert "AADSTS700212" in stale.stderr and AUDIENCE in stale.stderr, "Entra names the audience presented"
    assert "what to do" in stale.stderr and "--credentials with the stack's current bundle" in stale.stderr
    assert len(ops.run.revocations()) == before

    document = json.loads(ops.bundle.read_text())
    document["federatedCredentials"] = [
        {
            "name": "github-contoso-prod",
            "issuer": sandbox.sandbox.federation.issuers[issuer].url,
            "subject": SUBJECT,
            "audience": custom,
            "credentialId": "0f9d9a3e-3c1e-4f6b-9d57-6a1d2b3c4d5e",
        }
    ]
    ops.bundle.write_text(json.dumps(document))
    result = ops.cli("revoke", "--credential", "github-actions", "--user", target.id, "--yes", env=env)
    assert result.returncode == 0, result.stderr
    assert ops.revoked_ids(before) == [target.id]
    run = next(r for r in sandbox.sandbox.federation.runs.values() if r.request_token in env.values())
    assert run.requests[-1] == custom, run.requests


def test_bundle_check_says_how_a_keyless_or_key_vault_stack_signs_in(tmp_path: Path):
    """`revoke-ops bundle check` (the README's step after `up`) names the way in, not "supply --certificate"."""
    import subprocess
    import sys

    ids = [f"11111111-2222-4333-8444-55555555555{i}" for i in range(5)]
    base = {
        "schemaVersion": 1, "tenantId": ids[0], "clientId": ids[1], "applicationObjectId": ids[2],
        "servicePrincipalObjectId": ids[3], "cloud": "public", "authorityHost": "https://login.microsoftonline.com",
        "graphEndpoint": "https://graph.microsoft.com/v1.0", "graphScope": "https://graph.microsoft.com/.default",
        "permissionMode": "application", "applicationPermissions": ["User.RevokeSessions.All"],
        "delegatedPermissions": [],
    }  # fmt: skip
    keyless = base | {
        "certificates": [],
        "federatedCredentials": [
            {"name": "gh", "issuer": "https://token.actions.githubusercontent.com", "subject": SUBJECT,
             "audience": AUDIENCE, "credentialId": ids[4]},
        ],
    }  # fmt: skip
    vault_url = "https://contoso-revoke.vault.azure.net/certificates/revoker"
    in_vault = base | {
        "certificates": [
            {"slot": "vault", "source": "keyVault", "thumbprint": "A" * 40, "thumbprintSha256": "B" * 64,
             "keyId": ids[4], "notAfter": "2099-01-01T00:00:00Z", "keyVaultCertificate": vault_url},
        ],
    }  # fmt: skip
    said = {}
    for name, document in (("keyless", keyless), ("vault", in_vault)):
        path = tmp_path / f"{name}.json"
        path.write_text(json.dumps(document))
        path.chmod(0o600)
        exe = Path(sys.executable).parent / "revoke-ops"
        result = subprocess.run(
            [str(exe), "bundle", "check", str(path)], capture_output=True, text=True, timeout=60, check=False
        )
        assert result.returncode == 0, result.stderr
        said[name] = result.stdout
    assert "no key at all: 1 federated credential(s) (--credential github-actions" in said["keyless"]
    assert f"Key Vault holds it (--key-vault-certificate {vault_url})" in said["vault"]
    assert "supply --certificate" not in said["keyless"] + said["vault"]


def test_outside_a_job_the_missing_variables_are_named(tmp_path: Path):
    with pytest.raises(InputError) as caught:
        github_actions_identity(environ={"AZURE_TENANT_ID": "t", "AZURE_CLIENT_ID": "c"})
    assert "ACTIONS_ID_TOKEN_REQUEST_URL" in str(caught.value) and "id-token: write" in str(caught.value)
    with pytest.raises(InputError, match="https"):
        ActionsTokenSource("http://127.0.0.1:1/token", "t")


def test_an_expired_request_token_is_a_clear_auth_failure(sandbox: Running, tmp_path: Path):
    ops, issuer = _keyless_ops(sandbox, tmp_path, "gha-expired")
    env = _actions_run(sandbox, issuer, SUBJECT) | {"ACTIONS_ID_TOKEN_REQUEST_TOKEN": "expired-request-token"}
    result = ops.cli("revoke", "--credential", "github-actions", "--user", ops.user("operator").id, "--yes", env=env)
    assert result.returncode == 3, result.stderr
    assert "HTTP 401" in result.stderr and "id-token: write" in result.stderr
    assert "expired-request-token" not in result.stderr


@pytest.mark.slow
def test_a_keyless_stack_applied_to_the_sandbox_revokes_from_a_github_job(sandbox: Running, tmp_path: Path):
    """Done when: a stack with only federated credentials provisions (`sandbox apply`), and revoke-ops
    --credential github-actions revokes with the bundle it wrote and a sandbox-issued OIDC token."""
    from sandbox.apply import apply
    from tests.sandbox.test_apply import project

    issuer = sandbox.sandbox.call(sandbox.sandbox.federation.issuer, "gha-applied").url
    config = {
        "azuread:tenantId": sandbox.info["tenantId"],
        "revoke-sessions:displayName": "revoker keyless",
        "revoke-sessions:certificates": [],
        "revoke-sessions:federatedCredentials": [
            {"name": "github-contoso-prod", "issuer": issuer, "subject": SUBJECT},
        ],
    }
    out = tmp_path / "bundle.json"
    (tmp_path / "p").mkdir()
    outputs = apply(Path(sandbox.sandbox.state_dir), "keyless", out, project(tmp_path / "p", "keyless", config))
    assert outputs["certificates"] == [] and "privateKeyPem" not in outputs
    app = sandbox.sandbox.tenant.app_by_app_id(outputs["clientId"])
    assert app is not None and app.key_credentials == []
    assert [(f["issuer"], f["subject"]) for f in app.federated_credentials] == [(issuer, SUBJECT)]

    env = _actions_run(sandbox, "gha-applied", SUBJECT)
    target = sandbox.user("operator")
    before = len(sandbox.revocations())
    ops = Ops(sandbox, None, out)  # type: ignore[arg-type]  # the CLI needs only the bundle
    keyless = ops.cli("revoke", "--user", target.id, "--yes")  # the default credential (a certificate)
    assert keyless.returncode == 2 and "federated credentials only" in keyless.stderr
    assert "--credential github-actions" in keyless.stderr
    result = ops.cli("revoke", "--credential", "github-actions", "--user", target.id, "--yes", env=env)
    assert result.returncode == 0, result.stderr
    assert [r["userId"] for r in sandbox.revocations()[before:]] == [target.id]
