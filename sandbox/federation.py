"""Workload identity federation: the sandbox as an OIDC issuer, and Entra's side of the exchange.

The sandbox hosts OIDC issuers of its own (``/issuers/NAME``: discovery and JWKS, over the same
HTTPS as everything else) and a stand-in for GitHub Actions' ID-token service (``/actions/NAME``:
``GET ...&audience=AUD`` with the run's bearer request token answers ``{"value": JWT}``, as
``ACTIONS_ID_TOKEN_REQUEST_URL`` does). The token endpoint hands every ``client_assertion`` whose
``iss`` is not the client id to :func:`verify_federated_assertion`, which matches it against the
application's ``federatedIdentityCredentials`` the way Entra does (case-sensitive, issuer first):

- no credential with the assertion's issuer: AADSTS700211;
- none with its subject: AADSTS700213 (AADSTS7002138 when only a case-insensitive match exists);
- its ``aud`` is not the credential's audience: AADSTS700212;
- then the signature (the issuer's JWKS, by ``kid``) and the time range (AADSTS700024).

Codes and texts as Entra answers them (Azure/login#482, #517; Azure/azure-workload-identity#1200).
"""

from __future__ import annotations

import hashlib
import secrets
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import jwt
from aiohttp import web
from cryptography.hazmat.primitives.asymmetric import rsa

if TYPE_CHECKING:
    from sandbox.tenant import Application

__all__ = [
    "TOKEN_EXCHANGE_AUDIENCE",
    "ActionsRun",
    "Federation",
    "OidcIssuer",
    "add_routes",
    "verify_federated_assertion",
]

#: The audience Entra accepts in federated assertions (Graph federatedIdentityCredential docs).
TOKEN_EXCHANGE_AUDIENCE = "api://AzureADTokenExchange"  # noqa: S105  # an audience, not a secret
WIF_DOCS = "https://learn.microsoft.com/entra/workload-id/workload-identity-federation"
#: Lifetime of the ID tokens the issuers mint (GitHub's are valid for minutes, not hours).
ID_TOKEN_LIFETIME = 300
ASSERTION_LEEWAY = 300


