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
#: where the Graph side's refusals are written (GraphError / UnsupportedQueryError messages)
GRAPH_SOURCES = [*sorted((ROOT / "sandbox" / "graph").glob("*.py")), ROOT / "sandbox" / "odata.py"]
#: where the identity side's refusals are written (TokenError with an AADSTS code)
IDENTITY_SOURCES = [ROOT / "sandbox" / "identity.py", ROOT / "sandbox" / "server.py"]
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


def refusals() -> list[tuple[str, str]]:
    """(where, what the catalogue must mention) for every refusal written in the sandbox."""
    found: list[tuple[str, str]] = []
    for path in GRAPH_SOURCES + IDENTITY_SOURCES:
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Name)):
                continue
            where = f"{path.relative_to(ROOT)}:{node.lineno}"
            args = node.args
            if node.func.id == "TokenError" and len(args) >= 2 and isinstance(args[1], ast.Constant):
                found.append((where, f"AADSTS{args[1].value!s}"))
            elif node.func.id in ("GraphError", "UnsupportedQueryError"):
                message = args[2] if node.func.id == "GraphError" and len(args) > 2 else args[0] if args else None
                text = _literal(message) if message is not None else None
                fragment = (text or "").strip(" '.:")[:40].strip(" '")
                if len(fragment) >= MIN_FRAGMENT:
                    found.append((where, fragment))
    return found


def test_the_refusal_scan_sees_the_strict_refusals():
    wanted = {what for _where, what in refusals()}
    assert any(w.startswith("does not contain Content-Type header") for w in wanted)
    assert "AADSTS50105" in wanted and "Permission entry already exists" in wanted


@pytest.mark.parametrize(("where", "what"), refusals())
def test_every_refusal_has_a_row(where: str, what: str):
    assert what in CATALOGUE.read_text(encoding="utf-8"), (
        f"{where} can answer {what!r}: add it to a row of docs/sandbox-conformance.md (with its source or "
        "**assumption**, and the test that pins it)"
    )
