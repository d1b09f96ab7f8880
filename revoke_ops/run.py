"""A revocation run, phase by phase — the same code behind the CLI and the Python API.

1. one streaming pass validates all local input (errors name file and line; exit 2, nothing changed);
2. a token is acquired and checked; exclusions are resolved to object ids (one that cannot be
   resolved refuses the run) and privileged users identified;
3. confirmation with the count and an ETA at the write budget (the caller's ``confirm``);
4. privileged users first, then the rest streams through the engine; the journal records all.

The pre-flight checks phase 2 calls (permission, target forms, counts, operator) are in
:mod:`revoke_ops.preflight`.

Size (~520 lines, over the ~400 guideline): the phases with the data passed between them (``Prepared``,
``Confirmation``, ``RunResult``) and the after-run reports (stopped, short listing) stay together, so a
reader sees a whole run in one file; splitting them would put a phase apart from what it hands on.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from revoke_ops import __version__, preflight
from revoke_ops.activity import format_time
from revoke_ops.activity_plan import activity_order, skip_estimate
from revoke_ops.credentials import Identity, token_claims
from revoke_ops.engine import Engine, Item, Send, Settled, Summary
from revoke_ops.errors import InputError, RevokeOpsError
from revoke_ops.graph import GraphSession
from revoke_ops.journal import Journal, JournalState, default_journal_path, now_iso, read_journal
from revoke_ops.outcomes import NOT_REVOKED
from revoke_ops.request import (
    RevokeRequest,
    check_sources,
    exclusion_values,
    how_to_continue,
    input_digest,
    resumed_request,
    stdin_input,
)
from revoke_ops.resolve import Capabilities, Plan, Privileged, find_privileged, resolve_exclusions, stream
from revoke_ops.retry import READ
from revoke_ops.targets import TargetFile, validate_files

__all__ = [
    "Confirmation",
    "Prepared",
    "RevokeRequest",
    "RunResult",
    "execute",
    "outcome_exit_code",
    "prepare",
    "resumed_request",
    "revoke",
    "run_request",
]

log = logging.getLogger(__name__)
BULK_THRESHOLD = 5  # "more than a handful": confirmation is asked above this


@dataclass
class RunResult:
    summary: Summary
    journal: Path | None
    operator: str | None
    would_revoke: list[dict[str, Any]] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    #: why the run cannot be called complete although every user it saw was handled (a listing that
    #: ended far below Graph's count), else None
    incomplete: str | None = None

    @property
    def exit_code(self) -> int:
        return 1 if self.incomplete else outcome_exit_code(self.summary)


def outcome_exit_code(summary: Summary) -> int:
    """0 when every target ended revoked, excluded or skipped as asked; 1 otherwise."""
    bad = sum(summary.counts[o] for o in NOT_REVOKED)
    return 1 if bad else 0


_WORDS = {2: "two", 3: "three"}


@dataclass(frozen=True)
class Confirmation:
    """What the operator is asked to confirm, with what is known and what is only estimated."""

    tenant_id: str
    targets: int | None  # how many users the run covers, if known
    targets_basis: str  # "listed" (lines given, not yet looked up), "estimate" (Graph's $count), "unknown"
    eta_seconds: float | None  # at the write budget, for ``targets``
    excluded: int  # distinct break-glass users excluded
    privileged_first: int | None  # privileged users among the targets, when known before the run
    privileged_in_tenant: int  # directory role holders found in the tenant
    dry_run: bool
    operator: str | None
    resumed: bool
    added_exclusions: tuple[str, ...] = ()
    warnings: tuple[str, ...] = ()
    #: the order after privileged users: "activity" (recent sign-in activity first) or "listing"
    ordering: str = "listing"
    #: with --skip-inactive-days: the days, and Graph's estimate of how many users that skips (low, high)
    skip_inactive_days: int | None = None
    skip_estimate: tuple[int, int] | None = None
    #: what the run does to each user, as the question says it (a new run, a resumed one)
    action: str = "Revoke the sign-in sessions of"
    resumed_action: str = "Resume revoking the sign-in sessions of"
    #: writes each user takes from the write budget (the ETA counts them)
    writes_per_user: int = 1

    def skipping(self) -> str:
        """What --skip-inactive-days will skip, with what is only estimated."""
        if self.skip_inactive_days is None:
            return ""
        days = self.skip_inactive_days
        if self.skip_estimate is None:
            count = "an unknown number of"
        elif self.skip_estimate[0] == self.skip_estimate[1]:
            count = f"about {self.skip_estimate[0]}"
        else:
            count = f"between {self.skip_estimate[0]} and {self.skip_estimate[1]}"
        basis = "Graph's counts, eventually consistent" if self.skip_estimate else "unknown until the windows are read"
        return (
            f"; NOT revoking {count} user(s) without sign-in activity for more than {days} days "
            f"(--skip-inactive-days; {basis})"
        )

    def question(self) -> str:
        """The confirmation question, saying what is an estimate."""
        if self.targets is None:
            what = "an unknown number of users"
        elif self.targets_basis == "estimate":
            what = f"about {self.targets} user(s) (Graph's count, eventually consistent)"
        else:
            what = f"{self.targets} listed target(s)"
        per_user = f", {_WORDS.get(self.writes_per_user, str(self.writes_per_user))} writes per user"
        per_user = per_user if self.writes_per_user > 1 else ""
        timing = f", about {self.eta_seconds / 60:.1f} min at the write budget{per_user}" if self.eta_seconds else ""
        if self.privileged_first is not None:
            first = f"{self.privileged_first} privileged first"
        else:
            first = f"privileged first: those of the tenant's {self.privileged_in_tenant} role holders among them"
        action = self.resumed_action if self.resumed else self.action
        then = ", then the most recently active" if self.ordering == "activity" else ""
        return (
            f"{action} {what} in tenant {self.tenant_id}{timing} "
            f"({self.excluded} excluded, {first}{then}{self.skipping()})? [y/N] "
        )


@dataclass
class Prepared:
    """A run after phases 1 and 2: validated input, a checked token, resolved exclusions."""

    request: RevokeRequest
    identity: Identity
    session: GraphSession
    caps: Capabilities
    plan: Plan
    confirmation: Confirmation
    digest: str
    resumed: bool
    added_exclusions: list[str]
    resume_state: JournalState | None = None  # the journal as read: execute refuses it if it changed since

    @property
    def needs_confirmation(self) -> bool:
        req = self.request
        bulk = req.all_users or req.group is not None or (self.confirmation.targets or 0) > BULK_THRESHOLD
        return bulk and not req.dry_run


async def prepare(
    identity: Identity,
    session: GraphSession,
    request: RevokeRequest,
    files: list[TargetFile],
    *,
    resume_state: JournalState | None = None,
    added_exclusions: list[str] | None = None,
) -> Prepared:
    """Phases 1 and 2: validate local input, check the token, resolve exclusions and privileged users.

    Nothing in the tenant changes here.

    :raises InputError: invalid local input or an unresolvable exclusion.
    :raises AuthError: no token, or the token lacks what the run needs.
    :raises ServiceError: Graph kept failing on a read.
    """
    check_sources(request)
    warnings: list[str] = []
    local = bool(files or request.users)
    local_count, duplicates = validate_files(files, request.users) if local else (0, 0)
    if local and local_count == 0:
        raise InputError("the input holds no targets (empty, or only comments/a header): nothing to do")
    if duplicates:
        warnings.append(f"{duplicates} duplicate target(s) ignored")
    exclusions_given = exclusion_values(request)
    digest = input_digest(request)

    token = await identity.token()
    caps = Capabilities.from_claims(token_claims(token.token))
    preflight.check_revoke_permission(identity, caps)

    target_kinds = preflight.target_kinds(request, files, caps)
    exclusions = await resolve_exclusions(session, caps, exclusions_given, target_kinds)
    privileged = Privileged()
    if caps.read_roles:
        privileged = await find_privileged(session, caps, need_upns=local and "upn" in target_kinds)
        warnings.extend(privileged.notes)
    else:
        warnings.append(
            "privileged users (directory role holders) cannot be identified and revoked first without "
            "RoleManagement.Read.Directory (add it to the stack's readPermissions)"
        )
    if not caps.read_users and local:
        warnings.append(
            "without User.Read.All targets are sent as given: external users are recognised only by an #EXT# "
            "UPN, unknown users show up as not_found, and one user named both by id and by UPN cannot be "
            "recognised as one (add User.Read.All to the stack's readPermissions)"
        )
    operator, operator_id = await preflight.signed_in_operator(identity, session)

    if local:
        targets: int | None = local_count
        basis = "listed"
        privileged_first: int | None = preflight.count_privileged(request, files, privileged)
    else:
        targets = await preflight.remote_count(session, request)
        basis = "estimate" if targets is not None else "unknown"
        privileged_first = None
    activity, activity_note = await activity_order(session, caps.permissions, request, targets)
    if activity_note:
        warnings.append(activity_note)
    estimate = None
    if activity is not None and activity.skip_inactive_days is not None:
        if activity.skip_inactive_days < 90:
            warnings.append(
                f"--skip-inactive-days {activity.skip_inactive_days}: users inactive for fewer than 90 days may "
                "still hold refresh tokens (they expire after 90 days without use)"
            )
        if activity.reading:  # a group or file run: what it reads first; the count is unknown until then
            warnings.append(activity.reading)
        estimate = await skip_estimate(session, activity, targets) if request.all_users else None
    eta = None if targets is None else request.engine.seconds_for(targets)
    plan = Plan(
        files=files,
        users=request.users,
        group=request.group,
        all_users=request.all_users,
        filter=request.filter,
        include_external=request.include_external,
        exclusions=exclusions,
        privileged=privileged,
        operator_id=operator_id,
        done=frozenset(resume_state.done_hashes()) if resume_state else frozenset(),
        activity=activity,
    )
    confirmation = Confirmation(
        tenant_id=identity.tenant_id,
        targets=targets,
        targets_basis=basis,
        eta_seconds=eta,
        excluded=exclusions.users,
        privileged_first=privileged_first,
        privileged_in_tenant=len(privileged.ids),
        dry_run=request.dry_run,
        operator=operator,
        resumed=resume_state is not None,
        added_exclusions=tuple(added_exclusions or ()),
        warnings=tuple(warnings),
        ordering="activity" if activity is not None else "listing",
        skip_inactive_days=request.skip_inactive_days,
        skip_estimate=estimate,
    )
    return Prepared(
        request,
        identity,
        session,
        caps,
        plan,
        confirmation,
        digest,
        resume_state is not None,
        added_exclusions or [],
        resume_state,
    )


async def execute(
    prepared: Prepared,
    *,
    on_progress: Callable[[Summary], None] | None = None,
    engine_factory: Callable[..., Engine] | None = None,
    on_would_revoke: Callable[[dict[str, Any]], None] | None = None,
    on_settled: Callable[[dict[str, Any]], None] | None = None,
) -> RunResult:
    """Phase 4: privileged users first, then the rest through the engine; the journal records all."""
    request, identity = prepared.request, prepared.identity
    journal = None
    if not request.dry_run:
        path = request.journal or default_journal_path(identity.tenant_id)
        journal = Journal(path, append=prepared.resumed, expect=prepared.resume_state)
        journal.header(
            tool=f"revoke-ops {__version__}",
            tenant=identity.tenant_id,
            clientId=identity.client_id,
            credential=identity.kind,
            operator=prepared.confirmation.operator or preflight.local_user(),
            reason=request.reason,
            inputDigest=prepared.digest,
            spec=request.spec(),
            resumed=prepared.resumed,
            addedExclusions=prepared.added_exclusions,
            estimate=prepared.confirmation.targets,
            ordering=_ordering_record(prepared),
        )
    would: list[dict[str, Any]] = []

    def collect(item: Send) -> None:
        row = {"id": item.id, "userPrincipalName": item.upn, "target": item.target, "privileged": item.privileged}
        if on_would_revoke is not None:
            on_would_revoke(row)  # streamed: memory stays flat for a million targets
        else:
            would.append(row)

    options = dataclasses.replace(request.engine, dry_run=request.dry_run, delegated=identity.delegated)
    factory = engine_factory or Engine
    engine = factory(prepared.session, journal, options, on_outcome=on_progress, on_would_revoke=collect)
    stopped: str | None = None
    try:
        items = stream(prepared.plan, prepared.session, prepared.caps)
        failed: list[str] = []
        if not request.dry_run:
            items = _stop_when_reading_fails(items, failed)
        summary = await engine.run(_tap(items, on_settled) if on_settled else items)
        if failed and summary.stopped is None:
            summary.stopped = failed[0]  # after the engine sent what it was handed
        if prepared.plan.ordering_stopped and journal is not None:
            journal.write(
                {"type": "ordering", "at": now_iso(), "by": "listing", "reason": prepared.plan.ordering_stopped}
            )
    except (KeyboardInterrupt, asyncio.CancelledError):
        stopped = "interrupted"
        raise
    except BaseException as err:
        stopped = f"error: {type(err).__name__}"
        raise
    finally:
        if journal is not None:
            if not engine.summary.finished:  # stopped part-way: the duration so far, never negative
                engine.summary.finished = engine.clock.monotonic()
            stopped = stopped or engine.summary.stopped  # the engine gave up (tokens kept failing)
            journal.end(engine.summary.to_json(), completed=stopped is None, stopped_by=stopped)
            journal.close()
    warnings = list(prepared.confirmation.warnings)
    if prepared.plan.ordering_stopped:
        warnings.append(prepared.plan.ordering_stopped)
    command = str(prepared.request.spec().get("command", "revoke"))  # contain runs resume with contain
    how = how_to_continue(journal.path if journal else None, command, stdin=stdin_input(prepared.request))
    incomplete = _stopped(summary, how) or _short_listing(prepared, summary, how)
    if incomplete:
        warnings.append(incomplete)  # the CLI prints the warnings (once); API callers read them
    return RunResult(
        summary, journal.path if journal else None, prepared.confirmation.operator, would, warnings, incomplete
    )


async def _stop_when_reading_fails(items: AsyncIterator[Item], failed: list[str]) -> AsyncIterator[Item]:
    """Pass every item on. Reading the targets failing once users were handed to the engine ends the
    stream, not the run: the engine sends and journals the users it was handed, and the run then
    reports itself stopped (``failed``: exit 1, with the ``--resume`` to run) — an error's exit code
    would say that nothing was changed. Before any user was handed over, the error ends the run."""
    handed = False
    try:
        async for item in items:
            handed = handed or isinstance(item, Send)
            yield item
    except RevokeOpsError as err:
        if not handed:
            raise
        # said once, by the run's stopped message
        failed.append(f"reading the targets failed part-way (the users read before it were sent): {err}")


async def _tap(items: AsyncIterator[Item], on_settled: Callable[[dict[str, Any]], None]) -> AsyncIterator[Item]:
    """Pass every item on; show each one settled without sending to ``on_settled`` first."""
    async for item in items:
        if isinstance(item, Settled):
            on_settled(
                {"id": item.id, "upn": item.upn, "target": item.target, "outcome": str(item.outcome),
                 "code": item.code, "reason": item.reason}
            )  # fmt: skip
        yield item


#: A group or whole-tenant listing that ends below this share of Graph's $count is reported as
#: incomplete ($count is eventually consistent, so a few percent either way is normal).
SHORT_LISTING = 0.9


def _stopped(summary: Summary, how: str) -> str | None:
    """The engine stopped sending (tokens kept failing, a read failed part-way): say so, with ``how``
    to carry on (:func:`revoke_ops.request.how_to_continue`)."""
    if not summary.stopped:
        return None
    return f"the run stopped before every user was sent: {summary.stopped}. When it is fixed, {how}"


def _short_listing(prepared: Prepared, summary: Summary, how: str) -> str | None:
    """A remote listing that ended far below Graph's count: reported, never called success."""
    expected = prepared.confirmation.targets
    if prepared.confirmation.targets_basis != "estimate" or expected is None or prepared.resumed:
        return None
    seen = summary.total
    if seen >= expected * SHORT_LISTING:
        return None
    return (
        f"the listing ended after {seen} user(s) where Microsoft Graph counted about {expected}: it may have "
        f"been cut short: {how}, and compare"
    )


