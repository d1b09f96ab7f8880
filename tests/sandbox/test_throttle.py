"""The throttling model: token buckets, headers, time scaling."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from sandbox.throttle import Clock, ThrottleModel, TokenBucket, resource_unit_limit
from tests.sandbox.conftest import Running
from tests.sandbox.test_graph import WRITE_ITEM, batch


@dataclass
class FakeClock(Clock):
    t: float = 0.0

    def now(self) -> float:
        return self.t


def test_bucket_allows_the_burst_then_the_refill_rate():
    bucket = TokenBucket("w", capacity=3000, rate=20)
    admitted = sum(1 for _ in range(3100) if bucket.try_take(0.0, 1) == 0)
    assert admitted == 3000
    assert bucket.try_take(0.0, 1) == pytest.approx(1 / 20)
    assert sum(1 for _ in range(100) if bucket.try_take(1.0, 1) == 0) == 20  # one second refills 20


def test_write_limits_per_app_and_per_tenant():
    clock = FakeClock(scale=1.0)
    model = ThrottleModel(clock, tenant_users=10_000)
    assert sum(model.admit("app1", "t", write=True, cost=1) is None for _ in range(3001)) == 3000
    throttled = model.admit("app1", "t", write=True, cost=1)
    assert throttled is not None and throttled.scope == "Tenant_Application/Write/app1/t"
    assert model.retry_after_header(throttled) == 1
    # other apps share the tenant's 18,000 writes / 5 min
    for app in ("app2", "app3", "app4", "app5", "app6"):
        assert sum(model.admit(app, "t", write=True, cost=1) is None for _ in range(3000)) == 3000
    last = model.admit("app7", "t", write=True, cost=1)
    assert last is not None and last.scope == "Tenant/Write/t"
    clock.t = 150.0  # the app+tenant bucket is full again after 150 s
    assert model.admit("app1", "t", write=True, cost=1) is None


def test_limit_percentage_from_80_percent():
    clock = FakeClock()
    model = ThrottleModel(clock, tenant_users=10_000)
    for _ in range(2300):
        model.admit("a", "t", write=True, cost=1)
    assert model.limit_percentage("a", "t", write=True) is None
    for _ in range(200):
        model.admit("a", "t", write=True, cost=1)
    assert model.limit_percentage("a", "t", write=True) == pytest.approx(2500 / 3000, abs=0.01)


def test_retry_after_is_scaled_and_rounded_up():
    clock = FakeClock(scale=0.1)
    model = ThrottleModel(clock, tenant_users=10)
    for _ in range(3000):
        model.admit("a", "t", write=True, cost=1)
    throttled = model.admit("a", "t", write=True, cost=1)
    assert throttled is not None
    assert throttled.retry_after_modelled == pytest.approx(0.05)
    assert model.retry_after_header(throttled) == 1  # whole seconds, at least 1
    assert resource_unit_limit(10) == 3500 and resource_unit_limit(100) == 5000 and resource_unit_limit(501) == 8000


def test_throttling_over_https_with_headers(sandbox: Running):
    creds = sandbox.app("throttled", app_roles=("User.RevokeSessions.All",))
    model = sandbox.sandbox.throttle

    def shrink() -> None:
        model.app_write_capacity = 10
        model.app_write_rate = 0.01
        model._buckets.pop(f"write/{creds.client_id}", None)

    sandbox.sandbox.call(shrink)
    try:
        users = sandbox.sandbox.tenant.users
        requests = [
            {
                "id": str(i),
                "method": "POST",
                "url": f"/users/{users[100 + i].id}/revokeSignInSessions",
                **WRITE_ITEM,
            }
            for i in range(12)
        ]
        items = sorted(batch(sandbox, creds, requests).json()["responses"], key=lambda r: int(r["id"]))
    finally:

        def restore() -> None:
            model.app_write_capacity, model.app_write_rate = 3000, 20

        sandbox.sandbox.call(restore)
    statuses = [r["status"] for r in items]
    assert statuses == [200] * 10 + [429] * 2
    assert float(items[9]["headers"]["x-ms-throttle-limit-percentage"]) >= 0.8
    assert int(items[10]["headers"]["Retry-After"]) >= 1
    assert (
        items[10]["headers"]["x-ms-throttle-scope"]
        == f"Tenant_Application/Write/{creds.client_id}/{sandbox.info['tenantId']}"
    )
    assert items[10]["headers"]["x-ms-throttle-information"] == "WriteLimitExceeded"
