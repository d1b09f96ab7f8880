"""The identity platform's endpoints: discovery, JWKS, token (client credentials with certificate
assertions, device code, authorization code with PKCE, refresh token) and authorize.

Errors come back in Entra's shape with Entra's AADSTS codes.

Size (~590 lines): one endpoint per grant type, sharing the assertion and error helpers; the
federated-credential checks are already in sandbox/federation.py. Next split: device code and
authorization code into their own module.
"""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlparse

import jwt
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import rsa

from sandbox.catalog import GRAPH_APP_ID
from sandbox.federation import Federation, FederationError, verify_federated_assertion
from sandbox.tenant import Application, Tenant, User
from sandbox.throttle import Clock

TOKEN_LIFETIME = 3600
#: Azure Key Vault's resource: tokens for it are what the loopback vault (sandbox.keyvault) accepts.
KEYVAULT_RESOURCE = "https://vault.azure.net"
ASSERTION_LEEWAY = 300  # seconds of clock skew Entra tolerates on client assertions
OIDC_SCOPES = {"openid", "profile", "offline_access", "email"}


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


class TokenError(Exception):
    """An OAuth error response: ``error`` code, AADSTS number and text."""

    def __init__(self, error: str, code: int, text: str, status: int = 400) -> None:
        super().__init__(f"AADSTS{code}: {text}")
        self.error = error
        self.code = code
        self.text = text
        self.status = status

    def body(self) -> dict[str, Any]:
        trace, correlation = str(uuid.uuid4()), str(uuid.uuid4())
        stamp = datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%SZ")
        return {
            "error": self.error,
            "error_description": f"AADSTS{self.code}: {self.text} Trace ID: {trace} Correlation ID: {correlation} "
            f"Timestamp: {stamp}",
            "error_codes": [self.code],
            "timestamp": stamp,
            "trace_id": trace,
            "correlation_id": correlation,
            "error_uri": f"https://login.microsoftonline.com/error?code={self.code}",
        }


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


@dataclass
class IdentitySettings:
    """Knobs tests and the control endpoint turn."""

    #: modelled seconds a new consent (app role assignment or grant) takes to reach tokens
    consent_delay: float = 0.0
    #: user (id or UPN) who approves device codes and signs in on /authorize without a prompt
    auto_approve_user: str | None = None


