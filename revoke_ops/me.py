"""Revoke the signed-in operator's own sessions (``revoke-ops me``), as a library function.

``POST /me/revokeSignInSessions`` needs a delegated sign-in (Graph answers 400 to an app-only
token). It writes no journal: there is one user and nothing to resume or verify in bulk; the
result (who, when, Graph's request id) is returned and printed so it can go in the incident record.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from revoke_ops.credentials import Identity
from revoke_ops.errors import AuthError, InputError
from revoke_ops.graph import GraphSession

__all__ = ["MeResult", "revoke_me"]


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


async def revoke_me(identity: Identity) -> MeResult:
    """Revoke the signed-in operator's sign-in sessions (one sign-in, then two Graph calls).

    :raises InputError: the identity is not a delegated sign-in.
    :raises AuthError: no token, or Graph refused (its code kept).
    :raises TransientAuthError: the identity platform failed for now.
    """
    if not identity.delegated:
        raise InputError("`revoke-ops me` revokes the signed-in operator's sessions: add --delegated")
    await identity.token()  # sign in before anything else
    async with GraphSession(identity) as session:
        me = await session.read("/me?$select=id,userPrincipalName")
        body = me.body if me.status == 200 and isinstance(me.body, dict) else {}
        response = await session.send("POST", "/me/revokeSignInSessions")
    if not 200 <= response.status < 300:
        raise AuthError(
            f"Graph refused: {response.status} {response.error_code}: {response.error_message}", response.error_code
        )
    return MeResult(
        user=body.get("userPrincipalName"),
        user_id=body.get("id"),
        revoked_at=datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        request_id=response.request_id,
        client_request_id=response.client_request_id,
    )
