"""Delegated sign-in against the sandbox: after a transient failure the retry redeems the code already shown."""

from __future__ import annotations

import asyncio
import json
import threading
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from revoke_ops.bundle import load_bundle
from revoke_ops.credentials import delegated_identity
from revoke_ops.errors import TransientAuthError
from sandbox.identity import TokenError
from tests.revoke_ops.conftest import DOMAIN
from tests.revoke_ops.test_doctor import PROMPT, delegated_ops
from tests.sandbox.conftest import Running

DEVICE_GRANT = "urn:ietf:params:oauth:grant-type:device_code"
TRANSIENT = "A transient error has occurred. Please try again."


def failing_redemptions(sandbox: Running, monkeypatch: pytest.MonkeyPatch, client_id: str, failures: int) -> list[str]:
    """The first ``failures`` redemptions of ``client_id``'s device codes fail (AADSTS90033); returns the codes asked.

    HTTP 400, as Entra answers token errors: MSAL holds back a repeated request after a 5xx for 5 s
    (its throttling cache), which a test should not wait out; the device flow is exempt from its 400 cache.
    """
    identity = sandbox.sandbox.identity
    original = identity.token
    asked: list[str] = []
    lock = threading.Lock()

    def token(form: dict[str, str], url: str) -> dict[str, Any]:
        if form.get("grant_type") == DEVICE_GRANT and form.get("client_id") == client_id:
            with lock:
                asked.append(form.get("device_code", ""))
                if len(asked) <= failures:
                    raise TokenError("temporarily_unavailable", 90033, TRANSIENT, 400)
        return original(form, url)

    monkeypatch.setattr(identity, "token", token)
    return asked


@pytest.fixture
def operator(sandbox: Running, monkeypatch: pytest.MonkeyPatch) -> Any:
    monkeypatch.setenv("SSL_CERT_FILE", sandbox.ca)
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", sandbox.ca)
    sandbox.settings(autoApproveUser=f"operator@{DOMAIN}")  # signs in as soon as a code is shown
    yield
    sandbox.settings(autoApproveUser=None)


def test_a_transient_failure_after_the_device_code_sign_in_is_retried_without_a_second_code(
    sandbox: Running, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, operator: Any
) -> None:
    ops = delegated_ops(sandbox, tmp_path, "signin-transient", ("User.RevokeSessions.All",))
    asked = failing_redemptions(sandbox, monkeypatch, ops.creds.client_id, failures=1)
    prompts: list[str] = []

    def prompt(uri: str, code: str, expires: datetime) -> None:
        prompts.append(code)

    identity = delegated_identity("device-code", bundle=load_bundle(ops.bundle), prompt=prompt)

    async def sign_in() -> str:
        try:
            with pytest.raises(TransientAuthError, match="AADSTS90033") as failed:
                await identity.token()
            assert "retry in a minute" in str(failed.value)
            return (await identity.token()).token  # what any retry (doctor --wait, a read) does
        finally:
            await identity.close()

    token = asyncio.run(asyncio.wait_for(sign_in(), timeout=60))
    assert token.count(".") == 2
    assert len(prompts) == 1, f"the operator was shown {len(prompts)} codes"
    assert len(asked) == 2 and asked[0] == asked[1], "the retry redeems the code already signed in with"


def test_a_spent_device_code_is_not_polled_again(
    sandbox: Running, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, operator: Any
) -> None:
    # The operator declined: that code is spent, so a new attempt shows a new one (never a loop on it).
    ops = delegated_ops(sandbox, tmp_path, "signin-declined", ("User.RevokeSessions.All",))
    identity_service = sandbox.sandbox.identity
    original = identity_service.start_device_flow

    def declined(form: dict[str, str]) -> dict[str, Any]:
        flow = original(form)
        identity_service.approve_device(flow["user_code"], f"operator@{DOMAIN}", deny=True)
        return flow

    monkeypatch.setattr(identity_service, "start_device_flow", declined)
    prompts: list[str] = []
    identity = delegated_identity(
        "device-code", bundle=load_bundle(ops.bundle), prompt=lambda uri, code, expires: prompts.append(code)
    )

    async def twice() -> list[str]:
        messages = []
        try:
            for _ in range(2):
                try:
                    await identity.token()
                except Exception as err:  # noqa: BLE001  # the message is what is asserted
                    messages.append(str(err))
        finally:
            await identity.close()
        return messages

    messages = asyncio.run(asyncio.wait_for(twice(), timeout=60))
    assert len(messages) == 2 and all("AADSTS70000" in m for m in messages), messages
    assert len(prompts) == 2 and prompts[0] != prompts[1]


def test_doctor_wait_rides_out_a_failed_redemption_with_one_code(
    sandbox: Running, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, operator: Any
) -> None:
    ops = delegated_ops(sandbox, tmp_path, "signin-doctor", ("User.RevokeSessions.All",))
    asked = failing_redemptions(sandbox, monkeypatch, ops.creds.client_id, failures=1)
    result = ops.cli("doctor", "--delegated", "--wait", "10", "--output", "json")
    assert result.stderr.count(PROMPT) == 1, result.stderr
    found = {c["name"]: c for c in json.loads(result.stdout)}
    assert found["token"]["status"] == "ok", found["token"]
    assert len(asked) == 2 and asked[0] == asked[1]
