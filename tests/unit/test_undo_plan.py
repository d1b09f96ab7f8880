"""The undo confirmation names the accounts it will re-enable (a count alone hides an edited journal)."""

from __future__ import annotations

from pathlib import Path

from revoke_ops.undo import SHOWN, UndoPlan


def test_the_question_names_the_accounts_and_how_many_more():
    few = UndoPlan("t1", Path("j.jsonl"), 2, 0, accounts=("alice@contoso.com", "bob@contoso.com"))
    assert "Re-enable 2 account(s)" in few.question()
    assert ": alice@contoso.com, bob@contoso.com (" in few.question()
    many = UndoPlan("t1", Path("j.jsonl"), 25, 1, 3, tuple(f"user{n}@contoso.com" for n in range(25)))
    question = many.question()
    assert f"user{SHOWN - 1}@contoso.com and {25 - SHOWN} more" in question
    assert f"user{SHOWN}@contoso.com" not in question
    assert "3 it disabled whose state before the run is unknown stay disabled" in question
