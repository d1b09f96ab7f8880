"""classify: one answer (a plain dict) -> a decision; no server, no waiting."""

from __future__ import annotations

from datetime import UTC, datetime

from revoke_ops.classify import Retry, classify, classify_batch
from revoke_ops.outcomes import Outcome


def error(code: str, message: str = "m") -> dict[str, object]:
    return {"error": {"code": code, "message": message, "innerError": {"request-id": "r-inner"}}}


def test_item_answers() -> None:
    ok = classify({"status": 200, "headers": {"request-id": "r1"}, "body": {"value": True}})
    assert ok.outcome is Outcome.REVOKED and ok.request_id == "r1"
    assert classify({"status": 204}).outcome is Outcome.REVOKED  # docs once said 204: any 2xx
    missing = classify({"status": 404, "body": error("Request_ResourceNotFound")})
    assert (missing.outcome, missing.code) == (Outcome.NOT_FOUND, "Request_ResourceNotFound")
    assert missing.request_id == "r-inner"
    denied = classify({"status": 403, "body": error("Authorization_RequestDenied", "Insufficient privileges.")})
    assert denied.outcome is Outcome.FORBIDDEN and denied.reason == "Insufficient privileges."
    delegated = classify({"status": 403, "body": error("Authorization_RequestDenied")}, delegated=True)
    assert "Privileged Authentication Administrator" in (delegated.reason or "")
    bad = classify({"status": 400, "body": error("BadRequest", "nope")})
    assert (bad.outcome, bad.code) == (Outcome.FAILED, "BadRequest")


def test_retries_carry_what_the_service_asked() -> None:
    throttled = classify({"status": 429, "headers": {"Retry-After": "7"}})
    assert (throttled.retry, throttled.retry_after, throttled.outcome) == (Retry.THROTTLED, 7.0, None)
    now = datetime(2026, 12, 7, 14, 0, tzinfo=UTC)
    dated = classify({"status": 503, "headers": {"retry-after": "Mon, 07 Dec 2026 14:00:45 GMT"}}, now=now)
    assert (dated.retry, dated.retry_after) == (Retry.ERROR, 45.0)
    assert classify({"status": 502}).retry is Retry.ERROR and classify({"status": 502}).retry_after is None
    assert classify({"status": 401, "body": error("InvalidAuthenticationToken")}).retry is Retry.TOKEN
    assert classify({"status": "garbage"}).retry is Retry.ERROR  # no status read: may not have arrived


def test_batch_answers_split_per_item() -> None:
    answer = {
        "status": 200,
        "headers": {"request-id": "top", "client-request-id": "cid"},
        "body": {
            "responses": [
                {"id": "2", "status": 429, "headers": {"Retry-After": "3"}},
                {"id": "1", "status": 200, "body": {"value": True}},
                {"id": "3", "status": 404, "body": error("Request_ResourceNotFound")},
            ]
        },
    }
    first, second, third, fourth = classify_batch(answer, 4)
    assert first.outcome is Outcome.REVOKED and first.client_request_id == "cid" and first.request_id == "top"
    assert second.retry is Retry.THROTTLED and second.retry_after == 3
    assert third.outcome is Outcome.NOT_FOUND
    assert fourth.outcome is Outcome.FAILED and fourth.code == "MissingBatchItem" and "verify" in (fourth.reason or "")


def test_a_200_that_is_not_a_batch_answer_may_have_happened() -> None:
    bodies: list[object] = [{"value": True}, None, [], {"responses": "x"}]
    for body in bodies:
        decisions = classify_batch({"status": 200, "body": body}, 2)
        assert [d.outcome for d in decisions] == [Outcome.FAILED] * 2
        assert all(d.code == "UnreadableResponse" and "may have happened" in (d.reason or "") for d in decisions)


def test_a_whole_batch_answer_applies_to_everyone_in_it() -> None:
    throttled = classify_batch({"status": 429, "headers": {"retry-after": "9"}}, 3)
    assert [(d.retry, d.retry_after) for d in throttled] == [(Retry.THROTTLED, 9.0)] * 3
    assert all(d.retry is Retry.ERROR for d in classify_batch({"status": 503}, 2))
    assert all(d.retry is Retry.TOKEN for d in classify_batch({"status": 401}, 2))
    # A 404/403 of the $batch endpoint itself says nothing about any one user.
    refused = classify_batch({"status": 404, "body": error("BadRequest")}, 2)
    assert [d.outcome for d in refused] == [Outcome.FAILED] * 2
