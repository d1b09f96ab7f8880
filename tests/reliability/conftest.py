"""Reliability tests run against the sandbox, whose bundles are cloud "custom"."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from revoke_ops.bundle import ALLOW_CUSTOM_CLOUD_ENV


@pytest.fixture(scope="module", autouse=True)
def _sandbox_is_a_trusted_custom_cloud() -> Iterator[None]:
    """Allowed here as the sandbox's instructions say: with the environment variable."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(ALLOW_CUSTOM_CLOUD_ENV, "1")
        yield
