"""The identity platform, driven by azure-identity's real credentials."""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import hashlib
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
from azure.core.exceptions import ClientAuthenticationError
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization

from sandbox.server import make_client_certificate
from tests.sandbox.conftest import AppCredentials, Running, app_credential, claims, sync_app_credential

REVOKER = ("User.RevokeSessions.All", "User.Read.All")


def test_discovery_and_jwks(sandbox: Running):
    tenant = sandbox.info["tenantId"]
    http = httpx.Client(base_url=sandbox.info["authorityHost"], verify=sandbox.tls)
    config = http.get(f"/{tenant}/v2.0/.well-known/openid-configuration").json()
    assert config["token_endpoint"] == f"{sandbox.info['authorityHost']}/{tenant}/oauth2/v2.0/token"
    assert config["issuer"] == f"{sandbox.info['authorityHost']}/{tenant}/v2.0"
    keys = http.get(f"/{tenant}/discovery/v2.0/keys").json()["keys"]
    assert keys[0]["kty"] == "RSA"
    unknown = http.get("/not-a-tenant/v2.0/.well-known/openid-configuration")
    assert unknown.status_code == 400
    assert unknown.json()["error_codes"] == [90002]


def test_sync_certificate_credential_gets_exactly_the_consented_roles(sandbox: Running):
    creds = sandbox.app("sync-revoker", app_roles=REVOKER)
    token = sync_app_credential(sandbox, creds).get_token(sandbox.info["graphScope"]).token
    body = claims(token)
    assert sorted(body["roles"]) == sorted(REVOKER)
    assert body["appid"] == creds.client_id
    assert body["tid"] == sandbox.info["tenantId"]
    assert body["idtyp"] == "app"


def test_async_certificate_credential_ps256(sandbox: Running):
    creds = sandbox.app("async-revoker", app_roles=("User.RevokeSessions.All",))

    async def get() -> str:
        credential = app_credential(sandbox, creds)
        async with credential:
            return (await credential.get_token(sandbox.info["graphScope"])).token

    assert claims(asyncio.run(get()))["roles"] == ["User.RevokeSessions.All"]


def test_app_without_consent_gets_no_roles(sandbox: Running):
    creds = sandbox.app("unconsented")
    assert "roles" not in claims(sync_app_credential(sandbox, creds).get_token(sandbox.info["graphScope"]).token)


def test_unregistered_certificate_is_aadsts700027_with_its_thumbprint(sandbox: Running):
    creds = sandbox.app("wrong-cert", app_roles=REVOKER)
    cert, key = make_client_certificate("not registered")
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    pem += cert.public_bytes(serialization.Encoding.PEM)
    from azure.identity import CertificateCredential

    credential = CertificateCredential(
        sandbox.info["tenantId"],
        creds.client_id,
        certificate_data=pem,
        authority=sandbox.info["authorityHost"],
        disable_instance_discovery=True,
    )
    with pytest.raises(ClientAuthenticationError) as info:
        credential.get_token(sandbox.info["graphScope"])
    assert "AADSTS700027" in str(info.value)
    assert cert.fingerprint(hashes.SHA1()).hex().upper() in str(info.value)


def test_unknown_app_and_unknown_resource(sandbox: Running):
    creds = sandbox.app("known", app_roles=REVOKER)
    unknown = AppCredentials(dataclasses.replace(creds.app, app_id="11111111-2222-4333-8444-555555555555"), creds.pem)
    with pytest.raises(ClientAuthenticationError, match="AADSTS700016"):
        sync_app_credential(sandbox, unknown).get_token(sandbox.info["graphScope"])
    good = sandbox.app("known2", app_roles=REVOKER)
    with pytest.raises(ClientAuthenticationError, match="AADSTS500011"):
        sync_app_credential(sandbox, good).get_token("https://management.azure.com/.default")


def assertion(client_id: str, key: Any, cert: x509.Certificate, audience: str, exp_offset: int) -> str:
    thumb = base64.urlsafe_b64encode(cert.fingerprint(hashes.SHA1())).rstrip(b"=").decode()
    now = int(time.time())
    payload = {
        "aud": audience,
        "iss": client_id,
        "sub": client_id,
        "jti": "x",
        "nbf": now - 3600,
        "exp": now + exp_offset,
    }
    return jwt.encode(payload, key, algorithm="RS256", headers={"x5t": thumb})


