"""The CI/CD definitions validate against their vendors' schemas and deploy only listed stacks."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.provisioning.conftest import ROOT


def check_jsonschema(schema: str, path: Path) -> subprocess.CompletedProcess[str]:
    # The built-in vendor schemas ship inside check-jsonschema's wheel: nothing is downloaded.
    # The Azure Pipelines schema uses regex escapes only Python's engine accepts.
    args = [
        sys.executable,
        "-m",
        "check_jsonschema",
        "--regex-variant",
        "python",
        "--builtin-schema",
        schema,
        str(path),
    ]
    return subprocess.run(args, capture_output=True, text=True, check=False)


WORKFLOWS = sorted(p.relative_to(ROOT).as_posix() for p in (ROOT / ".github" / "workflows").glob("*.yml"))
AZURE_PIPELINES = ["azure-pipelines.yml", "pipelines/stack-stages.yml", "pipelines/preview.yml", "pipelines/revoke.yml"]


@pytest.mark.parametrize(
    ("schema", "path"),
    [("vendor.github-workflows", w) for w in WORKFLOWS] + [("vendor.azure-pipelines", a) for a in AZURE_PIPELINES],
)
def test_pipeline_files_validate(schema: str, path: str):
    result = check_jsonschema(schema, ROOT / path)
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_schema_check_can_fail(tmp_path: Path):
    broken = tmp_path / "wf.yml"
    broken.write_text("on: push\njobs:\n  x:\n    runs-on: ubuntu-latest\n    stepz: []\n")
    assert check_jsonschema("vendor.github-workflows", broken).returncode != 0


def load(path: str) -> dict[Any, Any]:
    document: dict[Any, Any] = yaml.safe_load((ROOT / path).read_text("utf-8"))
    return document


def test_every_pipeline_uses_oidc_and_stores_no_secret():
    for path in WORKFLOWS + AZURE_PIPELINES:
        text = (ROOT / path).read_text("utf-8")
        assert "secrets." not in text, f"{path} must not read stored secrets"
        # no passphrase, no Pulumi access token, no client secret: OIDC and Key Vault instead
        for stored in (
            "PULUMI_CONFIG_PASSPHRASE",
            "PULUMI_ACCESS_TOKEN",
            "ARM_CLIENT_SECRET",
            "client-secret",
            "isSecret",
        ):
            assert stored not in text, f"{path} uses {stored}"
    for path, job in (("provision.yml", "up"), ("preview.yml", "preview")):
        spec = load(f".github/workflows/{path}")["jobs"][job]
        assert spec["permissions"]["id-token"] == "write", path
        assert spec["env"]["ARM_USE_OIDC"] == "true", path
    for path in ("pipelines/stack-stages.yml", "pipelines/preview.yml"):
        assert 'ARM_OIDC_TOKEN="$idToken"' in (ROOT / path).read_text("utf-8")


def deploy_stacks(root: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(root / "scripts" / "deploy-stacks"), *args],
        cwd=root,
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        check=False,
    )


def project_copy(tmp_path: Path, listing: str) -> Path:
    (tmp_path / "scripts").mkdir()
    shutil.copy(ROOT / "scripts" / "deploy-stacks", tmp_path / "scripts")
    shutil.copytree(ROOT / "stacks", tmp_path / "stacks")
    (tmp_path / "stacks" / "Pulumi.tenant-a.yaml").write_text("config:\n  azuread:tenantId: x\n")
    (tmp_path / "stacks" / "deploy.txt").write_text(listing)
    return tmp_path


def test_committed_deploy_list_is_valid_and_matches_azure_pipelines():
    result = deploy_stacks(ROOT, "--check-azure-pipelines", "azure-pipelines.yml")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout.splitlines()[0]) == []


@pytest.mark.parametrize(
    ("listing", "message"),
    [
        ("sandbox\n", "stacks/deploy.txt:1: the sandbox stack is never deployed"),
        ("# comment\ncontoso-prod\n", "stacks/deploy.txt:2: stacks/Pulumi.contoso-prod.yaml is an EXAMPLE stack"),
        ("nope\n", "stacks/deploy.txt:1: no stack file stacks/Pulumi.nope.yaml"),
        ("tenant-a\ntenant-a\n", "stacks/deploy.txt:2: stack 'tenant-a' is listed twice"),
    ],
)
def test_deploy_list_refuses_sandbox_examples_and_unknown_stacks(tmp_path: Path, listing: str, message: str):
    result = deploy_stacks(project_copy(tmp_path, listing))
    assert result.returncode == 2
    assert message in result.stderr


def test_deploy_list_and_azure_pipeline_must_agree(tmp_path: Path):
    root = project_copy(tmp_path, "tenant-a  # production\n")
    assert json.loads(deploy_stacks(root).stdout) == ["tenant-a"]
    pipeline = root / "azure-pipelines.yml"
    pipeline.write_text("stages:\n  - stage: Plan\n")
    result = deploy_stacks(root, "--check-azure-pipelines", str(pipeline))
    assert result.returncode == 2
    assert "deploys [] but stacks/deploy.txt lists ['tenant-a']" in result.stderr
    pipeline.write_text("stages:\n  - template: pipelines/stack-stages.yml\n    parameters:\n      stack: tenant-a\n")
    assert deploy_stacks(root, "--check-azure-pipelines", str(pipeline)).returncode == 0


# -- least privilege: what a pull request's code can reach ------------------------------------------
#: Events that run a workflow for code or input a pull request controls. pull_request_target and
#: workflow_run run with the base repository's permissions next to PR-controlled data: never used.
PR_EVENTS = {
    "pull_request",
    "pull_request_target",
    "pull_request_review",
    "pull_request_review_comment",
    "workflow_run",
}
#: Anything that reaches the tenant, the state backend or the secrets key.
REACHES = (
    "secrets.",
    "vars.",
    "ARM_",
    "AZURE_",
    "PULUMI_BACKEND_URL",
    "PULUMI_ACCESS_TOKEN",
    "PULUMI_CONFIG_PASSPHRASE",
    "azblob://",
    "azurekeyvault://",
    "azure/login",
    "pulumi/actions",
    "pulumi/auth-actions",
    "pulumi login",
)


def events(workflow: dict[Any, Any]) -> set[str]:
    on = workflow.get("on", workflow.get(True))  # YAML 1.1 reads the bare key `on` as True
    return {on} if isinstance(on, str) else set(on or [])


def pull_request_problems(name: str, workflow: dict[Any, Any]) -> list[str]:
    """Why a pull request's code could reach credentials, state or keys through this workflow."""
    triggered = events(workflow)
    problems = [f"{name}: never trigger on {e}" for e in sorted(triggered & {"pull_request_target", "workflow_run"})]
    if not triggered & PR_EVENTS:
        return problems
    if workflow.get("permissions") != {"contents": "read"}:
        problems.append(f"{name}: a pull-request workflow must set `permissions: contents: read` at the top")
    for job_name, job in workflow.get("jobs", {}).items():
        where = f"{name}: pull-request job {job_name}"
        if "environment" in job:
            problems.append(f"{where} runs in environment {job['environment']!r}")
        permissions = job.get("permissions", {})
        if permissions in ("write-all", "read-all") or (
            isinstance(permissions, dict) and "write" in permissions.values()
        ):
            problems.append(f"{where} asks for permissions {permissions!r}")
        text = yaml.safe_dump(job)
        problems += [f"{where} reaches {token!r}" for token in REACHES if token in text]
    return problems


