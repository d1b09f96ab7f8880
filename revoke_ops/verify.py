"""``revoke-ops verify``: confirm from Graph that each revocation took effect.

For every user the journal calls ``revoked`` (or ``failed``: the change may have happened), read
``signInSessionsValidFromDateTime`` (returned only with ``$select``) and check it is not older than
the moment the revocation was sent.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from revoke_ops.credentials import Identity, token_claims
from revoke_ops.errors import InputError
from revoke_ops.graph import BatchItem, GraphSession, user_path
from revoke_ops.journal import read_journal
from revoke_ops.outcomes import Outcome
from revoke_ops.resolve import Capabilities

__all__ = ["VerifyResult", "verify"]

#: How far the client's clock may be ahead of Graph's when comparing timestamps.
DEFAULT_SKEW = timedelta(seconds=120)


def _parse(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


@dataclass
class VerifyResult:
    verified: list[dict[str, Any]] = field(default_factory=list)
    settled: list[dict[str, Any]] = field(default_factory=list)  # `failed` in the journal, but it did happen
    not_verified: list[dict[str, Any]] = field(default_factory=list)

    @property
    def exit_code(self) -> int:
        return 1 if self.not_verified else 0

    def to_json(self) -> dict[str, Any]:
        return {
            "verified": len(self.verified),
            "settled": len(self.settled),
            "notVerified": self.not_verified,
        }


async def verify(identity: Identity, journal: Path, skew: timedelta = DEFAULT_SKEW) -> VerifyResult:
    """Check every revoked (or possibly revoked) user of a journal against Graph.

    :raises InputError: unreadable journal, or one from another tenant.
    :raises MissingPermissionError: without User.Read.All.
    """
    state = read_journal(journal)
    if state.header.get("tenant") != identity.tenant_id:
        raise InputError(f"the journal {journal} is for tenant {state.header.get('tenant')}, not {identity.tenant_id}")
    token = await identity.token()
    caps = Capabilities.from_claims(token_claims(token.token))
    caps.require("verify", caps.read_users, "User.Read.All")
    todo = [
        r
        for r in state.outcomes.values()
        if r["outcome"] in (Outcome.REVOKED, Outcome.FAILED) and r.get("id") and r.get("sentAt")
    ]
    result = VerifyResult()
    async with GraphSession(identity) as session:
        for start in range(0, len(todo), 20):
            chunk = todo[start : start + 20]
            items = [
                BatchItem(str(n + 1), "GET", f"{user_path(r['id'])}?$select=id,signInSessionsValidFromDateTime")
                for n, r in enumerate(chunk)
            ]
            answers = await session.batch_read(items)  # retried per item under the READ policy
            for n, record in enumerate(chunk):
                answer = answers.get(str(n + 1), {})
                raw_body = answer.get("body")
                body: dict[str, Any] = raw_body if isinstance(raw_body, dict) else {}
                valid_from = body.get("signInSessionsValidFromDateTime") if answer.get("status") == 200 else None
                entry = {
                    "id": record["id"],
                    "upn": record.get("upn"),
                    "journal": record["outcome"],
                    "sentAt": record["sentAt"],
                    "signInSessionsValidFrom": valid_from,
                }
                if valid_from and _parse(valid_from) >= _parse(record["sentAt"]).replace(microsecond=0) - skew:
                    (result.verified if record["outcome"] == Outcome.REVOKED else result.settled).append(entry)
                else:
                    entry["reason"] = "not readable" if not valid_from else "sessions valid from before the revocation"
                    result.not_verified.append(entry)
    return result