def test_expired_assertion_is_aadsts700024(sandbox: Running):
    cert, key = make_client_certificate("manual")
    app = sandbox.sandbox.call(sandbox.sandbox.register_app, "manual", cert, app_roles=REVOKER)
    url = f"{sandbox.info['authorityHost']}/{sandbox.info['tenantId']}/oauth2/v2.0/token"
    form = {
        "grant_type": "client_credentials",
        "client_id": app.app_id,
        "scope": sandbox.info["graphScope"],
        "client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
    }
    expired = httpx.post(
        url, data={**form, "client_assertion": assertion(app.app_id, key, cert, url, -1200)}, verify=sandbox.tls
    )
    assert expired.status_code == 401
    assert expired.json()["error_codes"] == [700024]
    wrong_aud = httpx.post(
        url,
        data={**form, "client_assertion": assertion(app.app_id, key, cert, "https://x/token", 600)},
        verify=sandbox.tls,
    )
    assert wrong_aud.json()["error"] == "invalid_client"
    ok = httpx.post(
        url, data={**form, "client_assertion": assertion(app.app_id, key, cert, url, 600)}, verify=sandbox.tls
    )
    assert ok.status_code == 200, ok.text


def test_consent_replication_delay(sandbox: Running):
    sandbox.settings(consentDelay=3600)
    try:
        creds = sandbox.app("fresh", app_roles=REVOKER)
        body = claims(sync_app_credential(sandbox, creds).get_token(sandbox.info["graphScope"]).token)
        assert "roles" not in body, "just provisioned: the role is granted but not yet in the token"
    finally:
        sandbox.settings(consentDelay=0)
    body = claims(sync_app_credential(sandbox, creds).get_token(sandbox.info["graphScope"]).token)
    assert sorted(body["roles"]) == sorted(REVOKER)


def device_code_token(sandbox: Running, client_id: str, user: str, scope: str | None = None) -> str:
    from azure.identity import DeviceCodeCredential

    def approve(verification_uri: str, user_code: str, expires_on: Any) -> None:
        sandbox.control.post("/devicecode", json={"userCode": user_code, "user": user}).raise_for_status()

    credential = DeviceCodeCredential(
        client_id,
        tenant_id=sandbox.info["tenantId"],
        authority=sandbox.info["authorityHost"],
        disable_instance_discovery=True,
        prompt_callback=approve,
        timeout=30,
    )
    return str(credential.get_token(scope or sandbox.info["graphScope"]).token)


def test_device_code_flow_issues_consented_scopes_for_the_user(sandbox: Running):
    creds = sandbox.app("delegated", scopes=("User.RevokeSessions.All", "User.Read.All"), public_client=True)
    body = claims(device_code_token(sandbox, creds.client_id, "admin.helpdesk@contoso-sandbox.onmicrosoft.com"))
    assert body["scp"] == "User.Read.All User.RevokeSessions.All"
    assert body["upn"] == "admin.helpdesk@contoso-sandbox.onmicrosoft.com"
    assert body["oid"] == sandbox.user("admin.helpdesk").id
    assert "roles" not in body


def test_delegated_without_consent_is_aadsts65001(sandbox: Running):
    creds = sandbox.app("no-delegated-consent", public_client=True)
    with pytest.raises(ClientAuthenticationError, match="AADSTS65001"):
        device_code_token(sandbox, creds.client_id, "operator@contoso-sandbox.onmicrosoft.com")


def test_assignment_required_blocks_unassigned_users(sandbox: Running):
    creds = sandbox.app("gated", scopes=("User.RevokeSessions.All",), public_client=True, assignment_required=True)
    with pytest.raises(ClientAuthenticationError, match="AADSTS50105"):
        device_code_token(sandbox, creds.client_id, "operator@contoso-sandbox.onmicrosoft.com")
    tenant = sandbox.sandbox.tenant
    group = sandbox.sandbox.call(tenant.add_group, "operators", [sandbox.user("operator").id])
    sp = tenant.sp_for_app(creds.client_id)
    from sandbox.tenant import AppRoleAssignment

    def assign() -> None:
        tenant.assignments["op"] = AppRoleAssignment(
            "op", group.id, "Group", sp.id, "00000000-0000-0000-0000-000000000000", 0
        )

    sandbox.sandbox.call(assign)
    body = claims(device_code_token(sandbox, creds.client_id, "operator@contoso-sandbox.onmicrosoft.com"))
    assert body["scp"] == "User.RevokeSessions.All"


