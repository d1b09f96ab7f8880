"""The doors between the rooms stay one-way (DESIGN.md), for every module, not only the packages.

Two checks: every import statement in every module (including imports inside functions, which a
runtime check never sees), and a runtime import of every submodule (which catches what a module
pulls in transitively). New modules are found on disk, so they are covered without editing this.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

from tests.provisioning.conftest import ROOT

#: package -> (forbidden import prefixes, {module: prefixes that module alone may import})
RULES: dict[str, tuple[set[str], dict[str, set[str]]]] = {
    "revoke_ops": ({"pulumi", "pulumi_azuread", "pulumi_tls", "provisioning", "sandbox"}, {}),
    "provisioning": ({"msgraph", "msgraph_core", "kiota_abstractions", "azure.identity", "sandbox"}, {}),
    # The sandbox may run the provisioning program to apply a stack (sandbox.apply), signing in to
    # itself as the deployer the way the azuread provider would (with azure-identity); the server
    # side never uses a client library or our other packages.
    "sandbox": (
        {"revoke_ops", "msgraph", "azure.identity", "provisioning", "pulumi"},
        {"sandbox.apply": {"provisioning", "azure.identity"}},
    ),
}


def modules(package: str) -> list[tuple[str, Path]]:
    found = []
    for path in sorted((ROOT / package).rglob("*.py")):
        parts = path.relative_to(ROOT).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        found.append((name, path))
    return found


def imports_of(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def _matches(name: str, prefixes: set[str]) -> bool:
    return any(name == p or name.startswith(p + ".") for p in prefixes)


@pytest.mark.parametrize("package", sorted(RULES))
def test_no_module_imports_across_a_forbidden_door(package: str):
    forbidden, allowed = RULES[package]
    problems = []
    for name, path in modules(package):
        extra = allowed.get(name, set())
        for imported in sorted(imports_of(path)):
            if _matches(imported, forbidden) and not _matches(imported, extra):
                problems.append(f"{name} imports {imported}")
    assert not problems, "\n".join(problems)


def imported_after(names: list[str]) -> set[str]:
    code = "import importlib, sys\n"
    code += "".join(f"importlib.import_module({n!r})\n" for n in names)
    code += "print('\\n'.join(sorted(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    return set(out.split())


@pytest.mark.parametrize(
    ("package", "forbidden"),
    [
        ("revoke_ops", {"pulumi", "pulumi_azuread", "pulumi_tls", "provisioning", "sandbox"}),
        ("provisioning", {"msgraph", "sandbox", "azure.identity"}),
        ("sandbox", {"pulumi", "msgraph", "azure.identity", "revoke_ops"}),
    ],
)
def test_importing_every_module_pulls_in_nothing_forbidden(package: str, forbidden: set[str]):
    names = [n for n, _ in modules(package) if not n.endswith("__main__")]
    loaded = imported_after(names)
    leaked = sorted(m for m in loaded if _matches(m, forbidden))
    assert not leaked, f"importing every module of {package} pulls in {leaked[:5]}"


def test_the_shared_facts_module_stays_light():
    loaded = imported_after(["revoke_ops.facts"])
    leaked = sorted(m for m in loaded if _matches(m, {"msgraph", "azure", "pulumi", "jsonschema", "httpx"}))
    assert not leaked, f"revoke_ops.facts pulls in {leaked[:5]}"


#: STYLE.md / issue 12: "no module over ~400 lines without a reason stated at its top".
LONG_MODULE = 400


def test_every_long_module_states_why_at_its_top():
    unexplained = []
    for package in sorted(RULES):
        for name, path in modules(package):
            text = path.read_text(encoding="utf-8")
            lines = text.count("\n")
            doc = ast.get_docstring(ast.parse(text)) or ""
            if lines > LONG_MODULE and "Size (" not in doc:
                unexplained.append(f"{name} ({lines} lines)")
    assert not unexplained, (
        "modules over ~400 lines without a 'Size (~N lines, ...): why' paragraph in their docstring: "
        + ", ".join(unexplained)
    )
