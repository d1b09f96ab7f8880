"""The confirmation question a run asks, revoke's and contain's (the words an operator answers y to)."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from revoke_ops.contain import ContainConfirmation
from revoke_ops.run import Confirmation

KNOWN: dict[str, Any] = {
    "tenant_id": "t1",
    "targets": 120,
    "targets_basis": "listed",
    "eta_seconds": 300.0,
    "excluded": 2,
    "privileged_first": 3,
    "privileged_in_tenant": 10,
    "dry_run": False,
    "operator": None,
    "resumed": False,
}
BASE = Confirmation(**KNOWN)


@pytest.mark.parametrize("resumed", [False, True])
def test_revoke_asks_to_revoke_at_one_write_per_user(resumed: bool) -> None:
    question = dataclasses.replace(BASE, resumed=resumed).question()
    start = "Resume revoking the sign-in sessions of" if resumed else "Revoke the sign-in sessions of"
    assert question == (
        f"{start} 120 listed target(s) in tenant t1, about 5.0 min at the write budget "
        "(2 excluded, 3 privileged first)? [y/N] "
    )


@pytest.mark.parametrize("resumed", [False, True])
def test_contain_asks_to_block_and_revoke_at_two_writes_per_user(resumed: bool) -> None:
    question = ContainConfirmation(**{**KNOWN, "resumed": resumed}).question()
    start = (
        "Resume blocking sign-in for and revoking the sessions of"
        if resumed
        else "Block sign-in for and revoke the sessions of"
    )
    assert question == (
        f"{start} 120 listed target(s) in tenant t1, about 5.0 min at the write budget, two writes per user "
        "(2 excluded, 3 privileged first)? [y/N] "
    )


def test_contain_without_an_eta_does_not_mention_the_budget() -> None:
    question = ContainConfirmation(**{**KNOWN, "eta_seconds": None}).question()
    assert question.startswith("Block sign-in for and revoke the sessions of 120 listed target(s) in tenant t1 (")
    assert "write" not in question