# A scripted browser: opens the sign-in URL (trusting the sandbox CA), then delivers the answer to
# the credential's localhost listener as a real browser would (a redirect or Entra's form_post).
# Like a real browser, it returns at once (webbrowser waits for a $BROWSER command to exit).
BROWSER_SCRIPT = """
import html.parser, os, ssl, sys, urllib.parse, urllib.request
if os.fork():
    sys.exit(0)
class NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None
class Form(html.parser.HTMLParser):
    action, fields = None, {}
    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "form":
            self.action = attrs["action"]
        if tag == "input":
            self.fields[attrs["name"]] = attrs["value"]
ctx = ssl.create_default_context(cafile=sys.argv[1])
opener = urllib.request.build_opener(urllib.request.HTTPSHandler(context=ctx), NoRedirect)
try:
    page = opener.open(sys.argv[2]).read().decode()
except urllib.error.HTTPError as err:
    urllib.request.urlopen(err.headers["Location"]).read()
else:
    form = Form()
    form.feed(page)
    urllib.request.urlopen(form.action, data=urllib.parse.urlencode(form.fields).encode()).read()
"""


def test_interactive_browser_credential_with_a_scripted_browser(
    sandbox: Running, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    import webbrowser

    from azure.identity import InteractiveBrowserCredential

    script = tmp_path / "browser.py"
    script.write_text(BROWSER_SCRIPT)
    monkeypatch.setenv("BROWSER", f"{sys.executable} {script} {sandbox.ca} %s")
    webbrowser._tryorder = None  # type: ignore[attr-defined]  # re-read $BROWSER
    creds = sandbox.app("interactive", scopes=("User.RevokeSessions.All",), public_client=True)
    sandbox.settings(autoApproveUser="admin.users@contoso-sandbox.onmicrosoft.com")
    try:
        credential = InteractiveBrowserCredential(
            client_id=creds.client_id,
            tenant_id=sandbox.info["tenantId"],
            authority=sandbox.info["authorityHost"],
            disable_instance_discovery=True,
            timeout=30,
        )
        body = claims(credential.get_token(sandbox.info["graphScope"]).token)
    finally:
        sandbox.settings(autoApproveUser=None)
    assert body["upn"] == "admin.users@contoso-sandbox.onmicrosoft.com"
    assert body["scp"] == "User.RevokeSessions.All"


def test_authorization_code_requires_the_pkce_verifier(sandbox: Running):
    creds = sandbox.app("pkce", scopes=("User.RevokeSessions.All",), public_client=True)
    base = f"{sandbox.info['authorityHost']}/{sandbox.info['tenantId']}/oauth2/v2.0"
    verifier = "v" * 50
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    redirect = "http://localhost:5555"
    response = httpx.get(
        f"{base}/authorize",
        params={
            "client_id": creds.client_id,
            "redirect_uri": redirect,
            "response_type": "code",
            "scope": sandbox.info["graphScope"],
            "code_challenge": challenge,
            "code_challenge_method": "S256",
            "login_hint": "operator@contoso-sandbox.onmicrosoft.com",
            "state": "s1",
        },
        verify=sandbox.tls,
    )
    assert response.status_code == 302
    location = httpx.URL(response.headers["location"])
    assert location.params["state"] == "s1"
    form = {
        "grant_type": "authorization_code",
        "client_id": creds.client_id,
        "code": location.params["code"],
        "redirect_uri": redirect,
        "code_verifier": "wrong" * 10,
    }
    bad = httpx.post(f"{base}/token", data=form, verify=sandbox.tls)
    assert bad.status_code == 400
    assert bad.json()["error_codes"] == [501481]
    bad_redirect = httpx.get(
        f"{base}/authorize",
        params={"client_id": creds.client_id, "redirect_uri": "https://evil.example"},
        verify=sandbox.tls,
    )
    assert bad_redirect.json()["error_codes"] == [50011]