async def revoke(
    identity: Identity,
    request: RevokeRequest,
    *,
    confirm: Callable[[Confirmation], bool] | None = None,
    on_progress: Callable[[Summary], None] | None = None,
    engine_factory: Callable[..., Engine] | None = None,
    on_would_revoke: Callable[[dict[str, Any]], None] | None = None,
    on_settled: Callable[[dict[str, Any]], None] | None = None,
) -> RunResult:
    """Run one revocation (or a dry run) and return its result: :func:`prepare`, confirm, :func:`execute`.

    :param confirm: called after phase 2 with a :class:`Confirmation`; return False to stop before
        anything changes. None means "do not ask" (like ``--yes``). Asked only for bulk runs.
    :param on_would_revoke: in a dry run, receives each user that would be revoked as it is
        resolved (else they are collected in ``RunResult.would_revoke``).
    :param on_settled: receives each user settled without sending (excluded, skipped external,
        not found), as it is resolved.
    :raises InputError: invalid local input or an unresolvable exclusion (nothing changed).
    :raises AuthError: no token, or the token lacks what the run needs (nothing changed).
    :raises ServiceError: Graph kept failing before anything was sent (nothing changed).
    """
    return await run_request(
        identity,
        request,
        confirm=confirm,
        on_progress=on_progress,
        engine_factory=engine_factory,
        on_would_revoke=on_would_revoke,
        on_settled=on_settled,
    )


