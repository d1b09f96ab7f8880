"""Group and file runs by activity: the cost of reading the windows, and the exact target keys."""

from __future__ import annotations

import uuid

from revoke_ops.activity_plan import READ_SHARE, TargetKeys, read_cost


def test_read_cost_counts_full_pages_plus_one_partial_per_listing_beyond_the_burst() -> None:
    cost = read_cost([1000, 1001], used=3, per_minute=10, basis="counted")
    assert cost.pages == 2 + 2 + 8  # full pages of 500; four windows x two properties each end once
    assert cost.seconds == (cost.pages + 3 - 10) * 6.0  # ten reads at once, then one every 6 s
    assert read_cost([10, 10], used=2, per_minute=10, basis="").seconds == 0.0  # within the burst
    assert read_cost([10**6, 10**6], used=0, per_minute=0, basis="").seconds == 0.0  # unpaced
    assert 0 < READ_SHARE <= 1


def test_target_keys_match_exactly_by_id_or_upn() -> None:
    uid = str(uuid.uuid4())
    keys = TargetKeys([uid.upper(), "alice@contoso.example"])
    assert keys.match({"id": uid, "userPrincipalName": "x@contoso.example"}) == uid
    other = str(uuid.uuid4())
    assert keys.match({"id": other, "userPrincipalName": "Alice@Contoso.example"}) == "alice@contoso.example"
    assert keys.match({"id": str(uuid.uuid4()), "userPrincipalName": "alice@contoso.exampl"}) is None
    assert keys.match({}) is None and len(keys) == 2
