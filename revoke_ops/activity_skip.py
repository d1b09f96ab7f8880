"""``--skip-inactive-days``: which users a run does not revoke (docs/activity-ordering.md).

A user read with their sign-in activity (a whole-tenant run) is skipped by its date; a group's or
file's target found in none of the tenant's activity windows up to N days is skipped as having no
sign-in within N days (its date was not read). Privileged users and the signed-in operator never
are. A run that skips cannot go on blind when Graph stops serving sign-in activity: it stops.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from revoke_ops.activity import ActivityOrder, format_time, inactive_for, last_activity
from revoke_ops.outcomes import Outcome
from revoke_ops.records import Item, Send, Settled

__all__ = ["skip_unseen", "skipped", "stopped_skipping"]


def stopped_skipping(reason: str) -> str:
    """Why a run skipping inactive users stopped: Graph stopped serving sign-in activity mid-run."""
    return (
        f"--skip-inactive-days: Graph stopped serving sign-in activity mid-run ({reason}); nothing more is "
        "revoked or skipped. Fix the cause and resume, or start a new run without the option"
    )


def skipped(order: ActivityOrder, item: Item, user: dict[str, Any] | None = None) -> Item:
    """``item`` as ``--skip-inactive-days`` decides it: a user to send who is inactive for more than N
    days becomes ``skipped_inactive`` (privileged users and the signed-in operator never do).

    ``user`` read with its signInActivity: decided on its date. None: a group's or file's target
    found in no activity window within N days, so with no sign-in activity within N days (its date
    was not read).
    """
    days = order.skip_inactive_days
    if days is None or not isinstance(item, Send) or item.privileged or item.last:
        return item
    if user is not None:
        last = last_activity(user)
        if not inactive_for(last, order.now, days):
            return item
        seen = f"last sign-in activity {format_time(last)}" if last else "no sign-in activity recorded"
        why = f"{seen}: inactive for more than {days} days"
    else:
        why = (
            f"no sign-in activity within {days} days: found in none of the tenant's sign-in activity windows "
            f"up to {days} days (its last sign-in date was not read)"
        )
    return Settled(item.id, item.upn, item.target, Outcome.SKIPPED_INACTIVE, f"{why} (--skip-inactive-days {days})")


async def skip_unseen(order: ActivityOrder | None, items: AsyncIterator[Item]) -> AsyncIterator[Item]:
    """A group's or file's rest (targets not found in an activity window), skipped as inactive when the
    run skips (``skipped`` without a user); as they are otherwise."""
    async for item in items:
        yield skipped(order, item) if order is not None else item
