"""The provider emulation applies resources the way the azuread provider does."""

from __future__ import annotations

import base64
import re
from datetime import timedelta, timezone
from typing import Any

import pulumi
import pytest
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from provisioning.mocks import (
    T_APPLICATION,
    T_APPLICATION_CERTIFICATE,
    T_PRIVATE_KEY,
    T_SELF_SIGNED_CERT,
    DirectoryError,
    MemoryDirectory,
    ProviderMocks,
)
from revoke_ops.facts import rfc3339, thumbprint, utc_seconds
from tests.certs import make_certificate


def register(mocks: ProviderMocks, typ: str, name: str, inputs: dict[str, Any]) -> tuple[str | None, dict[str, Any]]:
    return mocks.new_resource(pulumi.runtime.MockResourceArgs(typ=typ, name=name, inputs=inputs))


def test_duplicate_display_name_is_refused_like_the_provider():
    directory = MemoryDirectory(existing_app_names={"revoke-sessions"})
    mocks = ProviderMocks(directory)
    with pytest.raises(DirectoryError, match="existing Application with display name 'revoke-sessions'"):
        register(mocks, T_APPLICATION, "app", {"displayName": "revoke-sessions", "preventDuplicateNames": True})
    assert [o for o in directory.objects.values() if o.get("@kind") == "application"] == []


def test_application_is_created_in_the_directory_with_its_ids():
    directory = MemoryDirectory()
    mocks = ProviderMocks(directory)
    resource_id, outputs = register(mocks, T_APPLICATION, "app", {"displayName": "x", "owners": ["o1"]})
    assert resource_id == f"/applications/{outputs['objectId']}"
    stored = directory.objects[outputs["objectId"]]
    assert stored["appId"] == outputs["clientId"]
    assert stored["owners"] == ["o1"]


def test_secret_inputs_are_unwrapped():
    directory = MemoryDirectory()
    mocks = ProviderMocks(directory)
    secret = {"4dabf18193072939515e22adb298388d": "1b47061264138c4ac30d75fd1eb44270", "value": "hidden"}
    register(mocks, T_APPLICATION, "app", {"displayName": secret})
    assert mocks.resources[0].inputs["displayName"] == "hidden"


def _application(mocks: ProviderMocks) -> str:
    _, outputs = register(mocks, T_APPLICATION, "app", {"displayName": "x"})
    return str(outputs["objectId"])


@pytest.mark.parametrize("encoding", ["pem", "base64", "hex"])
def test_certificate_value_is_sent_as_the_provider_encodes_it(encoding: str):
    cert_pem, _ = make_certificate(days=30)
    der = x509.load_pem_x509_certificate(cert_pem.encode()).public_bytes(Encoding.DER)
    value = {"pem": cert_pem, "base64": base64.b64encode(der).decode(), "hex": der.hex()}[encoding]
    directory = MemoryDirectory()
    mocks = ProviderMocks(directory)
    app_id = _application(mocks)
    not_after = x509.load_pem_x509_certificate(cert_pem.encode()).not_valid_after_utc
    end = not_after.astimezone(timezone(timedelta(hours=-5))).strftime("%Y-%m-%dT%H:%M:%S.5-05:00")
    inputs = {"applicationId": f"/applications/{app_id}", "value": value, "encoding": encoding, "endDate": end}
    _, outputs = register(mocks, T_APPLICATION_CERTIFICATE, "cert", inputs)
    (stored,) = directory.objects[app_id]["keyCredentials"]
    assert stored["customKeyIdentifier"] == thumbprint(der)  # Graph computes the thumbprint
    assert stored["endDateTime"] == rfc3339(not_after)
    # Read back as azuread does: UTC whole seconds.
    assert outputs["endDate"] == rfc3339(not_after)


@pytest.mark.parametrize(
    ("end", "complaint"),
    [
        ("2999-01-01T00:00:00Z", "end date is invalid: it is after the certificate's notAfter"),  # Graph
        ("2027-01-01 00:00:00", "Unable to parse the provided endDate"),  # the provider's time.Parse
    ],
)
def test_certificate_end_is_refused_like_the_provider_and_graph(end: str, complaint: str):
    cert_pem, _ = make_certificate(days=30)
    directory = MemoryDirectory()
    mocks = ProviderMocks(directory)
    app_id = _application(mocks)
    inputs = {"applicationId": f"/applications/{app_id}", "value": cert_pem, "endDate": end}
    with pytest.raises(DirectoryError, match=re.escape(complaint)):
        register(mocks, T_APPLICATION_CERTIFICATE, "cert", inputs)
    assert directory.objects[app_id]["keyCredentials"] == []


def test_self_signed_cert_times_are_written_as_go_marshals_them():
    mocks = ProviderMocks(
        MemoryDirectory(), clock_ns=lambda: 1_811_520_780_123_456_789, local_zone=timezone(timedelta(hours=1))
    )
    _, key = register(mocks, T_PRIVATE_KEY, "key", {"algorithm": "RSA", "rsaBits": 2048})
    inputs = {"privateKeyPem": key["privateKeyPem"], "validityPeriodHours": 24, "subject": {"commonName": "x"}}
    _, cert = register(mocks, T_SELF_SIGNED_CERT, "cert", inputs)
    assert cert["validityStartTime"] == "2027-05-28T17:13:00.123456789+01:00"
    assert cert["validityEndTime"] == "2027-05-29T17:13:00.123456789+01:00"
    parsed = x509.load_pem_x509_certificate(cert["certPem"].encode())
    assert rfc3339(parsed.not_valid_after_utc) == utc_seconds(cert["validityEndTime"])
