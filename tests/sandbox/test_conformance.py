"""docs/sandbox-conformance.md stays true: its rows name real tests, and every refusal has a row.

No sandbox is started: the catalogue, the sandbox's source and the test files are read as text.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CATALOGUE = ROOT / "docs" / "sandbox-conformance.md"
#: where refusals are written: every sandbox module (GraphError / UnsupportedQueryError / RefusalError
#: messages on the Graph side, TokenError / FederationError AADSTS codes on the identity side)
SOURCES = sorted((ROOT / "sandbox").rglob("*.py"))
TEST_REF = re.compile(r"(tests/[\w/]+\.py)::(\w+)")
MIN_FRAGMENT = 12  # shorter literal parts of a message say too little to look for


def rows() -> list[list[str]]:
    found = []
    for line in CATALOGUE.read_text(encoding="utf-8").splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if line.startswith("|") and len(cells) == 4 and cells[0] not in ("id", "---"):
            found.append(cells)
    return found


def test_the_catalogue_has_rows_with_unique_ids_sources_and_tests():
    catalogue = rows()
    assert len(catalogue) >= 30
    ids = [r[0] for r in catalogue]
    assert len(ids) == len(set(ids)), "row ids are unique"
    for row_id, behaviour, source, tests in catalogue:
        assert behaviour and source, f"row {row_id}: a behaviour and its source (or **assumption**)"
        assert TEST_REF.search(tests), f"row {row_id}: names at least one test as path::function"


def _functions(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    return {n.name for n in ast.walk(tree) if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef)}


def test_every_pinning_test_exists():
    missing = []
    for row_id, _behaviour, _source, tests in rows():
        for path, function in TEST_REF.findall(tests):
            file = ROOT / path
            if not file.is_file() or not function.startswith("test_") or function not in _functions(file):
                missing.append(f"{row_id}: {path}::{function}")
    assert not missing, "rows name tests that do not exist:\n" + "\n".join(missing)


def _literal(node: ast.expr) -> str | None:
    """The longest literal part of a message (an f-string's placeholders vary)."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    if isinstance(node, ast.JoinedStr):
        parts = [v.value for v in node.values if isinstance(v, ast.Constant) and isinstance(v.value, str)]
        return max(parts, key=len) if parts else None
    if isinstance(node, ast.BinOp):
        return _literal(node.left)
    return None


def _name(call: ast.Call) -> str | None:
    """What a call calls: ``f(...)``, ``self.f(...)`` and ``module.f(...)`` alike."""
    func = call.func
    return func.id if isinstance(func, ast.Name) else func.attr if isinstance(func, ast.Attribute) else None


def _helpers(tree: ast.Module, makers: dict[str, int]) -> dict[str, int]:
    """Functions that build a refusal from one of their parameters: name -> that parameter's position.

    ``def _bad(message): return GraphError(400, "Request_BadRequest", message)`` makes ``_bad("…")`` a
    refusal whose message is its first argument (a method's ``self`` does not count). Found until no
    more appear, so a helper calling a helper counts too.
    """
    found = dict(makers)
    functions = [n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef)]
    while True:
        before = len(found)
        for function in functions:
            params = [a.arg for a in function.args.args]
            params = params[1:] if params[:1] in (["self"], ["cls"]) else params
            for node in ast.walk(function):
                name = _name(node) if isinstance(node, ast.Call) else None
                if name not in found or function.name in found:
                    continue
                assert isinstance(node, ast.Call) and name is not None
                argument = node.args[found[name]] if len(node.args) > found[name] else None
                if isinstance(argument, ast.Name) and argument.id in params:
                    found[function.name] = params.index(argument.id)
        if len(found) == before:
            return found


#: The refusals' constructors and where their message (Graph) or AADSTS code (identity) is.
MESSAGES = {"GraphError": 2, "UnsupportedQueryError": 0, "RefusalError": 2}
CODES = {"TokenError": 1, "FederationError": 0}


def refusals() -> list[tuple[str, str]]:
    """(where, what the catalogue must mention) for every refusal written in the sandbox.

    Refusals made through a module's own helper (``_bad(message)``, ``_unsupported(message)``) count
    as well as the constructors called directly.
    """
    found: list[tuple[str, str]] = []
    for path in SOURCES:
        tree = ast.parse(path.read_text(encoding="utf-8"))
        messages, codes = _helpers(tree, MESSAGES), _helpers(tree, CODES)
        for node in ast.walk(tree):
            name = _name(node) if isinstance(node, ast.Call) else None
            if name is None:
                continue
            assert isinstance(node, ast.Call)
            where = f"{path.relative_to(ROOT)}:{node.lineno}"
            if name in codes and len(node.args) > codes[name]:
                code = node.args[codes[name]]
                if isinstance(code, ast.Constant):
                    found.append((where, f"AADSTS{code.value!s}"))
            elif name in messages and len(node.args) > messages[name]:
                text = _literal(node.args[messages[name]])
                fragment = (text or "").strip(" '.:")[:40].strip(" '")
                if len(fragment) >= MIN_FRAGMENT:
                    found.append((where, fragment))
    return found


def test_the_refusal_scan_sees_the_strict_refusals():
    wanted = {what for _where, what in refusals()}
    assert any(w.startswith("does not contain Content-Type header") for w in wanted)
    assert "AADSTS50105" in wanted and "Permission entry already exists" in wanted
    # made through a module's own helper: _bad(message), _unsupported(message), self._injected_429(message)
    assert "Property 'name' is read-only and cannot" in wanted
    assert "Sorting by signInActivity is not support" in wanted
    assert "Too many requests (injected)" in wanted
    assert "AADSTS700211" in wanted  # FederationError(code, text) in sandbox/federation.py


@pytest.mark.parametrize(("where", "what"), refusals())
def test_every_refusal_has_a_row(where: str, what: str):
    assert what in CATALOGUE.read_text(encoding="utf-8"), (
        f"{where} can answer {what!r}: add it to a row of docs/sandbox-conformance.md (with its source or "
        "**assumption**, and the test that pins it)"
    )
