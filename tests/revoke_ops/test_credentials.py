"""Credential selection and endpoints, without a network."""

from __future__ import annotations

import asyncio
import json
import re
from pathlib import Path
from typing import Any

import pytest
from azure.identity import aio

from revoke_ops.bundle import parse_bundle
from revoke_ops.credentials import Identity, certificate_identity, delegated_identity, platform_identity
from revoke_ops.credentials.identity import RenewableCredential
from revoke_ops.errors import AuthError, InputError
from revoke_ops.graph import GraphSession
from tests.certs import make_certificate
from tests.revoke_ops.test_bundle import BUNDLE


def current(identity: Identity) -> Any:
    """The azure-identity credential an identity's renewable wrapper holds now."""
    assert isinstance(identity.credential, RenewableCredential)
    return identity.credential.current


def key_file(tmp_path: Path, key_type: str = "rsa", mode: int = 0o600) -> Path:
    cert, key = make_certificate(key_type=key_type)
    path = tmp_path / "key.pem"
    path.write_text(key + cert)
    path.chmod(mode)
    return path


@pytest.mark.parametrize(
    ("cloud", "authority", "graph", "scope"),
    [
        (
            "public",
            "https://login.microsoftonline.com",
            "https://graph.microsoft.com/v1.0",
            "https://graph.microsoft.com/.default",
        ),
        (
            "usgovernment",
            "https://login.microsoftonline.us",
            "https://graph.microsoft.us/v1.0",
            "https://graph.microsoft.us/.default",
        ),
        (
            "usgovernmentdod",
            "https://login.microsoftonline.us",
            "https://dod-graph.microsoft.us/v1.0",
            "https://dod-graph.microsoft.us/.default",
        ),
        (
            "china",
            "https://login.chinacloudapi.cn",
            "https://microsoftgraph.chinacloudapi.cn/v1.0",
            "https://microsoftgraph.chinacloudapi.cn/.default",
        ),
    ],
)
def test_national_cloud_endpoints_from_the_environment(
    tmp_path: Path, cloud: str, authority: str, graph: str, scope: str
):
    env = {
        "AZURE_TENANT_ID": BUNDLE["tenantId"],
        "AZURE_CLIENT_ID": BUNDLE["clientId"],
        "AZURE_CLIENT_CERTIFICATE_PATH": str(key_file(tmp_path)),
    }
    identity = certificate_identity(cloud=cloud, environ=env)
    assert (identity.authority_host, identity.graph_endpoint, identity.graph_scope) == (authority, graph, scope)

    async def base_url() -> str:
        async with GraphSession(identity) as session:
            return str(session.adapter.base_url)

    assert asyncio.run(base_url()) == graph
    asyncio.run(identity.close())


def test_bundle_endpoints_decide_where_requests_go(tmp_path: Path):
    cert, key = make_certificate()
    bundle = parse_bundle(
        {
            **BUNDLE,
            "cloud": "usgovernment",
            "authorityHost": "https://login.microsoftonline.us",
            "graphEndpoint": "https://graph.microsoft.us/v1.0",
            "graphScope": "https://graph.microsoft.us/.default",
            "certificatePem": cert,
            "privateKeyPem": key,
        }
    )
    identity = certificate_identity(bundle=bundle)
    assert identity.graph_endpoint == "https://graph.microsoft.us/v1.0"
    assert current(identity)._client._authority == "https://login.microsoftonline.us"
    asyncio.run(identity.close())


def test_key_problems_are_input_errors(tmp_path: Path):
    env = {"AZURE_TENANT_ID": BUNDLE["tenantId"], "AZURE_CLIENT_ID": BUNDLE["clientId"]}
    with pytest.raises(InputError, match="accessible to group or others"):
        certificate_identity(environ={**env, "AZURE_CLIENT_CERTIFICATE_PATH": str(key_file(tmp_path, mode=0o644))})
    with pytest.raises(InputError, match="the private key is not RSA"):
        certificate_identity(environ={**env, "AZURE_CLIENT_CERTIFICATE_PATH": str(key_file(tmp_path, key_type="ec"))})
    with pytest.raises(InputError, match="AZURE_CLIENT_CERTIFICATE_PATH"):
        certificate_identity(environ=env)
    with pytest.raises(InputError, match="the bundle holds no private key"):
        certificate_identity(bundle=parse_bundle(BUNDLE))