def test_no_pull_request_job_can_reach_the_deployer_the_state_or_the_secrets_key():
    problems = [p for w in WORKFLOWS for p in pull_request_problems(w, load(w))]
    assert problems == []
    assert "pull_request" in events(load(".github/workflows/checks.yml"))


def test_the_pull_request_check_catches_what_the_old_workflow_did():
    # The layout this replaced: PR previews in `<stack>-preview` with OIDC and the state backend.
    bad = {
        True: {"pull_request": {}, "pull_request_target": {}},
        "permissions": {"contents": "write"},
        "jobs": {
            "preview": {
                "environment": "${{ matrix.stack }}-preview",
                "permissions": {"contents": "read", "id-token": "write"},
                "env": {"PULUMI_BACKEND_URL": "${{ vars.PULUMI_BACKEND_URL }}"},
                "steps": [{"uses": "azure/login@v2"}],
            }
        },
    }
    problems = "\n".join(pull_request_problems("bad.yml", bad))
    for expected in (
        "never trigger on pull_request_target",
        "must set `permissions: contents: read`",
        "runs in environment '${{ matrix.stack }}-preview'",
        "asks for permissions {'contents': 'read', 'id-token': 'write'}",
        "reaches 'PULUMI_BACKEND_URL'",
        "reaches 'vars.'",
        "reaches 'azure/login'",
    ):
        assert expected in problems


