"""The identity platform's endpoints: discovery, JWKS, token and authorize.

The token endpoint serves client credentials here, with certificate assertions (federated ones are
checked by sandbox/federation.py); the user flows (device code, authorization code with PKCE,
refresh tokens, authorize) are in sandbox/delegated.py. Errors come back in Entra's shape with
Entra's AADSTS codes (sandbox/oauth.py).
"""

from __future__ import annotations

import base64
import hashlib
import secrets
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlparse

import jwt
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import rsa

from sandbox.catalog import GRAPH_APP_ID
from sandbox.delegated import DelegatedFlows
from sandbox.federation import Federation, FederationError, verify_federated_assertion
from sandbox.oauth import KEYVAULT_RESOURCE, TOKEN_LIFETIME, TokenError, b64url
from sandbox.tenant import Application, Tenant
from sandbox.throttle import Clock

__all__ = ["KEYVAULT_RESOURCE", "IdentityPlatform", "IdentitySettings", "TokenError", "b64url"]

#: Azure Key Vault's resource: tokens for it are what the loopback vault (sandbox.keyvault) accepts.
ASSERTION_LEEWAY = 300  # seconds of clock skew Entra tolerates on client assertions
OIDC_SCOPES = {"openid", "profile", "offline_access", "email"}


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
        self.delegated = DelegatedFlows(self)

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
    def sign(self, claims: dict[str, Any]) -> str:
        """A JWT of ``claims`` signed with the platform's key (RS256, the ``kid`` its JWKS publishes)."""
        return jwt.encode(claims, self.key, algorithm="RS256", headers={"kid": self.kid, "typ": "JWT"})

    def resource_of(self, scope: str) -> tuple[str, list[str]]:
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

    def access_token(self, app: Application, claims: dict[str, Any]) -> dict[str, Any]:
        """A token response for ``app`` whose access token carries ``claims`` (over the defaults: Graph's audience)."""
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
            "access_token": self.sign(body),
        }

    def application(self, client_id: str) -> Application:
        """The application registered as ``client_id``; AADSTS700016 when there is none."""
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

    def consent_cutoff(self) -> float:
        """Sandbox time of the newest consent that has reached tokens (``consent_delay`` models replication)."""
        return self.clock.now() - self.settings.consent_delay

    def client_credentials(self, form: dict[str, str], token_url: str) -> dict[str, Any]:
        app = self.application(form.get("client_id", ""))
        if form.get("client_assertion_type") != "urn:ietf:params:oauth:client-assertion-type:jwt-bearer":
            raise TokenError(
                "invalid_client",
                7000218,
                "The request body must contain the following parameter: 'client_assertion' or 'client_secret'.",
                401,
            )
        self._verify_assertion(app, form.get("client_assertion", ""), token_url)
        resource, scopes = self.resource_of(form.get("scope", ""))
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
            return self.access_token(app, {"aud": KEYVAULT_RESOURCE, "oid": sp.id, "sub": sp.id, "idtyp": "app"})
        roles = self.tenant.granted_roles(sp.id, older_than=self.consent_cutoff())
        claims: dict[str, Any] = {"oid": sp.id, "sub": sp.id, "idtyp": "app"}
        if roles:
            claims["roles"] = roles
        return self.access_token(app, claims)

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

    # -- delegated: the user flows (sandbox.delegated) ------------------------------------------
    def start_device_flow(self, form: dict[str, str]) -> dict[str, Any]:
        return self.delegated.start_device_flow(form)

    def approve_device(self, user_code: str, user_key: str, deny: bool = False) -> None:
        """Sign a user in on a pending device code (what the person does in their browser)."""
        self.delegated.approve_device(user_code, user_key, deny)

    def authorize(self, query: dict[str, str]) -> tuple[str, dict[str, str]]:
        return self.delegated.authorize(query)

    def token(self, form: dict[str, str], token_url: str) -> dict[str, Any]:
        grant = form.get("grant_type", "")
        if grant == "client_credentials":
            return self.client_credentials(form, token_url)
        if grant in ("urn:ietf:params:oauth:grant-type:device_code", "device_code"):
            return self.delegated.device_token(form)
        if grant == "authorization_code":
            return self.delegated.code_token(form)
        if grant == "refresh_token":
            return self.delegated.refresh_token(form)
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
