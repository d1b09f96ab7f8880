"""The identity platform's user sign-in flows: device code, authorization code with PKCE (and the
authorize endpoint), refresh tokens, and the user tokens they all end in.

A :class:`DelegatedFlows` belongs to one :class:`~sandbox.identity.IdentityPlatform`, which serves
the endpoints and hands these grants on; the flows use its application lookup, scopes, consent and
signing. Errors come back in Entra's shape with Entra's AADSTS codes (:class:`~sandbox.oauth.TokenError`).
"""

from __future__ import annotations

import hashlib
import json
import secrets
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import urlparse

from sandbox.oauth import TOKEN_LIFETIME, TokenError, b64url
from sandbox.tenant import Application, Tenant, User

if TYPE_CHECKING:
    from sandbox.identity import IdentityPlatform


@dataclass
class DeviceFlow:
    device_code: str
    user_code: str
    client_id: str
    scope: str
    expires: float
    user_id: str | None = None
    denied: bool = False


@dataclass
class AuthCode:
    client_id: str
    user_id: str
    redirect_uri: str
    scope: str
    challenge: str | None
    nonce: str | None
    expires: float


class DelegatedFlows:
    """Pending device codes, authorization codes and refresh tokens of one identity platform."""

    def __init__(self, platform: IdentityPlatform) -> None:
        self.platform = platform
        self.devices: dict[str, DeviceFlow] = {}
        self.codes: dict[str, AuthCode] = {}
        self.refresh_tokens: dict[str, tuple[str, str, str]] = {}  # token -> (client, user, scope)

    @property
    def tenant(self) -> Tenant:
        return self.platform.tenant

    def _user_tokens(self, app: Application, user: User, scope: str, nonce: str | None = None) -> dict[str, Any]:
        if not user.account_enabled:
            # Entra's error codes reference: AADSTS50057 UserAccountDisabled (every grant, refresh included).
            raise TokenError(
                "invalid_grant",
                50057,
                "The user account is disabled. The user object in Active Directory backing this account has been "
                "disabled. An admin can re-enable this account through PowerShell.",
            )
        resource, _scopes = self.platform.resource_of(scope)
        if resource != self.platform.graph_resource:
            # Delegated consent is emulated for Microsoft Graph only.
            raise TokenError(
                "invalid_grant",
                65001,
                f"The user or administrator has not consented to use the application with ID '{app.app_id}' for "
                f"{resource}.",
            )
        sp = self.tenant.sp_for_app(app.app_id)
        if sp is None:
            raise TokenError(
                "invalid_client", 7000229, f"The client application {app.app_id} is missing service principal.", 401
            )
        if sp.app_role_assignment_required and not self.tenant.user_assigned(sp.id, user.id):
            raise TokenError(
                "invalid_grant",
                50105,
                f"Your administrator has configured the application {app.display_name} ('{app.app_id}') to block "
                "users unless they are specifically granted ('assigned') access to the application. The signed in "
                f"user '{user.user_principal_name}' is blocked because they are not a direct member of a group with "
                "access, nor had access directly assigned by an administrator.",
            )
        consented = self.tenant.granted_scopes(sp.id, user.id, older_than=self.platform.consent_cutoff())
        if not consented:
            raise TokenError(
                "invalid_grant",
                65001,
                f"The user or administrator has not consented to use the application with ID '{app.app_id}' named "
                f"'{app.display_name}'. Send an interactive authorization request for this user and resource.",
            )
        now = int(time.time())
        response = self.platform.access_token(
            app,
            {
                "oid": user.id,
                "sub": user.id,
                "upn": user.user_principal_name,
                "name": user.display_name,
                "scp": " ".join(consented),
                "idtyp": "user",
            },
        )
        id_claims: dict[str, Any] = {
            "aud": app.app_id,
            "iss": self.platform.issuer,
            "iat": now,
            "nbf": now,
            "exp": now + TOKEN_LIFETIME,
            "sub": user.id,
            "oid": user.id,
            "tid": self.tenant.tenant_id,
            "name": user.display_name,
            "preferred_username": user.user_principal_name,
            "ver": "2.0",
        }
        if nonce:
            id_claims["nonce"] = nonce
        refresh = secrets.token_urlsafe(32)
        self.refresh_tokens[refresh] = (app.app_id, user.id, scope)
        response |= {
            "scope": " ".join(f"{self.platform.graph_resource}/{s}" for s in consented)
            + " openid profile offline_access",
            "id_token": self.platform.sign(id_claims),
            "refresh_token": refresh,
            "client_info": b64url(json.dumps({"uid": user.id, "utid": self.tenant.tenant_id}).encode()),
        }
        return response

    def start_device_flow(self, form: dict[str, str]) -> dict[str, Any]:
        app = self.platform.application(form.get("client_id", ""))
        if not app.is_fallback_public_client:
            raise TokenError(
                "invalid_client",
                7000218,
                "The request body must contain the following parameter: 'client_assertion' or 'client_secret'. "
                "(The application is not configured as a public client: enable 'Allow public client flows'.)",
                401,
            )
        self.platform.resource_of(form.get("scope", ""))
        flow = DeviceFlow(
            device_code=secrets.token_urlsafe(32),
            user_code="".join(secrets.choice("BCDFGHJKLMNPQRSTVWXZ") for _ in range(9)),
            client_id=app.app_id,
            scope=form.get("scope", ""),
            expires=time.time() + 900,
        )
        self.devices[flow.device_code] = flow
        if self.platform.settings.auto_approve_user:
            self.approve_device(flow.user_code, self.platform.settings.auto_approve_user)
        verification = f"{self.platform.base_url}/devicelogin"
        return {
            "device_code": flow.device_code,
            "user_code": flow.user_code,
            "verification_uri": verification,
            "expires_in": 900,
            "interval": 1,
            "message": f"To sign in, use a web browser to open the page {verification} and enter the code "
            f"{flow.user_code} to authenticate.",
        }

    def approve_device(self, user_code: str, user_key: str, deny: bool = False) -> None:
        """Sign a user in on a pending device code (what the person does in their browser)."""
        flow = next((f for f in self.devices.values() if f.user_code == user_code), None)
        user = self.tenant.user(user_key)
        if flow is None or user is None:
            raise KeyError(f"no pending device code {user_code!r} or no user {user_key!r}")
        flow.user_id, flow.denied = user.id, deny

    def device_token(self, form: dict[str, str]) -> dict[str, Any]:
        flow = self.devices.get(form.get("device_code", ""))
        if flow is None or flow.expires < time.time():
            raise TokenError(
                "expired_token", 70020, "The provided value for the input parameter 'device_code' is not valid."
            )
        if flow.denied:
            raise TokenError("authorization_declined", 70000, "The user declined to authorize the application.")
        if flow.user_id is None:
            raise TokenError("authorization_pending", 70016, "OAuth 2.0 device flow error. Authorization is pending.")
        del self.devices[flow.device_code]
        return self._user_tokens(
            self.platform.application(flow.client_id), self.tenant.users_by_id[flow.user_id], flow.scope
        )

    def authorize(self, query: dict[str, str]) -> tuple[str, dict[str, str]]:
        """Handle GET /authorize: return the redirect URI and the parameters to send it.

        The server sends them as a query string (a 302) or, for ``response_mode=form_post`` (what
        MSAL asks for), as an auto-submitting HTML form, like Entra's sign-in page does.
        """
        app = self.platform.application(query.get("client_id", ""))
        redirect = query.get("redirect_uri", "")
        if not _redirect_allowed(redirect, app.redirect_uris):
            raise TokenError(
                "invalid_request",
                50011,
                f"The redirect URI '{redirect}' specified in the request does not match the redirect URIs configured "
                f"for the application '{app.app_id}'.",
            )
        state = query.get("state")
        user_key = query.get("login_hint") or self.platform.settings.auto_approve_user
        user = self.tenant.user(user_key) if user_key else None
        params: dict[str, str]
        if user is None:
            params = {
                "error": "login_required",
                "error_description": "AADSTS50058: A silent sign-in request was sent "
                "but no user is signed in (set the sandbox's auto-approve user or pass login_hint).",
            }
        else:
            code = secrets.token_urlsafe(32)
            self.codes[code] = AuthCode(
                app.app_id,
                user.id,
                redirect,
                query.get("scope", ""),
                query.get("code_challenge"),
                query.get("nonce"),
                time.time() + 600,
            )
            params = {"code": code}
        if state is not None:
            params["state"] = state
        if user is not None and query.get("client_info") == "1":
            params["client_info"] = b64url(json.dumps({"uid": user.id, "utid": self.tenant.tenant_id}).encode())
        return redirect, params

    def code_token(self, form: dict[str, str]) -> dict[str, Any]:
        grant = self.codes.pop(form.get("code", ""), None)
        if grant is None or grant.expires < time.time():
            raise TokenError("invalid_grant", 70008, "The provided authorization code or refresh token has expired.")
        if form.get("redirect_uri") != grant.redirect_uri:
            raise TokenError(
                "invalid_grant", 50148, "The redirect_uri does not match the one in the authorization request."
            )
        if grant.challenge is not None:
            verifier = form.get("code_verifier", "")
            if b64url(hashlib.sha256(verifier.encode()).digest()) != grant.challenge:
                raise TokenError(
                    "invalid_grant", 501481, "The Code_Verifier does not match the code_challenge supplied."
                )
        return self._user_tokens(
            self.platform.application(grant.client_id),
            self.tenant.users_by_id[grant.user_id],
            form.get("scope") or grant.scope,
            grant.nonce,
        )

    def refresh_token(self, form: dict[str, str]) -> dict[str, Any]:
        found = self.refresh_tokens.get(form.get("refresh_token", ""))
        if found is None or found[0] != form.get("client_id"):
            raise TokenError("invalid_grant", 9002313, "Invalid request. Request is malformed or invalid.")
        client_id, user_id, scope = found
        return self._user_tokens(
            self.platform.application(client_id), self.tenant.users_by_id[user_id], form.get("scope") or scope
        )


def _redirect_allowed(redirect: str, registered: list[str]) -> bool:
    """Entra matches localhost redirect URIs of public clients regardless of port."""
    if redirect in registered:
        return True
    parsed = urlparse(redirect)
    if parsed.scheme == "http" and parsed.hostname in ("localhost", "127.0.0.1"):
        for uri in registered:
            reg = urlparse(uri)
            if reg.scheme == "http" and reg.hostname == parsed.hostname and (reg.path or "/") == (parsed.path or "/"):
                return True
    return False
