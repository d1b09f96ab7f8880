"""Test tiers: ``e2e`` marks every test that needs a running sandbox or runs a whole program.

``pytest -m "not e2e"`` is the fast tier (no server, no subprocess per test: classification,
pacing, retry policy, journal logic, config, mocks); ``scripts/test`` runs both tiers. A test is
end to end when it uses the ``sandbox`` fixture (directly or through another fixture), is marked
``slow`` (a whole-program run in a subprocess), or lives where every test does one of these: the
sandbox's and the reliability tests, the demo, the Pulumi program under the mock runtime (a fresh
process per run) and the acceptance harness (it runs scripts/acceptance).
"""

from __future__ import annotations

from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parent
E2E_PLACES = (
    "sandbox/",
    "reliability/",
    "test_demo.py",
    "provisioning/test_program.py",
    "acceptance/test_harness.py",
)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "e2e: needs a running sandbox or runs a whole program (the slow tier)")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        try:
            where = Path(str(item.path)).resolve().relative_to(TESTS).as_posix()
        except ValueError:
            continue
        uses_sandbox = "sandbox" in getattr(item, "fixturenames", ())
        if uses_sandbox or item.get_closest_marker("slow") or where.startswith(E2E_PLACES):
            item.add_marker(pytest.mark.e2e)