def _b64url_int(value: int) -> str:
    from sandbox.identity import b64url

    return b64url(value.to_bytes((value.bit_length() + 7) // 8, "big"))


@dataclass
class OidcIssuer:
    """One OIDC issuer hosted by the sandbox at ``{base_url}/issuers/{name}``."""

    name: str
    url: str
    key: rsa.RSAPrivateKey = field(repr=False)
    kid: str

    @classmethod
    def create(cls, name: str, base_url: str) -> OidcIssuer:
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        kid = hashlib.sha256(f"{name}{id(key)}".encode()).hexdigest()[:32]
        return cls(name, f"{base_url}/issuers/{name}", key, kid)

    def discovery(self) -> dict[str, Any]:
        return {
            "issuer": self.url,
            "jwks_uri": f"{self.url}/jwks",
            "subject_types_supported": ["public", "pairwise"],
            "response_types_supported": ["id_token"],
            "claims_supported": ["sub", "aud", "exp", "iat", "iss", "jti", "nbf", "environment", "repository"],
            "id_token_signing_alg_values_supported": ["RS256"],
            "scopes_supported": ["openid"],
        }

    def jwks(self) -> dict[str, Any]:
        numbers = self.key.public_key().public_numbers()
        key = {"kty": "RSA", "alg": "RS256", "use": "sig", "kid": self.kid}
        return {"keys": [key | {"n": _b64url_int(numbers.n), "e": _b64url_int(numbers.e)}]}

    def mint(
        self,
        subject: str,
        audience: str,
        *,
        lifetime: int = ID_TOKEN_LIFETIME,
        claims: dict[str, Any] | None = None,
        key: rsa.RSAPrivateKey | None = None,
    ) -> str:
        """An ID token for ``subject`` (``key``: sign with another key, to test a forged token)."""
        now = int(time.time())
        body = {
            "jti": secrets.token_hex(16),
            "sub": subject,
            "aud": audience,
            "iss": self.url,
            "iat": now,
            "nbf": now - 5,
            "exp": now + lifetime,
            **(claims or {}),
        }
        return jwt.encode(body, key or self.key, algorithm="RS256", headers={"kid": self.kid, "typ": "JWT"})


@dataclass
class ActionsRun:
    """A workflow run as GitHub Actions' ID-token service sees it: its request token and subject."""

    request_token: str = field(repr=False)
    subject: str
    claims: dict[str, Any] = field(default_factory=dict)
    #: audiences the run asked for, in order (what the client sent, for tests)
    requests: list[str] = field(default_factory=list)


class Federation:
    """The sandbox's issuers and Actions runs, and Entra's lookup of issuer signing keys."""

    def __init__(self, base_url: str) -> None:
        self.base_url = base_url
        self.issuers: dict[str, OidcIssuer] = {}
        self.runs: dict[str, ActionsRun] = {}

    def issuer(self, name: str) -> OidcIssuer:
        """The issuer ``name``, created on first use."""
        if name not in self.issuers:
            self.issuers[name] = OidcIssuer.create(name, self.base_url)
        return self.issuers[name]

    def actions_run(self, issuer: str, subject: str, claims: dict[str, Any] | None = None) -> dict[str, str]:
        """Start an Actions run whose tokens ``issuer`` signs; return its two ACTIONS_* variables."""
        self.issuer(issuer)
        run = ActionsRun(secrets.token_urlsafe(24), subject, dict(claims or {}))
        self.runs[run.request_token] = run
        return {
            "ACTIONS_ID_TOKEN_REQUEST_URL": f"{self.base_url}/actions/{issuer}/idtoken?api-version=2.0",
            "ACTIONS_ID_TOKEN_REQUEST_TOKEN": run.request_token,
        }

    def signing_key(self, issuer_url: str, kid: str | None) -> rsa.RSAPublicKey | None:
        """The public key ``kid`` of ``issuer_url`` (what Entra fetches through the issuer's discovery)."""
        for issuer in self.issuers.values():
            if issuer.url == issuer_url and kid == issuer.kid:
                return issuer.key.public_key()
        return None


class FederationError(Exception):
    """A federated assertion Entra refuses: the AADSTS code and text."""

    def __init__(self, code: int, text: str) -> None:
        super().__init__(f"AADSTS{code}: {text}")
        self.code = code
        self.text = text


def _no_match(what: str, value: str) -> str:
    return (
        f"No matching federated identity record found for presented assertion {what} '{value}'. Please check your "
        f"federated identity credential Subject, Audience and Issuer against the presented assertion. {WIF_DOCS}"
    )


def verify_federated_assertion(federation: Federation | None, app: Application, assertion: str) -> dict[str, Any]:
    """Validate a federated ``client_assertion`` for ``app``; return its claims.

    :raises FederationError: with Entra's code for the first mismatch (issuer, subject, audience,
        signature, time range).
    """
    try:
        header = jwt.get_unverified_header(assertion)
        unverified: dict[str, Any] = jwt.decode(assertion, options={"verify_signature": False})
    except jwt.PyJWTError as err:
        raise FederationError(50027, f"JWT token is invalid or malformed ({err}).") from None
    issuer, subject = str(unverified.get("iss", "")), str(unverified.get("sub", ""))
    candidates = [f for f in app.federated_credentials if f["issuer"] == issuer]
    if not candidates:
        raise FederationError(700211, _no_match("issuer", issuer))
    matching = [f for f in candidates if f["subject"] == subject]
    if not matching:
        if any(f["subject"].lower() == subject.lower() for f in candidates):
            raise FederationError(
                7002138,
                _no_match("subject", subject).replace(
                    ". Please",
                    ". The subject matches with case-insensitive comparison, but not with case-sensitive "
                    "comparison. Please",
                    1,
                ),
            )
        raise FederationError(700213, _no_match("subject", subject))
    credential = matching[0]
    audiences = unverified.get("aud")
    presented = [audiences] if isinstance(audiences, str) else list(audiences or [])
    if not set(presented) & set(credential["audiences"]):
        raise FederationError(700212, _no_match("audience", ", ".join(map(str, presented))))
    key = federation.signing_key(issuer, header.get("kid")) if federation is not None else None
    if key is None:
        raise FederationError(
            700027,
            f"Client assertion failed signature validation. [Reason - The key was not found., Key id "
            f"'{header.get('kid')}' is not in the issuer's signing keys ({issuer}).]",
        )
    try:
        claims: dict[str, Any] = jwt.decode(
            assertion,
            key,
            algorithms=["RS256", "PS256"],
            audience=credential["audiences"],
            issuer=issuer,
            leeway=ASSERTION_LEEWAY,
            options={"require": ["exp", "iss", "sub", "aud"]},
        )
    except jwt.ExpiredSignatureError:
        raise FederationError(700024, "Client assertion is not within its valid time range.") from None
    except jwt.InvalidSignatureError:
        raise FederationError(
            700027,
            "Client assertion failed signature validation. [Reason - The provided signature value did not "
            "match the expected signature value.]",
        ) from None
    except jwt.PyJWTError as err:
        raise FederationError(7000274, f"Client assertion failed validation ({err}).") from None
    return claims


def add_routes(app: web.Application, federation: Federation) -> None:
    """Serve the issuers' discovery and JWKS, and the Actions ID-token service."""

    async def discovery(request: web.Request) -> web.Response:
        issuer = federation.issuers.get(request.match_info["name"])
        return web.json_response(issuer.discovery()) if issuer else web.json_response({}, status=404)

    async def jwks(request: web.Request) -> web.Response:
        issuer = federation.issuers.get(request.match_info["name"])
        return web.json_response(issuer.jwks()) if issuer else web.json_response({}, status=404)

    async def idtoken(request: web.Request) -> web.Response:
        # GitHub's service: bearer ACTIONS_ID_TOKEN_REQUEST_TOKEN, optional audience parameter.
        issuer = federation.issuers.get(request.match_info["name"])
        auth = request.headers.get("Authorization", "")
        token = auth.split(" ", 1)[1] if auth.lower().startswith("bearer ") else ""
        run = federation.runs.get(token)
        if issuer is None or run is None:
            return web.json_response({"message": "Unauthorized"}, status=401)
        audience = request.query.get("audience") or "https://github.com/sandbox-owner"
        run.requests.append(audience)
        return web.json_response({"count": 1, "value": issuer.mint(run.subject, audience, claims=run.claims)})

    async def control_run(request: web.Request) -> web.Response:
        body = await request.json()
        try:
            variables = federation.actions_run(request.match_info["name"], str(body["subject"]), body.get("claims"))
        except (KeyError, TypeError) as err:
            return web.json_response({"error": f"invalid run: {err}"}, status=400)
        return web.json_response(variables | {"issuer": federation.issuers[request.match_info["name"]].url})

    app.router.add_get("/issuers/{name}/.well-known/openid-configuration", discovery)
    app.router.add_get("/issuers/{name}/jwks", jwks)
    app.router.add_get("/actions/{name}/idtoken", idtoken)
    app.router.add_post("/_control/issuers/{name}/actions-run", control_run)
