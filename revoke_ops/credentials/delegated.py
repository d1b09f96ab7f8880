"""Delegated sign-in: an operator signs in (device code or an interactive browser) with the app's client id.

One sign-in per command. azure-identity caches CAE and non-CAE tokens apart, and its interactive
credentials prompt again whenever the cache misses; so the credential is built with
``disable_automatic_authentication=True``, the operator is asked exactly once
(``authenticate(..., enable_cae=True)``, the way the Graph client asks), and every later token —
including a forced fresh one — comes silently from the cache or the refresh token. When that is no
longer possible the command fails with a clear message; it never shows a second code mid-run. When
the identity platform fails for a moment while the first code is redeemed, a retry redeems the same
code (:mod:`.device_code`) rather than showing a new one.

Delegated credentials exist only in the sync library; calling one on the event loop would block
it, so every call runs in a worker thread.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING, Any

from azure.core.credentials import AccessToken

from revoke_ops.credentials.identity import CredentialKind, Identity
from revoke_ops.credentials.tenant import resolve_where
from revoke_ops.errors import AuthError, InputError

if TYPE_CHECKING:
    from revoke_ops.bundle import Bundle

__all__ = ["DELEGATED_METHODS", "delegated_identity"]

DELEGATED_METHODS = ("device-code", "browser")


def _fresh_claims() -> str:
    """A claims request that the cached access token cannot satisfy (issued no earlier than now).

    MSAL then skips its cached access token and redeems the refresh token: a new token, no prompt.
    """
    return json.dumps({"access_token": {"nbf": {"essential": True, "value": str(int(time.time()))}}})


class SignInOnce:
    """An async face for a sync interactive credential that prompts the operator at most once."""

    def __init__(self, credential: Any) -> None:
        self._credential = credential
        self._lock = asyncio.Lock()
        self._signed_in = False
        self._force_fresh = False

    async def get_token(self, *scopes: str, **kwargs: Any) -> AccessToken:
        kwargs.setdefault("enable_cae", True)
        async with self._lock:
            if not self._signed_in:
                await asyncio.to_thread(self._credential.authenticate, scopes=list(scopes), **kwargs)
                self._signed_in = True
            elif self._force_fresh and not kwargs.get("claims"):
                kwargs["claims"] = _fresh_claims()
            self._force_fresh = False
        token: AccessToken = await asyncio.to_thread(self._credential.get_token, *scopes, **kwargs)
        return token

    async def renew(self) -> None:
        """Make the next token a fresh one (through the refresh token, never a new prompt)."""
        async with self._lock:
            self._force_fresh = self._signed_in

    async def close(self) -> None:
        close = getattr(self._credential, "close", None)
        if close is not None:
            await asyncio.to_thread(close)

    async def __aenter__(self) -> SignInOnce:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()


def delegated_identity(
    method: str,
    *,
    bundle: Bundle | None = None,
    client_id: str | None = None,
    tenant_id: str | None = None,
    cloud: str | None = None,
    prompt: Callable[[str, str, datetime], None] | None = None,
) -> Identity:
    """An operator signs in (device code, or an interactive browser) with the app's client id.

    The operator is asked once, on the first token; later tokens (and :meth:`Identity.fresh_token`)
    come silently from the cache or the refresh token.

    :raises InputError: no client id or tenant, an unknown method, options conflicting with the bundle.
    :raises AuthError: the bundle's stack granted no delegated permission.
    """
    from azure.identity import InteractiveBrowserCredential

    from revoke_ops.credentials.device_code import device_code_credential

    if method not in DELEGATED_METHODS:
        raise InputError(f"--delegated must be device-code or browser (got {method!r})")
    where = resolve_where(bundle=bundle, tenant_id=tenant_id, client_id=client_id, cloud=cloud)
    if not where.client_id or not where.tenant_id:
        raise InputError("--delegated needs the app's client id and tenant: pass --credentials BUNDLE.json")
    if bundle is not None and not bundle.delegated_permissions:
        raise AuthError(
            "this stack granted no delegated permission (permissionMode application): operators cannot sign in "
            "with it; set revoke-sessions:permissionMode to delegated or both and run `pulumi up`",
            code="NoDelegatedConsent",
        )
    client = where.client_id
    common: dict[str, Any] = {
        "tenant_id": where.tenant_id,
        "authority": where.authority_host,
        "disable_instance_discovery": True,
        "disable_automatic_authentication": True,
    }
    sync: Any
    if method == "device-code":
        # A retry after a transient failure polls the code already shown (no second code to type).
        sync = (
            device_code_credential(client, prompt_callback=prompt, **common)
            if prompt
            else device_code_credential(client, **common)
        )
    else:
        sync = InteractiveBrowserCredential(client_id=client, **common)
    credential = SignInOnce(sync)
    return Identity.signed_in(
        where,
        credential,
        kind=CredentialKind.DELEGATED,
        bundle=bundle,
        description=f"your sign-in to application {client}",
    )