def test_up_runs_only_on_main_in_the_stack_environment_with_the_stack_cloud():
    workflow = load(".github/workflows/provision.yml")
    assert events(workflow) == {"push", "workflow_dispatch"}
    assert workflow[True]["push"]["branches"] == ["main"]
    up = workflow["jobs"]["up"]
    assert up["environment"] == "${{ matrix.target.stack }}", "the deployer's federated credential names it"
    assert "refs/heads/main" in up["if"] and "refs/heads/main" in workflow["jobs"]["plan"]["if"]
    login = next(s for s in up["steps"] if str(s.get("uses", "")).startswith("azure/login"))
    assert login["with"]["environment"] == "${{ matrix.target.azureLogin }}"
    assert up["env"]["ARM_ENVIRONMENT"] == "${{ matrix.target.armEnvironment }}"
    assert up["env"]["AZURE_STORAGE_DOMAIN"] == "${{ matrix.target.storageDomain }}"
    # `pulumi up` appears nowhere else; no other job holds an id-token outside a -preview environment
    for path in WORKFLOWS:
        for name, job in load(path)["jobs"].items():
            commands = [s.get("with", {}).get("command") for s in job.get("steps", [])]
            if "up" in commands or "destroy" in commands:
                assert (path, name) == (".github/workflows/provision.yml", "up")
            if job.get("permissions", {}).get("id-token") == "write" and (path, name) != (
                ".github/workflows/provision.yml",
                "up",
            ):
                environment = str(job["environment"])
                assert environment.endswith("-preview") or environment.startswith("revoke-"), (path, name)


def test_a_real_preview_of_a_pull_request_is_manual_reviewed_and_read_only():
    workflow = load(".github/workflows/preview.yml")
    assert events(workflow) == {"workflow_dispatch"}
    job = workflow["jobs"]["preview"]
    assert job["environment"] == "${{ inputs.stack }}-preview"
    assert "refs/heads/main" in job["if"], "the workflow definition is always main's"
    steps = job["steps"]
    assert [s.get("with", {}).get("command") for s in steps if "pulumi/actions" in str(s.get("uses"))] == ["preview"]
    checkouts = [s.get("with", {}).get("ref") for s in steps if str(s.get("uses", "")).startswith("actions/checkout")]
    assert checkouts == [None, "refs/pull/${{ inputs.pull-request }}/merge"], "the stack's cloud is read from main"
    # the stack's cloud reaches azure/login and the azuread provider (issue 13 #4, national clouds)
    target = next(i for i, s in enumerate(steps) if s.get("id") == "target")
    assert target < next(i for i, s in enumerate(steps) if s.get("with", {}).get("ref")), "read before the PR's files"
    login = next(s for s in steps if str(s.get("uses", "")).startswith("azure/login"))
    assert login["with"]["environment"] == "${{ fromJSON(steps.target.outputs.target).azureLogin }}"
    preview = next(s for s in steps if "pulumi/actions" in str(s.get("uses")))
    assert preview["env"]["ARM_ENVIRONMENT"] == "${{ fromJSON(steps.target.outputs.target).armEnvironment }}"
    assert preview["env"]["AZURE_STORAGE_DOMAIN"] == "${{ fromJSON(steps.target.outputs.target).storageDomain }}"