def test_managed_identity_selection(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("AZURE_CLIENT_ID", "11111111-2222-4333-8444-555555555555")
    identity = platform_identity("managed-identity", bundle=parse_bundle(BUNDLE))
    assert isinstance(current(identity), aio.ManagedIdentityCredential)
    assert identity.tenant_id == BUNDLE["tenantId"]
    assert identity.description == "managed identity 11111111-2222-4333-8444-555555555555"
    assert identity.client_id == "11111111-2222-4333-8444-555555555555", "the identity's own client id, not the app's"
    asyncio.run(identity.close())
    monkeypatch.delenv("AZURE_CLIENT_ID")
    system = platform_identity("managed-identity", bundle=parse_bundle(BUNDLE))
    assert system.client_id is None and system.description == "managed identity (system-assigned)"
    assert (system.tenant_id, system.graph_endpoint) == (BUNDLE["tenantId"], BUNDLE["graphEndpoint"])
    assert system.renew == system.credential.renew, "fresh_token() replaces the credential"
    asyncio.run(system.close())


def test_workload_identity_selection(monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    token = tmp_path / "token"
    token.write_text("federated")
    monkeypatch.setenv("AZURE_TENANT_ID", BUNDLE["tenantId"])
    monkeypatch.setenv("AZURE_CLIENT_ID", BUNDLE["clientId"])
    monkeypatch.setenv("AZURE_FEDERATED_TOKEN_FILE", str(token))
    identity = platform_identity("workload-identity", cloud="china")
    assert isinstance(current(identity), aio.WorkloadIdentityCredential)
    assert identity.graph_endpoint == "https://microsoftgraph.chinacloudapi.cn/v1.0"
    asyncio.run(identity.close())
    monkeypatch.delenv("AZURE_FEDERATED_TOKEN_FILE")
    with pytest.raises(InputError, match="AZURE_FEDERATED_TOKEN_FILE"):
        platform_identity("workload-identity")


def test_azure_pipelines_selection(monkeypatch: pytest.MonkeyPatch):
    with pytest.raises(InputError, match="SYSTEM_ACCESSTOKEN"):
        platform_identity("azure-pipelines")
    for name, value in {
        "AZURESUBSCRIPTION_TENANT_ID": BUNDLE["tenantId"],
        "AZURESUBSCRIPTION_CLIENT_ID": BUNDLE["clientId"],
        "AZURESUBSCRIPTION_SERVICE_CONNECTION_ID": "conn",
        "SYSTEM_ACCESSTOKEN": "x",
    }.items():
        monkeypatch.setenv(name, value)
    identity = platform_identity("azure-pipelines")
    assert isinstance(current(identity), aio.AzurePipelinesCredential)
    asyncio.run(identity.close())


def test_delegated_needs_delegated_consent():
    with pytest.raises(AuthError, match="granted no delegated permission"):
        delegated_identity("device-code", bundle=parse_bundle(BUNDLE))
    both = parse_bundle({**BUNDLE, "permissionMode": "both", "delegatedPermissions": ["User.RevokeSessions.All"]})
    identity = delegated_identity("device-code", bundle=both)
    assert identity.delegated and identity.kind == "delegated"


def test_bundle_json_roundtrip_has_no_secret_in_repr(tmp_path: Path):
    cert, key = make_certificate()
    bundle = parse_bundle({**BUNDLE, "certificatePem": cert, "privateKeyPem": key})
    assert "PRIVATE" not in repr(bundle) and key[40:80] not in repr(bundle)
    assert json.loads(json.dumps(BUNDLE)) == BUNDLE


def _env(tmp_path: Path, **extra: str) -> dict[str, str]:
    return {
        "AZURE_TENANT_ID": BUNDLE["tenantId"],
        "AZURE_CLIENT_ID": BUNDLE["clientId"],
        "AZURE_CLIENT_CERTIFICATE_PATH": str(key_file(tmp_path)),
        **extra,
    }


def test_azure_authority_host_is_honoured_on_the_environment_path(tmp_path: Path):
    identity = certificate_identity(environ=_env(tmp_path, AZURE_AUTHORITY_HOST="login.chinacloudapi.cn"))
    assert identity.authority_host == "https://login.chinacloudapi.cn"
    assert identity.graph_endpoint == "https://microsoftgraph.chinacloudapi.cn/v1.0"
    asyncio.run(identity.close())
    dod = certificate_identity(
        cloud="usgovernmentdod", environ=_env(tmp_path, AZURE_AUTHORITY_HOST="https://login.microsoftonline.us")
    )
    assert dod.graph_endpoint == "https://dod-graph.microsoft.us/v1.0"
    asyncio.run(dod.close())


@pytest.mark.parametrize(
    ("authority", "cloud", "message"),
    [
        ("https://login.microsoftonline.us", None, "serves usgovernment and usgovernmentdod: pass --cloud"),
        ("https://login.microsoftonline.com", "china", "--cloud china conflicts with AZURE_AUTHORITY_HOST"),
        ("https://127.0.0.1:8443", None, "is not the authority host of a Microsoft cloud"),
        ("https://login.microsoftonline.com@127.0.0.1", None, "is not the authority host of a Microsoft cloud"),
    ],
)
def test_a_doubtful_azure_authority_host_is_refused(tmp_path: Path, authority: str, cloud: str | None, message: str):
    with pytest.raises(InputError, match=re.escape(message)):
        certificate_identity(cloud=cloud, environ=_env(tmp_path, AZURE_AUTHORITY_HOST=authority))


def test_tenant_or_cloud_beside_a_bundle_is_refused(tmp_path: Path):
    cert, key = make_certificate()
    bundle = parse_bundle({**BUNDLE, "certificatePem": cert, "privateKeyPem": key})
    with pytest.raises(InputError, match="--tenant-id 11111111-2222-4333-8444-555555555555"):
        certificate_identity(bundle=bundle, tenant_id="11111111-2222-4333-8444-555555555555")
    with pytest.raises(InputError, match=r"--cloud china \(the bundle's cloud is public\)"):
        delegated_identity("device-code", bundle=bundle, cloud="china")


class _Response:
    def __init__(self, status_code: int) -> None:
        self.status_code = status_code
        self.reason = "answer"


@pytest.mark.parametrize(
    ("message", "status", "transient"),
    [
        ("AADSTS90033: A transient error has occurred. Please try again.", 400, True),
        ("AADSTS50196: The server terminated an operation because it encountered a loop", 400, True),
        ("Service unavailable", 503, True),
        ("Too many requests", 429, True),
        ("AADSTS700027: Client assertion contains an invalid signature.", 401, False),
    ],
)
def test_transient_token_failures_are_told_apart(message: str, status: int, transient: bool):
    from azure.core.exceptions import ClientAuthenticationError

    from revoke_ops.credentials import explain_auth_error
    from revoke_ops.errors import TransientAuthError

    err = ClientAuthenticationError(message=message, response=_Response(status))  # type: ignore[arg-type]
    explained = explain_auth_error(err, "application x")
    assert isinstance(explained, TransientAuthError) is transient
    assert isinstance(explained, AuthError) is not transient


class _Refusing:
    """A token credential that fails the way azure-identity does."""

    def __init__(self, err: Exception) -> None:
        self.err = err

    async def get_token(self, *scopes: str, **kwargs: Any) -> Any:
        raise self.err

    async def renew(self) -> None: ...

    async def close(self) -> None: ...

    async def __aenter__(self) -> _Refusing:
        return self

    async def __aexit__(self, *exc: Any) -> None: ...


@pytest.mark.parametrize(
    ("make", "transient", "code", "says"),
    [
        (
            lambda: _client_auth("AADSTS700027: Client assertion contains an invalid signature.", 401),
            False,
            "AADSTS700027",
            "what to do: the certificate is not registered on the application",
        ),
        (lambda: _client_auth("Service unavailable", 503), True, "HTTP503", "retry in a minute"),
        (
            lambda: _service_request("Cannot connect to host login.microsoftonline.com:443"),
            True,
            "NetworkError",
            "could not reach the identity platform at https://login.microsoftonline.com",
        ),
    ],
)
def test_a_token_failure_is_classified_once_whether_asked_directly_or_by_a_graph_request(
    make: object, transient: bool, code: str, says: str
) -> None:
    import httpx

    from revoke_ops.credentials import CredentialKind, Identity
    from revoke_ops.errors import TransientAuthError

    assert callable(make)
    identity = Identity(
        tenant_id=BUNDLE["tenantId"],
        client_id=BUNDLE["clientId"],
        authority_host="https://login.microsoftonline.com",
        graph_endpoint="https://graph.microsoft.com/v1.0",
        graph_scope="https://graph.microsoft.com/.default",
        credential=_Refusing(make()),
        kind=CredentialKind.CERTIFICATE,
        description="application x",
    )

    def never(request: httpx.Request) -> httpx.Response:
        raise AssertionError(f"nothing is sent without a token: {request.url}")

    async def both() -> list[AuthError | TransientAuthError]:
        caught: list[AuthError | TransientAuthError] = []
        for attempt in ("token", "graph"):
            try:
                if attempt == "token":
                    await identity.token()
                else:
                    async with GraphSession(identity, transport=httpx.MockTransport(never)) as graph:
                        await graph.send("GET", "/users?$top=1")
            except (AuthError, TransientAuthError) as err:
                caught.append(err)
        return caught

    direct, via_graph = asyncio.run(both())
    assert (type(direct), str(direct), direct.code) == (type(via_graph), str(via_graph), via_graph.code)
    assert isinstance(direct, TransientAuthError) is transient
    assert direct.code == code and says in str(direct)


def _client_auth(message: str, status: int) -> Exception:
    from azure.core.exceptions import ClientAuthenticationError

    return ClientAuthenticationError(message=message, response=_Response(status))  # type: ignore[arg-type]


def _service_request(message: str) -> Exception:
    from azure.core.exceptions import ServiceRequestError

    return ServiceRequestError(message)
