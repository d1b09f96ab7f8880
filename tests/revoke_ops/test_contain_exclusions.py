"""Property: whatever form and letter case an exclusion and a target take, contain never disables the excluded."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from revoke_ops.contain import ContainEngine
from revoke_ops.directory import Capabilities, resolve_exclusions
from revoke_ops.engine import EngineOptions
from revoke_ops.graph import BatchItem, GraphResponse
from revoke_ops.resolve import Plan, stream

DOMAIN = "contoso.example"


class FakeGraph:
    """Answers reads (every account enabled), PATCHes (204) and revocations (200); records every write URL."""

    def __init__(self) -> None:
        self.patched: list[str] = []
        self.revoked: list[str] = []

    async def batch_read(self, items: list[BatchItem]) -> dict[str, dict[str, Any]]:
        return {i.id: {"id": i.id, "status": 200, "body": {"accountEnabled": True}} for i in items}

    async def batch(self, items: list[BatchItem], *, client_request_id: str | None = None) -> GraphResponse:
        answers = []
        for item in items:
            if item.method == "PATCH":
                self.patched.append(item.url.lower())
                answers.append({"id": item.id, "status": 204, "headers": {}, "body": None})
            else:
                self.revoked.append(item.url.lower())
                answers.append({"id": item.id, "status": 200, "headers": {}, "body": {"value": True}})
        return GraphResponse(200, {}, {"responses": answers}, client_request_id or "")


def recase(text: str, flips: list[bool]) -> str:
    return "".join(c.upper() if flips[n % len(flips)] else c.lower() for n, c in enumerate(text))


@settings(max_examples=60, deadline=None)
@given(
    kind=st.sampled_from(["id", "upn"]),
    others=st.integers(min_value=0, max_value=30),
    target_flips=st.lists(st.booleans(), min_size=1, max_size=8),
    exclusion_flips=st.lists(st.booleans(), min_size=1, max_size=8),
    position=st.integers(min_value=0, max_value=30),
)
def test_an_excluded_user_is_never_disabled(
    kind: str, others: int, target_flips: list[bool], exclusion_flips: list[bool], position: int
) -> None:
    excluded_id = str(uuid.uuid4())
    excluded = excluded_id if kind == "id" else f"Break.Glass@{DOMAIN}"
    names = [str(uuid.uuid4()) if kind == "id" else f"user{n}@{DOMAIN}" for n in range(others)]
    names.insert(min(position, len(names)), recase(excluded, target_flips))
    caps = Capabilities(frozenset({"User.RevokeSessions.All", "User.EnableDisableAccount.All"}))

    async def run() -> FakeGraph:
        exclusions = await resolve_exclusions(None, caps, [recase(excluded, exclusion_flips)], {kind})
        graph = FakeGraph()
        engine = ContainEngine(
            graph,  # the fake answers what the engine asks
            None,
            EngineOptions(write_burst=10_000),
            exclusions=exclusions,
            operator_id=None,
            global_admins=None,
        )
        await engine.run(stream(Plan(users=names, exclusions=exclusions), None, caps))
        return graph

    graph = asyncio.run(run())
    assert all(excluded.lower() not in url for url in graph.patched)
    assert len(graph.patched) == others, "everyone else was disabled"
    assert all(excluded.lower() not in url for url in graph.revoked)
