"""A running sandbox for the tests, and real Microsoft clients pointed at it."""

from __future__ import annotations

import os
import ssl
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives import serialization

from sandbox.server import Sandbox, SandboxOptions, make_client_certificate
from sandbox.tenant import Application

DOMAIN = "contoso-sandbox.onmicrosoft.com"


@dataclass
class AppCredentials:
    app: Application
    pem: bytes = field(repr=False)  # key + certificate, as azure-identity wants it; kept out of failure reports

    def _repr_pretty_(self, printer: Any, cycle: bool) -> None:
        # Hypothesis prints dataclass fields in falsifying examples whatever their repr setting;
        # this hook makes it print repr(), which leaves the key out.
        printer.text(repr(self))

    @property
    def client_id(self) -> str:
        return self.app.app_id


class Running:
    """A started sandbox with helpers tests use to set it up and inspect it."""

    def __init__(self, sandbox: Sandbox) -> None:
        self.sandbox = sandbox
        self.info: dict[str, Any] = sandbox.info
        self.ca = self.info["caBundle"]
        self.tls = ssl.create_default_context(cafile=self.ca)
        self.control = httpx.Client(
            base_url=self.info["controlEndpoint"],
            verify=self.tls,
            timeout=30,
            headers={"Authorization": f"Bearer {self.info['controlToken']}"},
        )
        self.http = httpx.Client(base_url=self.info["graphEndpoint"], verify=self.tls, timeout=30)

    def app(
        self, name: str, *, app_roles: tuple[str, ...] = (), scopes: tuple[str, ...] = (), **kwargs: Any
    ) -> AppCredentials:
        cert, key = make_client_certificate(name)
        app = self.sandbox.call(self.sandbox.register_app, name, cert, app_roles=app_roles, scopes=scopes, **kwargs)
        pem = key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
        return AppCredentials(app, pem + cert.public_bytes(serialization.Encoding.PEM))

    def user(self, alias: str) -> Any:
        return self.sandbox.tenant.user(f"{alias}@{DOMAIN}")

    def revocations(self) -> list[dict[str, Any]]:
        return list(self.control.get("/revocations").json())

    def settings(self, **values: Any) -> None:
        self.control.post("/settings", json=values).raise_for_status()


@pytest.fixture(scope="session")
def sandbox(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Running]:
    state: Path = tmp_path_factory.mktemp("sandbox")
    with Sandbox(state, SandboxOptions(users=600, groups=8, group_size=150)) as sb:
        old = {k: os.environ.get(k) for k in ("SSL_CERT_FILE", "REQUESTS_CA_BUNDLE")}
        # The documented way to trust the sandbox: its CA through the standard variables.
        os.environ["SSL_CERT_FILE"] = os.environ["REQUESTS_CA_BUNDLE"] = sb.info["caBundle"]
        try:
            yield Running(sb)
        finally:
            for key, value in old.items():
                if value is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = value


def graph_client(run: Running, credential: Any) -> Any:
    """msgraph-sdk's GraphServiceClient for the sandbox, configured only through public options."""
    from kiota_authentication_azure.azure_identity_authentication_provider import AzureIdentityAuthenticationProvider
    from msgraph.graph_request_adapter import GraphRequestAdapter
    from msgraph.graph_service_client import GraphServiceClient

    auth = AzureIdentityAuthenticationProvider(credential, scopes=[run.info["graphScope"]], allowed_hosts=["127.0.0.1"])
    adapter = GraphRequestAdapter(auth)
    adapter.base_url = run.info["graphEndpoint"]
    return GraphServiceClient(request_adapter=adapter)


def app_credential(run: Running, creds: AppCredentials) -> Any:
    from azure.identity.aio import CertificateCredential

    return CertificateCredential(
        run.info["tenantId"],
        creds.client_id,
        certificate_data=creds.pem,
        authority=run.info["authorityHost"],
        connection_verify=run.ca,
    )


def sync_app_credential(run: Running, creds: AppCredentials) -> Any:
    from azure.identity import CertificateCredential

    return CertificateCredential(
        run.info["tenantId"],
        creds.client_id,
        certificate_data=creds.pem,
        authority=run.info["authorityHost"],
        disable_instance_discovery=True,
    )


def claims(token: str) -> dict[str, Any]:
    import jwt

    return dict(jwt.decode(token, options={"verify_signature": False}))


def bearer(run: Running, creds: AppCredentials) -> dict[str, str]:
    """An Authorization header with an app-only token (sync credential, MSAL)."""
    token = sync_app_credential(run, creds).get_token(run.info["graphScope"]).token
    return {"Authorization": f"Bearer {token}"}