@dataclass
class IdentityPlatform:
    tenant: Tenant
    clock: Clock
    base_url: str
    graph_resource: str
    settings: IdentitySettings = field(default_factory=IdentitySettings)
    #: the OIDC issuers whose signing keys federated assertions are checked against
    federation: Federation | None = None

    def __post_init__(self) -> None:
        self.key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.kid = b64url(hashlib.sha256(str(id(self)).encode()).digest()[:16])
        self.devices: dict[str, DeviceFlow] = {}
        self.codes: dict[str, AuthCode] = {}
        self.refresh_tokens: dict[str, tuple[str, str, str]] = {}  # token -> (client, user, scope)

    # -- metadata ---------------------------------------------------------------------------
    @property
    def authority(self) -> str:
        return f"{self.base_url}/{self.tenant.tenant_id}"

    @property
    def issuer(self) -> str:
        return f"{self.authority}/v2.0"

    def token_endpoints(self) -> set[str]:
        tenants = (self.tenant.tenant_id, "organizations", "common")
        return {f"{self.base_url}/{t}/oauth2/v2.0/token" for t in tenants}

    def discovery(self) -> dict[str, Any]:
        return {
            "issuer": self.issuer,
            "authorization_endpoint": f"{self.authority}/oauth2/v2.0/authorize",
            "token_endpoint": f"{self.authority}/oauth2/v2.0/token",
            "device_authorization_endpoint": f"{self.authority}/oauth2/v2.0/devicecode",
            "jwks_uri": f"{self.authority}/discovery/v2.0/keys",
            "end_session_endpoint": f"{self.authority}/oauth2/v2.0/logout",
            "response_types_supported": ["code", "id_token", "code id_token", "token id_token"],
            "response_modes_supported": ["query", "fragment", "form_post"],
            "subject_types_supported": ["pairwise"],
            "id_token_signing_alg_values_supported": ["RS256"],
            "token_endpoint_auth_methods_supported": ["client_secret_post", "private_key_jwt", "client_secret_basic"],
            "scopes_supported": ["openid", "profile", "email", "offline_access"],
            "claims_supported": [
                "sub",
                "iss",
                "aud",
                "exp",
                "iat",
                "nonce",
                "name",
                "oid",
                "tid",
                "preferred_username",
            ],
            "tenant_region_scope": "EU",
            "cloud_instance_name": urlparse(self.base_url).netloc,
            "request_uri_parameter_supported": False,
        }

    def jwks(self) -> dict[str, Any]:
        numbers = self.key.public_key().public_numbers()
        n = numbers.n.to_bytes((numbers.n.bit_length() + 7) // 8, "big")
        e = numbers.e.to_bytes((numbers.e.bit_length() + 7) // 8, "big")
        return {"keys": [{"kty": "RSA", "use": "sig", "kid": self.kid, "n": b64url(n), "e": b64url(e)}]}

    # -- tokens -----------------------------------------------------------------------------
    def _sign(self, claims: dict[str, Any]) -> str:
        return jwt.encode(claims, self.key, algorithm="RS256", headers={"kid": self.kid, "typ": "JWT"})

    def _resource_of(self, scope: str) -> tuple[str, list[str]]:
        """Split requested scopes into the resource and the OIDC extras; refuse other resources."""
        resource_scopes = [s for s in scope.split() if s not in OIDC_SCOPES]
        if not resource_scopes:
            raise TokenError("invalid_scope", 70011, "The provided value for the input parameter 'scope' is not valid.")
        resources = set()
        for s in resource_scopes:
            resource = s.rsplit("/", 1)[0] if "/" in s else s
            if resource in (GRAPH_APP_ID, self.graph_resource):
                resources.add(self.graph_resource)
            elif resource == KEYVAULT_RESOURCE:
                resources.add(KEYVAULT_RESOURCE)
            else:
                raise TokenError(
                    "invalid_resource",
                    500011,
                    f"The resource principal named {resource} was not found in the tenant named "
                    f"{self.tenant.tenant_id}. This can happen if the application has not been installed by "
                    "the administrator of the tenant or consented to by any user in the tenant.",
                )
        if len(resources) > 1:
            raise TokenError(
                "invalid_scope", 70011, "The provided value for the input parameter 'scope' is not valid: one resource."
            )
        return resources.pop(), resource_scopes

    def _access_token(self, app: Application, claims: dict[str, Any]) -> dict[str, Any]:
        now = int(time.time())
        body = {
            "aud": self.graph_resource,
            "iss": f"https://sts.windows.net/{self.tenant.tenant_id}/",
            "iat": now,
            "nbf": now,
            "exp": now + TOKEN_LIFETIME,
            "appid": app.app_id,
            "azp": app.app_id,
            "tid": self.tenant.tenant_id,
            "ver": "1.0",
            "uti": b64url(secrets.token_bytes(12)),
            **claims,
        }
        return {
            "token_type": "Bearer",
            "expires_in": TOKEN_LIFETIME,
            "ext_expires_in": TOKEN_LIFETIME,
            "access_token": self._sign(body),
        }

    def _app(self, client_id: str) -> Application:
        app = self.tenant.app_by_app_id(client_id or "")
        if app is None:
            raise TokenError(
                "unauthorized_client",
                700016,
                f"Application with identifier '{client_id}' was not found in the directory "
                f"'{self.tenant.tenant_id}'. This can happen if the application has not been installed by the "
                "administrator of the tenant or consented to by any user in the tenant.",
            )
        return app

    def _consent_cutoff(self) -> float:
        return self.clock.now() - self.settings.consent_delay

    def client_credentials(self, form: dict[str, str], token_url: str) -> dict[str, Any]:
        app = self._app(form.get("client_id", ""))
        if form.get("client_assertion_type") != "urn:ietf:params:oauth:client-assertion-type:jwt-bearer":
            raise TokenError(
                "invalid_client",
                7000218,
                "The request body must contain the following parameter: 'client_assertion' or 'client_secret'.",
                401,
            )
        self._verify_assertion(app, form.get("client_assertion", ""), token_url)
        resource, scopes = self._resource_of(form.get("scope", ""))
        if any(not s.endswith("/.default") for s in scopes):
            raise TokenError(
                "invalid_scope",
                1002012,
                f"The provided value for scope {scopes[0]} is not valid. Client credential flows must have a scope "
                "value with /.default suffixed to the resource identifier (application ID URI).",
            )
        sp = self.tenant.sp_for_app(app.app_id)
        if sp is None:
            raise TokenError(
                "invalid_client",
                7000229,
                f"The client application {app.app_id} is missing service principal in the tenant "
                f"{self.tenant.tenant_id}.",
                401,
            )
        if resource == KEYVAULT_RESOURCE:
            # Key Vault authorizes by its own access policy / RBAC, not by Graph app roles.
            return self._access_token(app, {"aud": KEYVAULT_RESOURCE, "oid": sp.id, "sub": sp.id, "idtyp": "app"})
        roles = self.tenant.granted_roles(sp.id, older_than=self._consent_cutoff())
        claims: dict[str, Any] = {"oid": sp.id, "sub": sp.id, "idtyp": "app"}
        if roles:
            claims["roles"] = roles
        return self._access_token(app, claims)

    def _verify_assertion(self, app: Application, assertion: str, token_url: str) -> None:
        try:
            header = jwt.get_unverified_header(assertion)
            issuer = jwt.decode(assertion, options={"verify_signature": False}).get("iss")
        except jwt.PyJWTError as err:
            raise TokenError("invalid_client", 50027, f"JWT token is invalid or malformed ({err}).", 401) from None
        if issuer != app.app_id:
            # Not signed by the app itself: a federated credential's token (workload identity federation).
            try:
                verify_federated_assertion(self.federation, app, assertion)
            except FederationError as err:
                raise TokenError("invalid_client", err.code, err.text, 401) from None
            return
        alg = header.get("alg")
        digest: hashes.HashAlgorithm
        if alg == "RS256" and "x5t" in header:
            thumb_b64, digest = header["x5t"], hashes.SHA1()  # noqa: S303  # Entra's x5t is SHA-1
        elif alg == "PS256" and "x5t#S256" in header:
            thumb_b64, digest = header["x5t#S256"], hashes.SHA256()
        else:
            raise TokenError(
                "invalid_client",
                5002738,
                f"Invalid JWT token. '{alg}' with the given thumbprint header is not a supported signature algorithm.",
                401,
            )
        thumb = base64.urlsafe_b64decode(thumb_b64 + "=" * (-len(thumb_b64) % 4))
        now = datetime.now(UTC)
        match = None
        for kc in app.key_credentials:
            cert = x509.load_der_x509_certificate(base64.b64decode(kc["key"]))
            if cert.fingerprint(digest) == thumb:
                match = (kc, cert)
                break
        if match is None:
            raise TokenError(
                "invalid_client",
                700027,
                f"Client assertion contains an invalid signature. [Reason - The key was not found., Thumbprint of "
                f"key used by client: '{thumb.hex().upper()}', Please visit the Azure Portal, Graph Explorer or "
                f"directly use MS Graph to see configured keys for app Id '{app.app_id}'.]",
                401,
            )
        kc, cert = match
        start = datetime.fromisoformat(kc["startDateTime"].replace("Z", "+00:00"))
        end = datetime.fromisoformat(kc["endDateTime"].replace("Z", "+00:00"))
        if not start <= now <= end:
            raise TokenError(
                "invalid_client",
                700027,
                f"Client assertion failed signature validation. [Reason - The key used is expired., Thumbprint of "
                f"key used by client: '{thumb.hex().upper()}', Found key 'Start={kc['startDateTime']}, "
                f"End={kc['endDateTime']}']",
                401,
            )
        try:
            claims = jwt.decode(
                assertion,
                cert.public_key(),  # type: ignore[arg-type]
                algorithms=[alg],
                audience=sorted(self.token_endpoints() | {token_url}),
                leeway=ASSERTION_LEEWAY,
                options={"require": ["exp", "aud", "iss", "sub"]},
            )
        except jwt.ExpiredSignatureError:
            raise TokenError(
                "invalid_client",
                700024,
                "Client assertion is not within its valid time range.",
                401,
            ) from None
        except jwt.InvalidAudienceError:
            raise TokenError(
                "invalid_client",
                700212,
                f"No matching federated identity record found for presented assertion audience. The audience must be "
                f"the token endpoint {token_url}.",
                401,
            ) from None
        except jwt.PyJWTError as err:
            raise TokenError("invalid_client", 7000274, f"Client assertion failed validation ({err}).", 401) from None
        if claims.get("iss") != app.app_id or claims.get("sub") != app.app_id:
            raise TokenError(
                "invalid_client",
                700023,
                "Client assertion audience claim does not match Realm issuer: iss and sub must be the client id.",
                401,
            )

    # -- delegated --------------------------------------------------------------------------
    def _user_tokens(self, app: Application, user: User, scope: str, nonce: str | None = None) -> dict[str, Any]:
        if not user.account_enabled:
            # Entra's error codes reference: AADSTS50057 UserAccountDisabled (every grant, refresh included).
            raise TokenError(
                "invalid_grant",
                50057,
                "The user account is disabled. The user object in Active Directory backing this account has been "
                "disabled. An admin can re-enable this account through PowerShell.",
            )
        resource, _scopes = self._resource_of(scope)
        if resource != self.graph_resource:
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
        consented = self.tenant.granted_scopes(sp.id, user.id, older_than=self._consent_cutoff())
        if not consented:
            raise TokenError(
                "invalid_grant",
                65001,
                f"The user or administrator has not consented to use the application with ID '{app.app_id}' named "
                f"'{app.display_name}'. Send an interactive authorization request for this user and resource.",
            )
        now = int(time.time())
        response = self._access_token(
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
            "iss": self.issuer,
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
            "scope": " ".join(f"{self.graph_resource}/{s}" for s in consented) + " openid profile offline_access",
            "id_token": self._sign(id_claims),
            "refresh_token": refresh,
            "client_info": b64url(json.dumps({"uid": user.id, "utid": self.tenant.tenant_id}).encode()),
        }
        return response

    def start_device_flow(self, form: dict[str, str]) -> dict[str, Any]:
        app = self._app(form.get("client_id", ""))
        if not app.is_fallback_public_client:
            raise TokenError(
                "invalid_client",
                7000218,
                "The request body must contain the following parameter: 'client_assertion' or 'client_secret'. "
                "(The application is not configured as a public client: enable 'Allow public client flows'.)",
                401,
            )
        self._resource_of(form.get("scope", ""))
        flow = DeviceFlow(
            device_code=secrets.token_urlsafe(32),
            user_code="".join(secrets.choice("BCDFGHJKLMNPQRSTVWXZ") for _ in range(9)),
            client_id=app.app_id,
            scope=form.get("scope", ""),
            expires=time.time() + 900,
        )
        self.devices[flow.device_code] = flow
        if self.settings.auto_approve_user:
            self.approve_device(flow.user_code, self.settings.auto_approve_user)
        verification = f"{self.base_url}/devicelogin"
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
        return self._user_tokens(self._app(flow.client_id), self.tenant.users_by_id[flow.user_id], flow.scope)

    def authorize(self, query: dict[str, str]) -> tuple[str, dict[str, str]]:
        """Handle GET /authorize: return the redirect URI and the parameters to send it.

        The server sends them as a query string (a 302) or, for ``response_mode=form_post`` (what
        MSAL asks for), as an auto-submitting HTML form, like Entra's sign-in page does.
        """
        app = self._app(query.get("client_id", ""))
        redirect = query.get("redirect_uri", "")
        if not _redirect_allowed(redirect, app.redirect_uris):
            raise TokenError(
                "invalid_request",
                50011,
                f"The redirect URI '{redirect}' specified in the request does not match the redirect URIs configured "
                f"for the application '{app.app_id}'.",
            )
        state = query.get("state")
        user_key = query.get("login_hint") or self.settings.auto_approve_user
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
            self._app(grant.client_id),
            self.tenant.users_by_id[grant.user_id],
            form.get("scope") or grant.scope,
            grant.nonce,
        )

    def refresh_token(self, form: dict[str, str]) -> dict[str, Any]:
        found = self.refresh_tokens.get(form.get("refresh_token", ""))
        if found is None or found[0] != form.get("client_id"):
            raise TokenError("invalid_grant", 9002313, "Invalid request. Request is malformed or invalid.")
        client_id, user_id, scope = found
        return self._user_tokens(self._app(client_id), self.tenant.users_by_id[user_id], form.get("scope") or scope)

    def token(self, form: dict[str, str], token_url: str) -> dict[str, Any]:
        grant = form.get("grant_type", "")
        if grant == "client_credentials":
            return self.client_credentials(form, token_url)
        if grant in ("urn:ietf:params:oauth:grant-type:device_code", "device_code"):
            return self.device_token(form)
        if grant == "authorization_code":
            return self.code_token(form)
        if grant == "refresh_token":
            return self.refresh_token(form)
        raise TokenError("unsupported_grant_type", 70003, f"The app requested an unsupported grant type '{grant}'.")

    # -- Graph side -------------------------------------------------------------------------
    def verify_access_token(self, token: str) -> dict[str, Any]:
        """Validate a bearer token for Graph; raise ``jwt.PyJWTError`` when invalid."""
        claims: dict[str, Any] = jwt.decode(
            token, self.key.public_key(), algorithms=["RS256"], audience=[self.graph_resource, GRAPH_APP_ID]
        )
        if claims.get("tid") != self.tenant.tenant_id:
            raise jwt.InvalidTokenError("token from another tenant")
        return claims


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