def ado_stages(path: str) -> list[dict[str, Any]]:
    """The pipeline's stages with pipelines/stack-stages.yml expanded (as a listed stack would)."""
    stages: list[dict[str, Any]] = []
    for stage in load(path).get("stages", []):
        stages += load(stage["template"])["stages"] if "template" in stage else [stage]
    return stages


def ado_pull_request_problems(pipeline: dict[str, Any], stages: list[dict[str, Any]]) -> list[str]:
    """Stages a pull-request build could run that touch a service connection, a variable group or an environment."""
    if pipeline.get("pr") == "none":
        return []
    problems = [f"pipeline-level variable group {v['group']!r}" for v in pipeline.get("variables", []) if "group" in v]

    def keys(node: Any) -> set[str]:
        if isinstance(node, dict):
            return set(node) | {k for v in node.values() for k in keys(v)}
        return {k for v in node for k in keys(v)} if isinstance(node, list) else set()

    for stage in stages:
        condition = stage.get("condition", "")
        guarded = "ne(variables['Build.Reason'], 'PullRequest')" in condition and "'refs/heads/main'" in condition
        reaches = keys(stage) & {"azureSubscription", "group", "environment"}
        text = yaml.safe_dump(stage)
        reaches |= {t for t in ("PULUMI_BACKEND_URL", "idToken", "AZURE_STORAGE_ACCOUNT") if t in text}
        if reaches and not guarded:
            problems.append(f"stage {stage['stage']} reaches {sorted(reaches)} in pull-request builds")
    return problems


def test_azure_devops_pull_request_builds_reach_no_service_connection_group_or_environment():
    pipeline = load("azure-pipelines.yml")
    with_a_stack = ado_stages("azure-pipelines.yml") + load("pipelines/stack-stages.yml")["stages"]
    assert ado_pull_request_problems(pipeline, with_a_stack) == []
    up = load("pipelines/stack-stages.yml")["stages"][0]
    task = next(s for s in up["jobs"][0]["strategy"]["runOnce"]["deploy"]["steps"] if s.get("task") == "AzureCLI@2")
    assert task["inputs"]["azureSubscription"] == "revoke-sessions-${{ parameters.stack }}-deploy"
    assert up["jobs"][0]["environment"] == "revoke-sessions-${{ parameters.stack }}"
    preview = load("pipelines/preview.yml")
    assert (preview["trigger"], preview["pr"]) == ("none", "none"), "run by hand only"
    job = preview["stages"][0]["jobs"][0]
    task = next(s for s in job["strategy"]["runOnce"]["deploy"]["steps"] if s.get("task") == "AzureCLI@2")
    assert task["inputs"]["azureSubscription"] == "revoke-sessions-${{ parameters.stack }}-preview"
    assert "pulumi preview" in task["inputs"]["inlineScript"] and "pulumi up" not in task["inputs"]["inlineScript"]
    # the check can fail: the old layout (a PR preview stage through the deployer's connection)
    old: dict[str, Any] = {
        "stage": "preview_x",
        "condition": "and(succeeded(), eq(variables['Build.Reason'], 'PullRequest'))",
    }
    old["jobs"] = [{"job": "preview", "steps": [{"task": "AzureCLI@2", "inputs": {"azureSubscription": "x"}}]}]
    problems = ado_pull_request_problems({"variables": [{"group": "state"}]}, [old])
    assert problems == [
        "pipeline-level variable group 'state'",
        "stage preview_x reaches ['azureSubscription'] in pull-request builds",
    ]


