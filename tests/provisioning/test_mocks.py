"""The provider emulation applies resources the way the azuread provider does."""

from __future__ import annotations

from typing import Any

import pulumi
import pytest

from provisioning.mocks import T_APPLICATION, DirectoryError, MemoryDirectory, ProviderMocks


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
