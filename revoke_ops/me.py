"""Revoke the signed-in operator's own sessions (``revoke-ops me``), as a library function.

``POST /me/revokeSignInSessions`` needs a delegated sign-in (Graph answers 400 to an app-only
token). It writes no journal: there is one user and nothing to resume or verify in bulk; the
result (who, when, Graph's request id) is returned and printed so it can go in the incident record.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime

from revoke_ops.credentials import Identity
from revoke_ops.errors import AuthError, InputError, ServiceError, TransportError, UnreadableResponseError
from revoke_ops.facts import rfc3339
from revoke_ops.graph import GraphResponse, GraphSession
from revoke_ops.retry import READ, RetryPolicy

__all__ = ["MeResult", "revoke_me"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class MeResult:
    """Whose sessions were revoked, when, and Graph's ids for the request."""

    user: str | None
    user_id: str | None
    revoked_at: str
    request_id: str | None
    client_request_id: str

    def to_json(self) -> dict[str, str | None]:
        return {
            "user": self.user,
            "userId": self.user_id,
            "revokedAt": self.revoked_at,
            "requestId": self.request_id,
            "clientRequestId": self.client_request_id,
            "journal": None,
        }


async def revoke_me(identity: Identity, *, policy: RetryPolicy = READ) -> MeResult:
    """Revoke the signed-in operator's sign-in sessions (one sign-in, then two Graph calls).

    The revocation is idempotent, so a request that may not have arrived, a 429 or a 5xx is sent
    again under ``policy`` (default: the quick READ policy, the operator is waiting at the prompt).

    :raises InputError: the identity is not a delegated sign-in.
    :raises AuthError: no token, or Graph refused (4xx, its code kept): exit 3.
    :raises ServiceError: Graph kept failing (429, 5xx, no answer) through every attempt: exit 4.
    :raises TransientAuthError: the identity platform failed for now.
    """
    if not identity.delegated:
        raise InputError("`revoke-ops me` revokes the signed-in operator's sessions: add --delegated")
    await identity.token()  # sign in before anything else
    async with GraphSession(identity) as session:
        me = await session.read("/me?$select=id,userPrincipalName")
        body = me.body if me.status == 200 and isinstance(me.body, dict) else {}
        response = await _revoke(session, policy)
    if not 200 <= response.status < 300:
        refused = f"{response.status} {response.error_code}: {response.error_message}"
        if policy.is_retry(response.status):
            raise ServiceError(
                f"Microsoft Graph kept failing to revoke your sessions ({policy.total} attempts, last: {refused}); "
                "they may not be revoked: run `revoke-ops me` again",
                response.error_code,
            )
        raise AuthError(f"Graph refused: {refused}", response.error_code)
    return MeResult(
        user=body.get("userPrincipalName"),
        user_id=body.get("id"),
        revoked_at=rfc3339(datetime.now(UTC)),
        request_id=response.request_id,
        client_request_id=response.client_request_id,
    )


async def _revoke(session: GraphSession, policy: RetryPolicy) -> GraphResponse:
    """POST /me/revokeSignInSessions, repeated under ``policy``; the last answer when it is not retried."""
    attempt = 0
    while True:
        attempt += 1
        try:
            response = await session.send("POST", "/me/revokeSignInSessions")
        except (TransportError, UnreadableResponseError) as err:
            if policy.is_exhausted(attempt):
                raise ServiceError(
                    f"revoking your sessions failed {attempt} times ({err}); they may not be revoked: "
                    "run `revoke-ops me` again",
                    type(err).__name__,
                ) from err
            wait = policy.wait(attempt)
        else:
            if not policy.is_retry(response.status) or policy.is_exhausted(attempt):
                return response
            wait = policy.wait(attempt, response.retry_after())
        log.info("POST /me/revokeSignInSessions: attempt %d failed, retrying in %.1f s", attempt, wait.seconds)
        await session.clock.sleep(wait.seconds)