# -- national clouds --------------------------------------------------------------------------------
def test_each_stack_deploys_with_its_own_cloud(tmp_path: Path):
    root = project_copy(tmp_path, "tenant-a\ngov-a\n")
    (root / "stacks" / "Pulumi.gov-a.yaml").write_text(
        "config:\n  azuread:tenantId: x\n  revoke-sessions:cloud: usgovernment  # GCC High\n"
    )
    output = tmp_path / "github-output"
    result = deploy_stacks(root, "--github-output", env={"GITHUB_OUTPUT": str(output)})
    assert result.returncode == 0, result.stderr
    written = dict(line.split("=", 1) for line in output.read_text().splitlines())
    assert json.loads(written["targets"]) == [
        {"stack": "tenant-a", "cloud": "public", "azureLogin": "azurecloud", "armEnvironment": "public",
         "storageDomain": "blob.core.windows.net"},
        {"stack": "gov-a", "cloud": "usgovernment", "azureLogin": "azureusgovernment",
         "armEnvironment": "usgovernment", "storageDomain": "blob.core.usgovcloudapi.net"},
    ]  # fmt: skip
    ado = deploy_stacks(root, "--stack", "gov-a", "--azure-devops")
    assert "##vso[task.setvariable variable=ARM_ENVIRONMENT]usgovernment" in ado.stdout
    assert "##vso[task.setvariable variable=AZURE_STORAGE_DOMAIN]blob.core.usgovcloudapi.net" in ado.stdout
    unknown = deploy_stacks(root, "--stack", "nope")
    assert unknown.returncode == 2 and "stack 'nope' is not listed in stacks/deploy.txt" in unknown.stderr
    (root / "stacks" / "Pulumi.gov-a.yaml").write_text("config:\n  revoke-sessions:cloud: custom\n")
    custom = deploy_stacks(root)
    assert custom.returncode == 2
    assert "stacks/Pulumi.gov-a.yaml: cloud 'custom' cannot be deployed by the pipelines" in custom.stderr


@pytest.mark.slow
def test_the_offline_preview_needs_no_credential_and_fails_on_a_broken_stack():
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ARM_", "AZURE_", "PULUMI_"))}
    result = subprocess.run(
        [str(ROOT / "pipelines" / "offline-preview"), "woodgrove-minimal", "fabrikam-gov", "no-such-stack"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert result.returncode == 1, result.stderr
    assert "ok: woodgrove-minimal: 8 resources" in result.stderr
    assert "ok: fabrikam-gov: 6 resources" in result.stderr  # its Key Vault certificate's public part is committed
    assert "no stack file for stack 'no-such-stack'" in result.stderr  # the program's own message
    assert "FAILED: no-such-stack" in result.stderr
    assert "ok: sandbox" in result.stderr
    assert "PRIVATE KEY" not in result.stdout + result.stderr


@pytest.mark.parametrize("pem", sorted((ROOT / "certs").glob("*.pem")), ids=lambda p: p.name)
def test_committed_certificates_are_public_and_current(pem: Path):
    """certs/ holds public parts only; a stack's offline preview refuses an expired one, so renew it in time."""
    from datetime import UTC, datetime, timedelta

    from cryptography import x509
    from cryptography.hazmat.primitives.asymmetric import rsa

    data = pem.read_bytes()
    assert b"PRIVATE KEY" not in data
    (cert,) = x509.load_pem_x509_certificates(data)
    key = cert.public_key()
    assert isinstance(key, rsa.RSAPublicKey) and key.key_size >= 2048
    left = cert.not_valid_after_utc - datetime.now(UTC)
    assert left > timedelta(days=90), f"{pem.name} expires on {cert.not_valid_after_utc:%Y-%m-%d}: replace it"
    used = [s.name for s in (ROOT / "stacks").glob("Pulumi.*.yaml") if f"certs/{pem.name}" in s.read_text()]
    assert used, f"{pem.name} is referenced by no stack"
