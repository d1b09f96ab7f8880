"""The reviewed revocation workflow (issue 13 #2): its GitHub and Azure DevOps definitions, and
pipelines/revoke-run (the step both run) driven against the sandbox with hostile inputs."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

from tests.provisioning.conftest import ROOT
from tests.revoke_ops.conftest import DOMAIN, Ops, ops  # noqa: F401  # the fixture
from tests.revoke_ops.test_federated import _actions_run, _keyless_ops
from tests.sandbox.conftest import Running, sandbox  # noqa: F401  # the fixture ops needs
from tests.test_pipelines import events, load, project_copy


def steps_of(job: dict[str, Any]) -> list[dict[str, Any]]:
    if "steps" in job:
        return list(job["steps"])
    return list(job["strategy"]["runOnce"]["deploy"]["steps"])


def test_the_github_workflow_is_manual_reviewed_twice_and_keeps_the_journal():
    workflow = load(".github/workflows/revoke.yml")
    assert events(workflow) == {"workflow_dispatch"}
    inputs = workflow[True]["workflow_dispatch"]["inputs"]
    assert set(inputs) == {"stack", "group", "users", "users-file", "exclude", "reason", "dry-run"}
    assert inputs["reason"]["required"] and inputs["dry-run"]["default"] is True
    dry, real = workflow["jobs"]["dry-run"], workflow["jobs"]["revoke"]
    for job in (dry, real):
        # its own environment (required reviewers), never the deploy environment `<stack>`
        assert job["environment"] == "revoke-${{ inputs.stack }}"
        assert "refs/heads/main" in job["if"]
        for step in steps_of(job):
            # inputs reach the shell only through env: no expression inside any script
            assert "${{" not in str(step.get("run", "")) + str(step.get("with", {}).get("script", "")), step
    assert real["needs"] == "dry-run" and "inputs.dry-run == false" in real["if"]
    runs = [str(s.get("run", "")) for s in steps_of(dry)] + [str(s.get("run", "")) for s in steps_of(real)]
    assert "pipelines/revoke-run dry-run --credential github-actions" in runs
    assert "pipelines/revoke-run revoke --credential github-actions" in runs
    upload = next(s for s in steps_of(real) if str(s.get("uses", "")).startswith("actions/upload-artifact"))
    assert upload["if"] == "always()" and upload["with"]["path"].endswith("journal.jsonl")


def test_the_azure_devops_pipeline_is_manual_with_an_approved_environment_and_its_own_connection():
    pipeline = load("pipelines/revoke.yml")
    assert (pipeline["trigger"], pipeline["pr"]) == ("none", "none")
    dry, real = pipeline["stages"]
    assert real["dependsOn"] == "dry_run" and "'dry run then revoke'" in real["condition"]
    for stage, mode in ((dry, "dry-run"), (real, "revoke")):
        assert "'refs/heads/main'" in stage["condition"]
        job = stage["jobs"][0]
        assert job["environment"] == "revoke-sessions-${{ parameters.stack }}-revoke"
        task = next(s for s in steps_of(job) if s.get("task") == "AzureCLI@2")
        assert task["inputs"]["azureSubscription"] == "revoke-sessions-${{ parameters.stack }}-revoke"
        assert f"pipelines/revoke-run {mode} --credential azure-pipelines" in task["inputs"]["inlineScript"]
        assert "${{" not in task["inputs"]["inlineScript"], "parameters reach the shell only through env"
        assert task["env"]["SYSTEM_ACCESSTOKEN"] == "$(System.AccessToken)"


# -- pipelines/revoke-run against the sandbox ------------------------------------------------------------
def revoke_run(
    app: Ops, cwd: Path, mode: str, extra_env: dict[str, str] | None = None, **inputs: str
) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("REVOKE_", "ACTIONS_"))}
    env.update(
        {
            "PATH": f"{Path(sys.executable).parent}{os.pathsep}{env['PATH']}",
            "SSL_CERT_FILE": app.run.ca,
            "REQUESTS_CA_BUNDLE": app.run.ca,
            "REVOKE_OPS_ALLOW_CUSTOM_CLOUD": "1",
            **{f"REVOKE_{k.upper()}": v for k, v in inputs.items()},
            **(extra_env or {}),
        }
    )
    command = [str(ROOT / "pipelines" / "revoke-run"), mode, "--credentials", str(app.bundle)]
    if extra_env:  # as in revoke.yml: the job's own OIDC token, no key anywhere
        command += ["--credential", "github-actions"]
    return subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=300, check=False)


def test_a_dry_run_changes_nothing_and_summarises_what_would_be_revoked(ops: Ops, tmp_path: Path):  # noqa: F811
    group = ops.run.sandbox.tenant.group_named("compromised-sales")
    before = len(ops.run.revocations())
    summary = tmp_path / "summary.md"
    result = revoke_run(
        ops,
        tmp_path,
        "dry-run",
        group=f" {group.id} ",
        exclude=f"breakglass1@{DOMAIN}",
        reason="INC-1 dry run",
        summary=str(summary),
        output=str(tmp_path / "dry-run.json"),
    )
    assert result.returncode == 0, result.stderr
    assert len(ops.run.revocations()) == before, "a dry run changes nothing"
    would = json.loads((tmp_path / "dry-run.json").read_text())["summary"]["wouldRevoke"]
    assert would > 10
    text = summary.read_text()
    assert "### revoke-ops dry run: nothing changed (exit 0)" in text
    assert f"| would revoke | {would} |" in text and "| excluded | 1 |" in text


def test_a_real_run_revokes_users_from_the_inputs_and_a_repository_file_and_writes_the_journal(
    ops: Ops,  # noqa: F811
    tmp_path: Path,
):
    members = [u for u in ops.run.sandbox.tenant.users_by_id.values() if u.user_type == "Member" and not u.roles]
    a, b, c, d = members[20:24]
    (tmp_path / "incident").mkdir()
    (tmp_path / "incident" / "users.txt").write_text(f"{c.user_principal_name}\n")
    summary, journal = tmp_path / "summary.md", tmp_path / "journal.jsonl"
    users = f"{a.user_principal_name}, {b.user_principal_name}\n{d.id}"
    result = revoke_run(
        ops, tmp_path, "revoke", users=users, users_file=" incident/users.txt ", reason="INC-2",
        summary=str(summary), journal=str(journal),
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    revoked = {a.id, b.id, c.id, d.id}
    assert revoked <= set(ops.revoked_ids())
    outcomes = [json.loads(line) for line in journal.read_text().splitlines()]
    assert {r["id"] for r in outcomes if r.get("outcome") == "revoked"} == revoked
    assert "INC-2" in journal.read_text()
    assert "| revoked | 4 |" in summary.read_text()


def test_inputs_are_data_never_code(ops: Ops, tmp_path: Path):  # noqa: F811
    (tmp_path / "a-file").write_text("")
    before = len(ops.run.revocations())
    # a command substitution, a glob and a quote in a user list: passed to revoke-ops as-is
    result = revoke_run(ops, tmp_path, "revoke", users="$(touch pwned) * o'x", reason="r", journal=str(tmp_path / "j"))
    assert not (tmp_path / "pwned").exists()
    assert result.returncode in (1, 2), result.stderr
    assert "a-file" not in result.stdout + result.stderr, "the * was not expanded to file names"
    assert len(ops.run.revocations()) == before

    def refused(message: str, **inputs: str) -> None:
        answer = revoke_run(ops, tmp_path, "revoke", None, **{"journal": str(tmp_path / "j"), **inputs})
        assert answer.returncode == 2 and message in answer.stderr, answer.stderr

    refused("the users file must be inside the repository checkout", users_file="/etc/passwd", reason="r")
    refused("the users file '../nope' does not exist", users_file="../nope", reason="r")
    refused("the group must be an object id (a GUID), got 'sales;rm'", group="sales;rm", reason="r")
    refused("a reason is required", users=f"someone@{DOMAIN}")
    refused("name the targets: a group, users, or a users file", reason="r")
    refused("stack 'nope' is not listed in stacks/deploy.txt", stack="nope", users="x@y", reason="r")


def test_the_workflow_step_revokes_keyless_as_a_github_job_of_the_revoke_environment(
    sandbox: Running,  # noqa: F811
    tmp_path: Path,
):
    subject = "repo:contoso@1001/revoker@2002:environment:revoke-contoso-prod"
    keyless, issuer = _keyless_ops(sandbox, tmp_path, "gha-revoke-workflow", subject=subject)
    job = _actions_run(sandbox, issuer, subject)  # what GitHub gives a job with id-token: write
    target = keyless.user("operator")
    before = len(sandbox.revocations())
    summary, journal = tmp_path / "summary.md", tmp_path / "journal.jsonl"
    result = revoke_run(
        keyless, tmp_path, "revoke", extra_env=job, users=target.id, reason="INC-3 reviewed",
        summary=str(summary), journal=str(journal),
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert [r["userId"] for r in sandbox.revocations()[before:]] == [target.id]
    assert "| revoked | 1 |" in summary.read_text()
    assert "privateKeyPem" not in keyless.bundle.read_text(), "no key anywhere"
    for text in (result.stdout, result.stderr, journal.read_text(), summary.read_text()):
        assert job["ACTIONS_ID_TOKEN_REQUEST_TOKEN"] not in text and "eyJ" not in text


def test_the_run_signs_in_to_the_stacks_own_cloud(tmp_path: Path):
    """The workflows pass the stack (REVOKE_STACK); revoke-run gives revoke-ops that stack's cloud, read
    from stacks/deploy.txt and the stack file as the deploy pipelines read it (issue 13 #4, national
    clouds). revoke-ops here is a stand-in that records its arguments."""
    (tmp_path / "p").mkdir()
    root = project_copy(tmp_path / "p", "gov-a\n")
    (root / "stacks" / "Pulumi.gov-a.yaml").write_text(
        "config:\n  azuread:tenantId: x\n  revoke-sessions:cloud: usgovernment\n"
    )
    (root / "pipelines").mkdir()
    shutil.copy(ROOT / "pipelines" / "revoke-run", root / "pipelines")
    stand_in = tmp_path / "bin" / "revoke-ops"
    stand_in.parent.mkdir()
    stand_in.write_text('#!/bin/sh\nprintf "%s\\n" "$@" > "$ARGS_FILE"\necho "{}"\n')
    stand_in.chmod(0o755)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("REVOKE_", "ACTIONS_"))}
    env |= {
        "PATH": os.pathsep.join([str(stand_in.parent), str(Path(sys.executable).parent), env["PATH"]]),
        "ARGS_FILE": str(tmp_path / "args"),
        "REVOKE_STACK": "gov-a",
        "REVOKE_USERS": "someone@contoso.us",
        "REVOKE_REASON": "INC-4",
        "REVOKE_SUMMARY": str(tmp_path / "summary.md"),
    }
    command = [str(root / "pipelines" / "revoke-run"), "dry-run", "--credential", "github-actions"]
    result = subprocess.run(command, cwd=root, env=env, capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0, result.stderr
    args = (tmp_path / "args").read_text().splitlines()
    assert args[args.index("--cloud") + 1] == "usgovernment", args
    assert args[-2:] == ["--credential", "github-actions"]
