"""The closed set of per-user outcomes a run records (journal, summary, verify)."""

from __future__ import annotations

from enum import StrEnum

__all__ = ["NOT_REVOKED", "OUTCOMES", "Outcome"]


class Outcome(StrEnum):
    """What happened to one user; the value is what the journal and ``--output json`` say."""

    REVOKED = "revoked"
    NOT_FOUND = "not_found"
    FORBIDDEN = "forbidden"
    SKIPPED_EXTERNAL = "skipped_external"
    SKIPPED_INACTIVE = "skipped_inactive"  # --skip-inactive-days: no sign-in activity for N days
    EXCLUDED = "excluded"
    FAILED = "failed"


OUTCOMES = tuple(Outcome)
#: Outcomes that leave a target's sessions in place although it was asked for (exit 1).
NOT_REVOKED = frozenset({Outcome.NOT_FOUND, Outcome.FORBIDDEN, Outcome.FAILED})
