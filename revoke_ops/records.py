"""The engine's data: its options in, users to send or already settled, records and the summary out.

Kept apart from :mod:`revoke_ops.engine` so resolution, the run and the CLI share the types without
the sending machinery.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from revoke_ops.classify import Decision
from revoke_ops.errors import InputError
from revoke_ops.outcomes import OUTCOMES, Outcome
from revoke_ops.pacer import Pacer
from revoke_ops.redact import redact
from revoke_ops.retry import DEFAULT_MAX_RETRY_WAIT, RetryPolicy

__all__ = ["MAX_BATCH", "NOT_SHOWN", "EngineOptions", "Item", "Record", "Send", "Settled", "Summary"]

MAX_BATCH = 20  # Graph's limit of requests in one $batch

#: Outcomes that are what was asked: not listed among the users not revoked.
NOT_SHOWN = frozenset({Outcome.REVOKED, Outcome.EXCLUDED, Outcome.SKIPPED_EXTERNAL, Outcome.SKIPPED_INACTIVE})


@dataclass(slots=True)
class Send:
    """A user to revoke: ``ref`` is what goes into the URL (object id, else the UPN)."""

    ref: str
    id: str | None
    upn: str | None
    target: str
    privileged: bool = False
    last: bool = False  # the signed-in operator: revoked after everyone else


@dataclass(slots=True)
class Settled:
    """A user whose outcome is known without sending anything (excluded, external, not found)."""

    id: str | None
    upn: str | None
    target: str
    outcome: Outcome
    reason: str
    code: str | None = None


Item = Send | Settled


#: The CLI option of each engine setting, for error messages.
OPTION_NAMES = {
    "write_burst": "--write-burst",
    "write_rate": "--write-rate",
    "concurrency": "--concurrency",
    "batch_size": "batch size",
    "max_attempts": "--max-attempts",
    "max_throttled": "max throttled",
    "backoff_base": "backoff base",
    "backoff_max": "backoff max",
    "max_retry_wait": "--max-retry-wait",
}


@dataclass
class EngineOptions:
    """How fast and how persistently the engine sends; validated on construction.

    :raises InputError: a value out of range, naming the option and what is allowed.
    """

    write_burst: float = 3000  # the bucket's capacity (Graph: 3,000 writes per app+tenant)
    write_rate: float = 20.0  # refill per second (3,000 per 150 s)
    concurrency: int = 4  # batches in flight
    batch_size: int = MAX_BATCH
    max_attempts: int = 10  # per user, for 5xx, connection errors and timeouts (revocation is idempotent)
    max_throttled: int = 50  # 429s tolerated per user before giving up
    backoff_base: float = 1.0
    backoff_max: float = 60.0
    max_retry_wait: float = DEFAULT_MAX_RETRY_WAIT  # seconds: the longest single pause, whatever Retry-After says
    dry_run: bool = False
    delegated: bool = False  # a signed-in operator: a 403 means their directory role does not cover the user

    def __post_init__(self) -> None:
        def check(name: str, ok: bool, allowed: str) -> None:
            value = getattr(self, name)
            if not ok:
                raise InputError(f"{OPTION_NAMES[name]} must be {allowed} (got {value!r})")

        def positive(name: str) -> bool:
            value = getattr(self, name)
            return isinstance(value, int | float) and math.isfinite(value) and value > 0

        check("write_rate", positive("write_rate"), "a number of writes per second above 0")
        check("write_burst", positive("write_burst") and self.write_burst >= 1, "a number of writes of at least 1")
        check("concurrency", isinstance(self.concurrency, int) and self.concurrency >= 1, "a whole number >= 1")
        check("batch_size", isinstance(self.batch_size, int) and 1 <= self.batch_size <= MAX_BATCH, "from 1 to 20")
        check("max_attempts", isinstance(self.max_attempts, int) and self.max_attempts >= 1, "a whole number >= 1")
        check("max_throttled", isinstance(self.max_throttled, int) and self.max_throttled >= 0, "a whole number >= 0")
        check("backoff_base", positive("backoff_base"), "seconds above 0")
        check("backoff_max", positive("backoff_max"), "seconds above 0")
        check("max_retry_wait", positive("max_retry_wait"), "seconds above 0")

    def seconds_for(self, writes: float) -> float:
        """How long ``writes`` take at the write budget: the burst at once, then the rate."""
        return max(0.0, writes - self.write_burst) / self.write_rate

    def policy(self) -> RetryPolicy:
        """The engine's write policy."""
        return RetryPolicy(
            total=self.max_attempts,
            backoff_factor=self.backoff_base,
            backoff_max=max(self.backoff_base, self.backoff_max),
            max_retry_wait=self.max_retry_wait,
        )


@dataclass(frozen=True, slots=True)
class Record:
    """One user's outcome as the journal and the summary keep it."""

    who: Send | Settled
    outcome: Outcome
    code: str | None = None
    reason: str | None = None
    status: int | None = None
    request_id: str | None = None
    client_request_id: str | None = None
    sent_at: str | None = None

    @classmethod
    def of(cls, who: Send, decision: Decision, sent_at: str, client_request_id: str) -> Record:
        assert decision.outcome is not None
        return cls(
            who,
            decision.outcome,
            decision.code,
            decision.reason,
            decision.status,
            decision.request_id,
            decision.client_request_id or client_request_id,
            sent_at,
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.who.id,
            "upn": self.who.upn,
            "target": self.who.target,
            "outcome": str(self.outcome),
            "code": self.code,
            "status": self.status,
            "reason": redact(self.reason) if self.reason else self.reason,  # a peer may echo secrets
            "requestId": self.request_id,
            "clientRequestId": self.client_request_id,
            "sentAt": self.sent_at,
        }


@dataclass
class Summary:
    counts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(map(str, OUTCOMES), 0))
    would_revoke: int = 0
    requests: int = 0
    throttled: int = 0
    not_revoked: list[dict[str, Any]] = field(default_factory=list)  # at most 1,000 kept for display
    first_revocation_at: float | None = None
    started: float = 0.0
    finished: float = 0.0
    pauses: int = 0  # pauses for tokens (identity platform outage, Graph 401)
    #: why the engine stopped sending before every user was handled (None: it did not)
    stopped: str | None = None
    pacer: Pacer | None = field(default=None, repr=False, compare=False)

    @property
    def total(self) -> int:
        return sum(self.counts.values()) + self.would_revoke

    def eta(self, remaining: int) -> float | None:
        """Seconds until ``remaining`` more users can be sent, from the pacer's budget (None: unknown)."""
        return self.pacer.eta(remaining) if self.pacer is not None else None

    def to_json(self) -> dict[str, Any]:
        return {
            "outcomes": {str(k): v for k, v in self.counts.items()},
            "wouldRevoke": self.would_revoke,
            "requests": self.requests,
            "throttled": self.throttled,
            "seconds": round(self.finished - self.started, 3),
            **({"tokenPauses": self.pauses} if self.pauses else {}),
            **({"stopped": self.stopped} if self.stopped else {}),
        }