#: Called after phase 2 (nothing changed yet) to check and adjust a run and name its engine.
Setup = Callable[[Prepared], Awaitable[Callable[..., Engine]]]


async def run_request(
    identity: Identity,
    request: RevokeRequest,
    *,
    confirm: Callable[[Confirmation], bool] | None = None,
    on_progress: Callable[[Summary], None] | None = None,
    engine_factory: Callable[..., Engine] | None = None,
    on_would_revoke: Callable[[dict[str, Any]], None] | None = None,
    on_settled: Callable[[dict[str, Any]], None] | None = None,
    setup: Setup | None = None,
) -> RunResult:
    """The phases of :func:`revoke`, shared by the commands built on it (``contain``).

    :param setup: after :func:`prepare`, before the confirmation: may refuse the run (raise), adjust
        ``prepared.confirmation`` and returns the engine factory to use.
    """
    resume_state = None
    added: list[str] = []
    if request.resume is not None:
        resume_state = read_journal(request.resume)
        if resume_state.torn_line is not None:
            log.warning(
                "%s:%d: the journal's last line is incomplete (a crash while writing it): it is ignored, and the "
                "resumed run continues on a new line",
                request.resume,
                resume_state.torn_line,
            )
        if resume_state.header.get("tenant") != identity.tenant_id:
            raise InputError(
                f"the journal {request.resume} is for tenant {resume_state.header.get('tenant')}, "
                f"these credentials for {identity.tenant_id}"
            )
        request, added = resumed_request(request, resume_state)
    check_sources(request)
    files: list[TargetFile] = []
    try:
        for name in request.files:
            files.append(TargetFile.open(name))  # a stdin spool is removed on any later error too
        read_policy = dataclasses.replace(READ, max_retry_wait=request.engine.max_retry_wait)
        async with GraphSession(identity, timeout=request.timeout, read_policy=read_policy) as session:
            prepared = await prepare(
                identity, session, request, files, resume_state=resume_state, added_exclusions=added
            )
            if setup is not None:
                engine_factory = await setup(prepared)
            if confirm is not None and prepared.needs_confirmation and not confirm(prepared.confirmation):
                raise InputError("stopped at the confirmation: nothing was changed")
            return await execute(
                prepared,
                on_progress=on_progress,
                engine_factory=engine_factory,
                on_would_revoke=on_would_revoke,
                on_settled=on_settled,
            )
    finally:
        for handle in files:
            handle.cleanup()


def _ordering_record(prepared: Prepared) -> dict[str, Any]:
    """How the run orders users after privileged ones, for the journal."""
    order = prepared.plan.activity
    if order is None:
        return {"by": "listing"}
    return {"by": "activity", "now": format_time(order.now), "skipInactiveDays": order.skip_inactive_days}
