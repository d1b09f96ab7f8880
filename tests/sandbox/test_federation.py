"""Workload identity federation in the sandbox: federatedIdentityCredentials under Graph's rules, the
sandbox's own OIDC issuer and Actions token service, and Entra's codes for mismatched assertions,
driven by azure-identity's ClientAssertionCredential over HTTPS."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from azure.core.exceptions import ClientAuthenticationError
from cryptography.hazmat.primitives.asymmetric import rsa

from sandbox.federation import TOKEN_EXCHANGE_AUDIENCE
from tests.sandbox.conftest import Running, bearer, claims

SUBJECT = "repo:contoso@1234/revoker@5678:environment:sandbox"


def _fic(name: str, issuer: str, subject: str = SUBJECT, audiences: Any = None) -> dict[str, Any]:
    return {"name": name, "issuer": issuer, "subject": subject, "audiences": audiences or [TOKEN_EXCHANGE_AUDIENCE]}


@pytest.fixture(scope="module")
def deployer(sandbox: Running) -> dict[str, str]:
    return bearer(sandbox, sandbox.app("fic-deployer", app_roles=("Application.ReadWrite.All",)))


def _assertion_credential(sandbox: Running, client_id: str, assertion: str) -> Any:
    from azure.identity import ClientAssertionCredential

    return ClientAssertionCredential(
        sandbox.info["tenantId"],
        client_id,
        lambda: assertion,
        authority=sandbox.info["authorityHost"],
        disable_instance_discovery=True,
    )


def test_graph_refuses_what_graph_refuses(sandbox: Running, deployer: dict[str, str]):
    app = sandbox.app("fic-rules").app
    base = f"/applications/{app.id}/federatedIdentityCredentials"
    issuer = "https://token.actions.githubusercontent.com"
    created = sandbox.http.post(base, json=_fic("prod", issuer), headers=deployer)
    assert created.status_code == 201, created.text
    fic = created.json()
    assert fic["audiences"] == [TOKEN_EXCHANGE_AUDIENCE] and fic["subject"] == SUBJECT

    refused = {
        "long name": _fic("x" * 121, issuer, "a"),
        "name with a space": _fic("not url friendly", issuer, "b"),
        "http issuer": _fic("plain", "http://issuer.example", "c"),
        "two audiences": _fic("two", issuer, "d", [TOKEN_EXCHANGE_AUDIENCE, "api://other"]),
        "no audience": _fic("none", issuer, "e", []),
    }
    for why, body in refused.items():
        if why == "no audience":
            body["audiences"] = []
        answer = sandbox.http.post(base, json=body, headers=deployer)
        assert answer.status_code == 400, why
        assert answer.json()["error"]["code"] == "Request_BadRequest"
    same_pair = sandbox.http.post(base, json=_fic("prod-again", issuer), headers=deployer)
    assert same_pair.status_code == 409 and "issuer and subject" in same_pair.json()["error"]["message"]

    # name is immutable; the other properties can be updated
    item = f"{base}/{fic['id']}"
    assert sandbox.http.patch(item, json={"name": "renamed"}, headers=deployer).status_code == 400
    assert sandbox.http.patch(item, json={"subject": SUBJECT + "2"}, headers=deployer).status_code == 204
    assert sandbox.http.get(item, headers=deployer).json()["subject"] == SUBJECT + "2"

    for i in range(19):
        assert sandbox.http.post(base, json=_fic(f"n{i}", issuer, f"s{i}"), headers=deployer).status_code == 201
    over = sandbox.http.post(base, json=_fic("n20", issuer, "s20"), headers=deployer)
    assert over.status_code == 400 and "at most 20" in over.json()["error"]["message"]
    listed = sandbox.http.get(base, headers=deployer).json()["value"]
    assert len(listed) == 20
    assert sandbox.http.delete(item, headers=deployer).status_code == 204
    assert sandbox.http.get(item, headers=deployer).status_code == 404


def test_issuer_serves_discovery_and_jwks_and_actions_tokens(sandbox: Running):
    run = sandbox.control.post("/issuers/gh-discovery/actions-run", json={"subject": SUBJECT}).json()
    tls = httpx.Client(verify=sandbox.tls, timeout=30)
    config = tls.get(f"{run['issuer']}/.well-known/openid-configuration").json()
    assert config["issuer"] == run["issuer"] and config["jwks_uri"] == f"{run['issuer']}/jwks"
    assert tls.get(config["jwks_uri"]).json()["keys"][0]["kty"] == "RSA"

    url = run["ACTIONS_ID_TOKEN_REQUEST_URL"] + "&audience=" + TOKEN_EXCHANGE_AUDIENCE
    assert tls.get(url).status_code == 401  # the request token is required
    answer = tls.get(url, headers={"Authorization": f"bearer {run['ACTIONS_ID_TOKEN_REQUEST_TOKEN']}"})
    body = claims(answer.json()["value"])
    assert (body["iss"], body["sub"], body["aud"]) == (run["issuer"], SUBJECT, TOKEN_EXCHANGE_AUDIENCE)


def _federated_app(sandbox: Running, name: str, subject: str = SUBJECT) -> tuple[Any, Any]:
    creds = sandbox.app(name, app_roles=("User.RevokeSessions.All",))
    issuer = sandbox.sandbox.call(sandbox.sandbox.federation.issuer, name)
    creds.app.federated_credentials.append({"id": name, **_fic(name, issuer.url, subject), "description": None})
    return creds.app, issuer


def test_federated_assertion_gets_a_graph_token(sandbox: Running):
    app, issuer = _federated_app(sandbox, "fic-ok")
    token = _assertion_credential(sandbox, app.app_id, issuer.mint(SUBJECT, TOKEN_EXCHANGE_AUDIENCE))
    body = claims(token.get_token(sandbox.info["graphScope"]).token)
    assert body["appid"] == app.app_id and body["roles"] == ["User.RevokeSessions.All"]


@pytest.mark.parametrize(
    ("case", "code"),
    [
        ("issuer", "AADSTS700211"),
        ("subject", "AADSTS700213"),
        ("subject-case", "AADSTS7002138"),
        ("audience", "AADSTS700212"),
        ("forged", "AADSTS700027"),
        ("expired", "AADSTS700024"),
    ],
)
def test_mismatched_assertions_get_entras_codes(sandbox: Running, case: str, code: str):
    app, issuer = _federated_app(sandbox, f"fic-{case}")
    other = sandbox.sandbox.call(sandbox.sandbox.federation.issuer, f"fic-{case}-other")
    assertion = {
        "issuer": lambda: other.mint(SUBJECT, TOKEN_EXCHANGE_AUDIENCE),
        "subject": lambda: issuer.mint("repo:contoso/revoker:environment:prod", TOKEN_EXCHANGE_AUDIENCE),
        "subject-case": lambda: issuer.mint(SUBJECT.upper(), TOKEN_EXCHANGE_AUDIENCE),
        "audience": lambda: issuer.mint(SUBJECT, "https://github.com/contoso"),
        "forged": lambda: issuer.mint(
            SUBJECT, TOKEN_EXCHANGE_AUDIENCE, key=rsa.generate_private_key(public_exponent=65537, key_size=2048)
        ),
        "expired": lambda: issuer.mint(SUBJECT, TOKEN_EXCHANGE_AUDIENCE, lifetime=-3600),
    }[case]()
    with pytest.raises(ClientAuthenticationError) as caught:
        _assertion_credential(sandbox, app.app_id, assertion).get_token(sandbox.info["graphScope"])
    assert code in str(caught.value)
    if case in ("issuer", "subject"):
        assert "No matching federated identity record found for presented assertion" in str(caught.value)


def test_each_property_rule_is_refused_naming_the_property(sandbox: Running, deployer: dict[str, str]):
    app = sandbox.app("fic-properties").app
    base = f"/applications/{app.id}/federatedIdentityCredentials"
    issuer = "https://token.actions.githubusercontent.com"
    cases: dict[str, tuple[dict[str, Any], str]] = {
        "unknown property": (
            _fic("extra", issuer, "a") | {"claimsMatchingExpression": {}},
            "Property 'claimsMatchingExpression' does not exist on type 'microsoft.graph.federatedIdentityCredential'",
        ),
        "no subject": ({k: v for k, v in _fic("nosub", issuer).items() if k != "subject"}, "'subject' is required"),
        "long subject": (_fic("longsub", issuer, "s" * 601), "'subject' exceeds the maximum length of 600"),
        "long audience": (_fic("longaud", issuer, "b", ["a" * 601]), "'audiences' must hold a non-empty value"),
        "long description": (
            _fic("longdesc", issuer, "c") | {"description": "d" * 601},
            "'description' exceeds the maximum length of 600",
        ),
    }
    for why, (body, message) in cases.items():
        answer = sandbox.http.post(base, json=body, headers=deployer)
        assert answer.status_code == 400, why
        assert answer.json()["error"]["code"] == "Request_BadRequest", why
        assert message in answer.json()["error"]["message"], why
    created = sandbox.http.post(base, json=_fic("kept", issuer), headers=deployer).json()
    renamed = sandbox.http.patch(f"{base}/{created['id']}", json={"name": "other"}, headers=deployer)
    assert "'name' is read-only" in renamed.json()["error"]["message"]
    assert [f["name"] for f in sandbox.http.get(base, headers=deployer).json()["value"]] == ["kept"]
