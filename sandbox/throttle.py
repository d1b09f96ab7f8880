"""Microsoft Graph's identity-and-access throttling, modelled as token buckets, with time scaling.

Written independently of revoke_ops' pacing (they share no code), so that benchmarks measure the
client against a model of the service rather than against itself.

Published limits (identity and access): per app+tenant 3,000 writes per 150 s and resource units
per 10 s of 3,500 / 5,000 / 8,000 for tenants of <50 / 50-500 / >500 users; per tenant across all
apps 18,000 writes per 5 min. Microsoft describes them as token buckets: a full bucket allows a
burst, then the refill rate applies.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from enum import StrEnum


@dataclass
class Clock:
    """Sandbox time: ``scale`` compresses every modelled duration alike (0.1 = ten times faster).

    ``now()`` returns *modelled* seconds, so a bucket refilling at 20/s modelled refills at
    20/scale per real second.
    """

    scale: float = 1.0
    _origin: float = field(default_factory=time.monotonic)

    def now(self) -> float:
        return (time.monotonic() - self._origin) / self.scale

    def real(self, modelled_seconds: float) -> float:
        """Real seconds that ``modelled_seconds`` last."""
        return modelled_seconds * self.scale


@dataclass
class TokenBucket:
    """A bucket of ``capacity`` tokens refilled continuously at ``rate`` per modelled second."""

    name: str
    capacity: float
    rate: float
    tokens: float = -1.0
    updated: float = 0.0

    def __post_init__(self) -> None:
        if self.tokens < 0:
            self.tokens = self.capacity

    def _refill(self, now: float) -> None:
        if now > self.updated:
            self.tokens = min(self.capacity, self.tokens + (now - self.updated) * self.rate)
            self.updated = now

    def try_take(self, now: float, cost: float) -> float:
        """Take ``cost`` tokens; return 0 on success, else the modelled seconds to wait."""
        self._refill(now)
        if self.tokens >= cost:
            self.tokens -= cost
            return 0.0
        return (cost - self.tokens) / self.rate

    def used_fraction(self, now: float) -> float:
        self._refill(now)
        return 1.0 - self.tokens / self.capacity


def resource_unit_limit(tenant_users: int) -> int:
    """Resource units per 10 s for one app in one tenant, by tenant size."""
    if tenant_users < 50:
        return 3500
    if tenant_users <= 500:
        return 5000
    return 8000


class ThrottleKind(StrEnum):
    """Which limit refused a request; the value is Graph's ``x-ms-throttle-information``."""

    RESOURCE_UNITS = "ResourceUnitLimitExceeded"
    WRITES = "WriteLimitExceeded"
    INJECTED = "Injected"


@dataclass
class Throttled:
    retry_after_modelled: float
    scope: str  # Graph's x-ms-throttle-scope
    kind: ThrottleKind


@dataclass
class ThrottleModel:
    """All buckets of one tenant. ``enabled=False`` switches throttling off (scale runs)."""

    clock: Clock
    tenant_users: int
    enabled: bool = True
    app_write_capacity: float = 3000
    app_write_rate: float = 3000 / 150
    tenant_write_capacity: float = 18000
    tenant_write_rate: float = 18000 / 300
    _buckets: dict[str, TokenBucket] = field(default_factory=dict)
    throttled_count: int = 0

    def _bucket(self, key: str, capacity: float, rate: float) -> TokenBucket:
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = self._buckets[key] = TokenBucket(key, capacity, rate, updated=self.clock.now())
        return bucket

    def buckets_for(self, app_id: str, tenant_id: str, write: bool) -> list[tuple[TokenBucket, str, ThrottleKind]]:
        ru = resource_unit_limit(self.tenant_users)
        found = [
            (
                self._bucket(f"ru/{app_id}", ru, ru / 10),
                f"Tenant_Application/ReadWrite/{app_id}/{tenant_id}",
                ThrottleKind.RESOURCE_UNITS,
            )
        ]
        if write:
            found.append(
                (
                    self._bucket(f"write/{app_id}", self.app_write_capacity, self.app_write_rate),
                    f"Tenant_Application/Write/{app_id}/{tenant_id}",
                    ThrottleKind.WRITES,
                )
            )
            found.append(
                (
                    self._bucket("write/tenant", self.tenant_write_capacity, self.tenant_write_rate),
                    f"Tenant/Write/{tenant_id}",
                    ThrottleKind.WRITES,
                )
            )
        return found

    def admit(self, app_id: str, tenant_id: str, *, write: bool, cost: float) -> Throttled | None:
        """Charge one request; return why it is throttled, or None when admitted.

        A request is admitted only when every bucket it draws on has room; nothing is charged
        when one of them refuses.
        """
        if not self.enabled:
            return None
        now = self.clock.now()
        buckets = self.buckets_for(app_id, tenant_id, write)
        costs = [cost] + [1.0] * (len(buckets) - 1)
        waits = []
        for (bucket, scope, kind), c in zip(buckets, costs, strict=True):
            bucket._refill(now)
            if bucket.tokens < c:
                waits.append(((c - bucket.tokens) / bucket.rate, scope, kind))
        if waits:
            self.throttled_count += 1
            wait, scope, kind = max(waits)
            return Throttled(wait, scope, kind)
        for (bucket, _scope, _kind), c in zip(buckets, costs, strict=True):
            bucket.tokens -= c
        return None

    def limit_percentage(self, app_id: str, tenant_id: str, write: bool) -> float | None:
        """``x-ms-throttle-limit-percentage``: the fullest bucket's use, sent from 80 % on."""
        if not self.enabled:
            return None
        now = self.clock.now()
        used = max(b.used_fraction(now) for b, _, _ in self.buckets_for(app_id, tenant_id, write))
        return round(used, 2) if used >= 0.8 else None

    def retry_after_header(self, throttled: Throttled) -> int:
        """Retry-After in whole (scaled) seconds, rounded up, at least 1."""
        return max(1, math.ceil(self.clock.real(throttled.retry_after_modelled)))
