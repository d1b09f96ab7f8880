"""The CI/CD definitions validate against their vendors' schemas and deploy only listed stacks."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

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


@pytest.mark.parametrize(
    ("schema", "path"),
    [
        ("vendor.github-workflows", ".github/workflows/provision.yml"),
        ("vendor.azure-pipelines", "azure-pipelines.yml"),
        ("vendor.azure-pipelines", "pipelines/stack-stages.yml"),
    ],
)
def test_pipeline_files_validate(schema: str, path: str):
    result = check_jsonschema(schema, ROOT / path)
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_schema_check_can_fail(tmp_path: Path):
    broken = tmp_path / "wf.yml"
    broken.write_text("on: push\njobs:\n  x:\n    runs-on: ubuntu-latest\n    stepz: []\n")
    assert check_jsonschema("vendor.github-workflows", broken).returncode != 0


def test_github_workflow_uses_oidc_and_stores_no_secret():
    text = (ROOT / ".github/workflows/provision.yml").read_text()
    workflow = yaml.safe_load(text)
    assert "secrets." not in text, "the workflow must not read stored secrets"
    for job in ("preview", "up"):
        assert workflow["jobs"][job]["permissions"]["id-token"] == "write"
        assert workflow["jobs"][job]["env"]["ARM_USE_OIDC"] == "true"
        assert "fromJSON(needs.plan.outputs.stacks)" in str(workflow["jobs"][job]["strategy"]["matrix"]["stack"])
    assert "pull_request" in workflow["jobs"]["preview"]["if"]
    assert "refs/heads/main" in workflow["jobs"]["up"]["if"]
    assert "$idToken" in (ROOT / "pipelines/stack-stages.yml").read_text()
    for path in (".github/workflows/provision.yml", "azure-pipelines.yml", "pipelines/stack-stages.yml"):
        text = (ROOT / path).read_text()
        # no passphrase, no Pulumi access token, no client secret: OIDC and Key Vault instead
        for stored in (
            "PULUMI_CONFIG_PASSPHRASE",
            "PULUMI_ACCESS_TOKEN",
            "ARM_CLIENT_SECRET",
            "client-secret",
            "isSecret",
        ):
            assert stored not in text, f"{path} uses {stored}"


def deploy_stacks(root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(root / "scripts" / "deploy-stacks"), *args],
        cwd=root,
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
