"""What an answer from Graph means for each user of a revocation batch: pure functions, no waiting.

:func:`classify` reads one answer — a ``$batch`` item, or a whole answer that is not a batch — as a
plain dict (``status``, ``headers``, ``body``) and returns a :class:`Decision`: a settled outcome, or
retry (throttled, failed for now, or the token was refused). :func:`classify_batch` splits a
``$batch`` answer into one decision per request. Waiting, counting and recording are the engine's.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import datetime
from enum import StrEnum
from typing import Any

from revoke_ops.outcomes import Outcome
from revoke_ops.retry import RETRY_STATUSES, parse_retry_after

__all__ = ["Decision", "Retry", "classify", "classify_batch"]

MAY_HAVE_HAPPENED = "the revocation may have happened: run `revoke-ops verify`"
DELEGATED_403 = (
    " Your directory role does not cover this user: Helpdesk or Password Administrator covers non-admins, "
    "User Administrator limited admins, Privileged Authentication Administrator privileged admins."
)


class Retry(StrEnum):
    """Why a request is sent again."""

    THROTTLED = "throttled"  # 429: after Retry-After; every sender pauses
    ERROR = "error"  # 5xx, timeouts, connection errors: after backoff (revocation is idempotent)
    TOKEN = "token"  # noqa: S105  # not a secret: 401: the token was refused; stop sending and re-acquire it first


@dataclass(frozen=True)
class Decision:
    """One user's fate from one answer: ``outcome`` when settled, else ``retry``."""

    outcome: Outcome | None = None
    retry: Retry | None = None
    retry_after: float | None = None  # seconds the service asked for (Retry-After), if any
    code: str | None = None
    reason: str | None = None
    status: int | None = None
    request_id: str | None = None
    client_request_id: str | None = None

    @property
    def settled(self) -> bool:
        return self.outcome is not None


def _headers(answer: Mapping[str, Any]) -> dict[str, str]:
    raw = answer.get("headers")
    return {str(k).lower(): str(v) for k, v in raw.items()} if isinstance(raw, Mapping) else {}


def _status(answer: Mapping[str, Any]) -> int:
    try:
        return int(answer.get("status") or 0)
    except (TypeError, ValueError):
        return 0


def classify(answer: Mapping[str, Any], *, delegated: bool = False, now: datetime | None = None) -> Decision:
    """Decide one answer: ``{"status": int, "headers": {...}, "body": ...}``.

    :param delegated: a signed-in operator: a 403 means their directory role does not cover the user.
    :param now: for a ``Retry-After`` given as an HTTP-date.
    """
    status = _status(answer)
    headers = _headers(answer)
    body = answer.get("body")
    error = body.get("error") if isinstance(body, Mapping) else None
    error = error if isinstance(error, Mapping) else {}
    inner = error.get("innerError")
    inner = inner if isinstance(inner, Mapping) else {}
    code = str(error["code"]) if error.get("code") else None
    reason = str(error["message"]) if error.get("message") else None
    ids: dict[str, Any] = {
        "status": status,
        "request_id": headers.get("request-id") or (str(inner["request-id"]) if inner.get("request-id") else None),
        "client_request_id": headers.get("client-request-id"),
    }
    asked = parse_retry_after(headers.get("retry-after"), now)
    if 200 <= status < 300:
        return Decision(Outcome.REVOKED, **ids)
    if status == 404:
        return Decision(Outcome.NOT_FOUND, code=code or "Request_ResourceNotFound", reason=reason, **ids)
    if status == 403:
        return Decision(
            Outcome.FORBIDDEN,
            code=code or "Authorization_RequestDenied",
            reason=f"{reason or 'Forbidden.'}{DELEGATED_403}" if delegated else reason,
            **ids,
        )
    if status == 401:
        return Decision(retry=Retry.TOKEN, code=code or "InvalidAuthenticationToken", reason=reason, **ids)
    if status == 429:
        return Decision(retry=Retry.THROTTLED, retry_after=asked, code=code or "TooManyRequests", reason=reason, **ids)
    if status == 0 or status in RETRY_STATUSES:
        return Decision(retry=Retry.ERROR, retry_after=asked, code=code or f"HTTP{status}", reason=reason, **ids)
    return Decision(Outcome.FAILED, code=code or f"HTTP{status}", reason=reason, **ids)


def classify_batch(
    answer: Mapping[str, Any], count: int, *, delegated: bool = False, now: datetime | None = None
) -> list[Decision]:
    """One decision per request of a ``$batch`` of ``count`` (item ids ``"1"`` .. ``str(count)``).

    A 200 that is not a batch answer, or lacks an item, means the revocation may have happened:
    ``failed``, settled by ``verify``. An answer that is not 200 applies to every request in it
    (nothing in a throttled or failed batch ran).
    """
    status = _status(answer)
    headers = _headers(answer)
    top_request_id, top_client_request_id = headers.get("request-id"), headers.get("client-request-id")
    if status != 200:
        whole = classify(answer, delegated=delegated, now=now)
        if whole.outcome in (Outcome.REVOKED, Outcome.NOT_FOUND, Outcome.FORBIDDEN):
            # The $batch endpoint itself answered this: not an answer about any one user.
            whole = Decision(Outcome.FAILED, code=whole.code or f"HTTP{status}", reason=whole.reason, status=status)
        return [whole] * count
    body = answer.get("body")
    responses = body.get("responses") if isinstance(body, Mapping) else None
    if not isinstance(responses, list):
        failed = Decision(
            Outcome.FAILED,
            code="UnreadableResponse",
            reason=f"the batch answer held no responses; {MAY_HAVE_HAPPENED}",
            status=200,
            request_id=top_request_id,
            client_request_id=top_client_request_id,
        )
        return [failed] * count
    by_id = {str(a.get("id")): a for a in responses if isinstance(a, Mapping)}
    decisions = []
    for n in range(1, count + 1):
        item = by_id.get(str(n))
        if item is None:
            decisions.append(
                Decision(
                    Outcome.FAILED,
                    code="MissingBatchItem",
                    reason=f"the batch answer had no entry for this request; {MAY_HAVE_HAPPENED}",
                    request_id=top_request_id,
                    client_request_id=top_client_request_id,
                )
            )
            continue
        decision = classify(item, delegated=delegated, now=now)
        if decision.request_id is None or decision.client_request_id is None:
            decision = replace(
                decision,
                request_id=decision.request_id or top_request_id,
                client_request_id=decision.client_request_id or top_client_request_id,
            )
        decisions.append(decision)
    return decisions
