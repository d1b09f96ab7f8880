"""The README's provisioning walkthrough (issue 13: "the README's provisioning section leads a newcomer
from nothing to a working `up`") holds as written: the stack it configures is valid stack config (also
its national-cloud line), the steps come in a working order, and the revoke-ops commands after `up`
run as printed against a bundle the sandbox applied."""

from __future__ import annotations

import re
import shlex

from provisioning.config import load
from tests.provisioning.conftest import ROOT
from tests.revoke_ops.conftest import Ops, ops  # noqa: F401  # the fixture
from tests.sandbox.conftest import sandbox  # noqa: F401  # the fixture ops needs

TENANT = "5a1db0c5-0000-4000-8000-00000000beef"


def section() -> str:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    return text[text.index("## Provisioning a tenant") : text.index("## The credentials bundle")]


def walkthrough() -> list[str]:
    """The commands of the walkthrough's shell block, comments left out (a `# ...:` line kept as a command)."""
    match = re.search(r"```sh\n(.*?)```", section(), re.DOTALL)
    assert match, "the README's provisioning section has a shell block"
    lines = []
    for line in match.group(1).splitlines():
        line = line.strip()
        if line.startswith("# national cloud:"):
            line = line.split(":", 1)[1].strip()
        line = re.split(r"\s{2,}#", line)[0].strip()
        if line and not line.startswith("#"):
            lines.append(line)
    return lines


def config_of(commands: list[str]) -> tuple[dict[str, str], dict[str, str]]:
    raw: dict[str, str] = {}
    azuread = {"tenantId": TENANT}
    for command in commands:
        for part in command.split("&&"):
            words = shlex.split(part)
            if words[:3] == ["pulumi", "config", "set"] and words[3] != "azuread:tenantId":
                namespace, key = words[3].split(":")
                (azuread if namespace == "azuread" else raw)[key] = words[4]
    return raw, azuread


def test_the_walkthrough_configures_a_valid_stack_in_a_working_order():
    text = section()
    for prerequisite in ("scripts/demo", "Pulumi CLI", "az login", "Privileged Role", "pulumi login", "secrets"):
        assert prerequisite in text, f"the walkthrough says {prerequisite!r}"
    commands = walkthrough()
    plain = [c for c in commands if not c.startswith("pulumi config set revoke-sessions:cloud")]
    raw, azuread = config_of(plain)
    assert load(raw, azuread=azuread).permission_mode == "both"
    national = [c for c in commands if c.startswith("pulumi config set revoke-sessions:cloud")]
    assert national, "the walkthrough shows a national cloud"
    raw_gov, azuread_gov = config_of([*plain, *national])
    assert load(raw_gov, azuread=azuread_gov).cloud.name == "usgovernment", "cloud and azuread:environment agree"

    def first(prefix: str) -> int:
        return next(i for i, c in enumerate(commands) if c.startswith(prefix))

    order = [
        first("pulumi stack init"),
        first("pulumi config set azuread:tenantId"),
        first("pulumi up"),
        first("(umask 077; pulumi stack output --json --show-secrets > bundle.json)"),
        first("revoke-ops bundle check"),
        first("revoke-ops doctor"),
        first("revoke-ops revoke"),
    ]
    assert order == sorted(order)


def test_the_commands_after_up_run_as_printed(ops: Ops):  # noqa: F811
    commands = [c for c in walkthrough() if c.startswith("revoke-ops ")]
    assert len(commands) == 3
    before = len(ops.run.revocations())
    for command in commands:
        words = shlex.split(command.replace("<a test user>", ops.user("operator").id))
        words = [str(ops.bundle) if w == "bundle.json" else w for w in words]
        result = ops.cli(*words[1:], credentials=False)
        assert result.returncode == 0, (command, result.stdout, result.stderr)
    assert len(ops.run.revocations()) == before, "the walkthrough's revoke is a dry run"
