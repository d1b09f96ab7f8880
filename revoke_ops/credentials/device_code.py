"""A device-code sign-in that a retry resumes instead of starting over with a new code.

azure-identity's ``DeviceCodeCredential`` starts a new device flow (a new code for the operator to
type) on every interactive attempt. When the identity platform fails for a moment while the tool
redeems the code (AADSTS90033, a 5xx) the operator has usually already signed in; a retry that
starts over would ask them again. This credential keeps the flow it started until the flow gives a
token, is refused for good, or expires, and a retry polls the same device code again: RFC 8628
(section 3.5) keeps a device code valid until it is redeemed or expires.

It overrides ``_request_token``, the hook each azure-identity interactive credential implements,
doing what ``DeviceCodeCredential``'s does (azure-identity 1.27, pinned in requirements.txt) with
the flow kept; ``tests/revoke_ops/test_credentials_signin.py`` runs it against the sandbox. Those
hooks are not azure-identity's public surface: :func:`device_code_credential` uses this class only
while they look as expected, and otherwise azure-identity's own credential (a retry then shows a new
code — the only loss), so an upgrade can cost the convenience, never the sign-in.
"""

from __future__ import annotations

import logging
import time
from datetime import UTC, datetime
from typing import Any

from azure.core.exceptions import ClientAuthenticationError
from azure.identity import DeviceCodeCredential

__all__ = ["ResumableDeviceCodeCredential", "device_code_credential", "resumable_supported"]

log = logging.getLogger(__name__)

#: Device-flow answers after which the code is spent (RFC 8628 section 3.5, and Entra's
#: ``bad_verification_code``): a retry has to start a new flow.
SPENT = frozenset({"authorization_declined", "access_denied", "expired_token", "bad_verification_code"})


class ResumableDeviceCodeCredential(DeviceCodeCredential):
    """``DeviceCodeCredential`` whose retry after a failed redemption polls the code already shown."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._flow: dict[str, Any] | None = None

    def _request_token(self, *scopes: str, **kwargs: Any) -> dict[str, Any]:
        app: Any = self._get_app(**kwargs)  # a msal.PublicClientApplication
        flow = self._flow
        if flow is not None and float(flow.get("expires_at", 0)) > time.time():
            log.info("the identity platform failed after the device code was shown: asking again with the same code")
        else:
            flow = app.initiate_device_flow(list(scopes))
            if "error" in flow:
                raise ClientAuthenticationError(
                    message=f"Couldn't begin authentication: {flow.get('error_description') or flow.get('error')}"
                )
            self._show(flow)
        self._flow = flow
        exit_condition: dict[str, Any] = {}
        if self._timeout is not None and self._timeout < flow["expires_in"]:
            deadline = time.time() + self._timeout
            exit_condition["exit_condition"] = lambda _flow: time.time() > deadline
        result: dict[str, Any] = app.acquire_token_by_device_flow(
            flow, claims_challenge=kwargs.get("claims"), **exit_condition
        )
        if "access_token" in result or result.get("error") in SPENT:
            self._flow = None
        elif result.get("error") == "authorization_pending":
            self._flow = None  # the operator did not sign in in time: a retry shows a new code
            raise ClientAuthenticationError(message="Timed out waiting for user to authenticate")
        return result

    def _show(self, flow: dict[str, Any]) -> None:
        if self._prompt_callback:
            expires = datetime.fromtimestamp(flow["expires_at"], UTC)
            self._prompt_callback(flow["verification_uri"], flow["user_code"], expires)
        else:
            print(flow["message"])  # azure-identity's default prompt, on stdout


def resumable_supported() -> bool:
    """Whether azure-identity still has the hooks :class:`ResumableDeviceCodeCredential` overrides."""
    own = vars(DeviceCodeCredential)
    return all(callable(getattr(DeviceCodeCredential, name, None)) for name in ("_get_app", "_request_token")) and (
        "_request_token" in own
    )


def device_code_credential(client_id: str, **kwargs: Any) -> DeviceCodeCredential:
    """The resumable device-code credential, or azure-identity's own where its hooks changed."""
    if resumable_supported():
        return ResumableDeviceCodeCredential(client_id, **kwargs)
    log.warning("this azure-identity has no device-flow hook to resume: a retry after a failure will show a new code")
    return DeviceCodeCredential(client_id, **kwargs)
