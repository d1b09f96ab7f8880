"""The doors between the rooms stay one-way (DESIGN.md)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.provisioning.conftest import ROOT


def imported_after(module: str) -> set[str]:
    code = f"import sys, {module}; print('\\n'.join(sorted(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    return set(out.split())


@pytest.mark.parametrize(
    ("module", "forbidden"),
    [
        ("revoke_ops", {"pulumi", "pulumi_azuread", "pulumi_tls", "provisioning", "sandbox"}),
        ("revoke_ops.cli", {"pulumi", "provisioning", "sandbox"}),
        ("revoke_ops.facts", {"msgraph", "azure", "pulumi", "jsonschema"}),
        ("provisioning.component", {"msgraph", "sandbox", "azure.identity"}),
        ("provisioning.mockrun", {"msgraph", "sandbox"}),
        ("sandbox", {"pulumi", "msgraph", "azure.identity"}),
    ],
)
def test_package_does_not_import(module: str, forbidden: set[str]):
    loaded = imported_after(module)
    leaked = {m for m in loaded for f in forbidden if m == f or m.startswith(f + ".")}
    assert not leaked, f"importing {module} pulls in {sorted(leaked)[:5]}"
