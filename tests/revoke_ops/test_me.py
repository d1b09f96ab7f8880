"""``revoke-ops me`` when Graph fails, through the real command against the sandbox (issue 12, W3).

Was: every non-2xx answer to ``POST /me/revokeSignInSessions`` was "Graph refused", exit 3 (an
authentication problem), and the request was sent once: a 503 sent an operator after their
permissions mid-incident. Revocation is idempotent, so 429/5xx are retried under the retry policy;
what keeps failing is the service's (exit 4), what Graph refuses stays exit 3.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from revoke_ops.cli import ExitCode
from sandbox.graph.base import Request, Response
from tests.revoke_ops.conftest import DOMAIN, Ops, write_bundle
from tests.sandbox.conftest import Running

Handler = Callable[[Request, str | None], Response]
SCOPES = ("User.RevokeSessions.All", "User.Read.All")


@pytest.fixture
def me_ops(sandbox: Running, tmp_path: Path) -> Iterator[Ops]:
    creds = sandbox.app("me-faults", scopes=SCOPES, public_client=True)
    bundle = write_bundle(sandbox, creds, tmp_path / "b.json", app_roles=(), delegated=SCOPES)
    sandbox.settings(autoApproveUser=f"operator@{DOMAIN}")
    yield Ops(sandbox, creds, bundle)
    sandbox.settings(autoApproveUser=None)


def fail_revoke_me(ops: Ops, monkeypatch: pytest.MonkeyPatch, answers: list[Response]) -> list[int]:
    """Answer the next POST /me/revokeSignInSessions with ``answers`` in turn; returns the calls seen."""
    graph = ops.run.sandbox.graph
    original: Handler = graph.handle
    calls: list[int] = []

    def handle(request: Request, auth: str | None) -> Response:
        if request.method == "POST" and request.path.rstrip("/") == "/me/revokeSignInSessions":
            calls.append(len(calls))
            if answers:
                return answers.pop(0)
        return original(request, auth)

    monkeypatch.setattr(graph, "handle", handle)
    return calls


def unavailable() -> Response:
    body = {"error": {"code": "serviceNotAvailable", "message": "Service unavailable."}}
    return Response(503, body, {"Retry-After": "0", "Content-Type": "application/json"})


def test_me_retries_a_503_and_revokes(me_ops: Ops, monkeypatch: pytest.MonkeyPatch) -> None:
    before = len(me_ops.run.revocations())
    calls = fail_revoke_me(me_ops, monkeypatch, [unavailable(), unavailable()])
    result = me_ops.cli("me", "--delegated")
    assert result.returncode == ExitCode.OK, result.stderr
    assert len(calls) == 3, "two 503s, then the revocation"
    assert [r["userId"] for r in me_ops.run.revocations()[before:]] == [me_ops.run.user("operator").id]


def test_me_when_graph_keeps_failing_is_a_service_failure_not_an_auth_one(
    me_ops: Ops, monkeypatch: pytest.MonkeyPatch
) -> None:
    before = len(me_ops.run.revocations())
    calls = fail_revoke_me(me_ops, monkeypatch, [unavailable() for _ in range(20)])
    result = me_ops.cli("me", "--delegated")
    assert result.returncode == ExitCode.SERVICE, result.stderr  # was: 3, "Graph refused"
    assert "kept failing" in result.stderr and "serviceNotAvailable" in result.stderr, result.stderr
    assert "may not be revoked" in result.stderr and "Graph refused" not in result.stderr
    assert len(calls) == 6, "the READ policy's six attempts"
    assert len(me_ops.run.revocations()) == before


def test_me_refused_by_graph_is_still_an_auth_failure_sent_once(me_ops: Ops, monkeypatch: pytest.MonkeyPatch) -> None:
    body = {"error": {"code": "Authorization_RequestDenied", "message": "Insufficient privileges."}}
    calls = fail_revoke_me(me_ops, monkeypatch, [Response(403, body, {"Content-Type": "application/json"})])
    result = me_ops.cli("me", "--delegated")
    assert result.returncode == ExitCode.AUTH, result.stderr
    assert "Graph refused: 403 Authorization_RequestDenied" in result.stderr, result.stderr
    assert len(calls) == 1, "a refusal is not retried"
