"""The result writers frame a revoke (or contain) run once: JSON and JSON Lines say the same things."""

from __future__ import annotations

import io
import json
import re
from typing import Any

import pytest

from revoke_ops.engine import Summary
from revoke_ops.outcomes import Outcome
from revoke_ops.output import writer


def _write(kind: str, *, dry_run: bool, contain: tuple[str, dict[str, Any]] | None) -> str:
    summary = Summary()
    summary.counts[Outcome.REVOKED] += 2
    summary.counts[Outcome.NOT_FOUND] += 1
    out = io.StringIO()
    w = writer(kind, out)
    if dry_run:
        summary.would_revoke = 1
        w.would_revoke({"id": "u1", "userPrincipalName": "ann@contoso.com", "target": "ann", "privileged": True})
    w.revoke_result(
        dry_run=dry_run,
        summary=summary,
        journal="j.jsonl",
        warnings=["a warning"],
        not_revoked=[{"outcome": "not_found", "id": None, "target": "bob@contoso.com", "reason": "no such user"}],
        contain=contain,
    )
    return out.getvalue()


CONTAIN = ("disabled: 2", {"contain": {"disabled": 2}, "notContained": [{"id": "u9", "reason": "a Global Admin"}]})


@pytest.mark.parametrize("contain", [None, CONTAIN])
@pytest.mark.parametrize("dry_run", [False, True])
def test_json_lines_carry_the_json_document_line_by_line(dry_run: bool, contain: Any) -> None:
    document = json.loads(_write("json", dry_run=dry_run, contain=contain))
    lines = [json.loads(line) for line in _write("jsonl", dry_run=dry_run, contain=contain).splitlines()]
    by_type: dict[str, list[dict[str, Any]]] = {}
    for line in lines:
        by_type.setdefault(line.pop("type"), []).append(line)
    assert by_type.get("wouldRevoke", []) == document.pop("wouldRevoke", [])
    assert by_type.get("notRevoked", []) == document.pop("notRevoked")
    assert by_type.get("notContained", []) == document.pop("notContained", [])
    assert [{**document.pop("summary"), **document}] == by_type["summary"]
    assert lines[-1] == by_type["summary"][0], "the summary comes last"


def test_the_table_shows_the_users_not_revoked_the_counts_contain_and_the_journal() -> None:
    text = _write("table", dry_run=True, contain=CONTAIN)
    counts = re.search(r"^would revoke +1$", text, re.MULTILINE)
    assert counts is not None, text
    assert text.index("WOULD REVOKE") < text.index("bob@contoso.com") < counts.start()
    assert "disabled: 2" in text and text.rstrip().endswith("journal: j.jsonl")
    assert "u9" not in text, "contain's rows are in its own table text"
