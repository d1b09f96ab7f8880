"""The hint after a stopped run names the command that wrote the journal (contain resumes with contain)."""

from __future__ import annotations

from pathlib import Path

from revoke_ops.records import Summary
from revoke_ops.request import how_to_continue
from revoke_ops.run import _stopped


def test_a_stopped_contain_run_says_to_resume_with_contain() -> None:
    summary = Summary(stopped="tokens kept failing")
    journal = Path("/var/tmp/j.jsonl")
    contain = _stopped(summary, how_to_continue(journal, "contain")) or ""
    assert "`revoke-ops contain --resume /var/tmp/j.jsonl`" in contain
    assert "`revoke-ops revoke --resume /var/tmp/j.jsonl`" in (_stopped(summary, how_to_continue(journal)) or "")
    assert _stopped(Summary(), how_to_continue(journal, "contain")) is None
