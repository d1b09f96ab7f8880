"""The resumable device-code credential is used only while azure-identity has the hooks it overrides."""

from __future__ import annotations

import logging

import pytest
from azure.identity import DeviceCodeCredential

from revoke_ops.credentials import device_code
from revoke_ops.credentials.device_code import ResumableDeviceCodeCredential, device_code_credential

TENANT = "00000000-0000-0000-0000-000000000001"


def test_the_pinned_azure_identity_has_the_hooks_so_a_retry_keeps_the_code():
    assert device_code.resumable_supported()
    assert isinstance(device_code_credential("client", tenant_id=TENANT), ResumableDeviceCodeCredential)


def test_without_the_hooks_azure_identitys_own_credential_is_used_and_the_loss_is_said(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
):
    monkeypatch.setattr(device_code, "resumable_supported", lambda: False)
    with caplog.at_level(logging.WARNING):
        credential = device_code_credential("client", tenant_id=TENANT)
    assert type(credential) is DeviceCodeCredential
    assert "will show a new code" in caplog.text
