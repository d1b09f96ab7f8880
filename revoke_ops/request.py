"""What a run is asked to do: the request, its input digest, and the rules for resuming one.

A resumed run is the request its journal recorded (plus exclusions added on resume), never a
request rewritten in place.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from revoke_ops.engine import EngineOptions
from revoke_ops.errors import InputError
from revoke_ops.journal import JournalState
from revoke_ops.targets import TargetFile, parse_target

__all__ = ["RevokeRequest", "check_sources", "exclusion_values", "input_digest", "resumed_request"]


@dataclass
class RevokeRequest:
    """Everything one run needs (the CLI's options, as data)."""

    users: list[str] = field(default_factory=list)
    files: list[str] = field(default_factory=list)  # paths, or "-" for stdin
    group: str | None = None
    all_users: bool = False
    filter: str | None = None
    exclude: list[str] = field(default_factory=list)
    exclude_files: list[str] = field(default_factory=list)
    include_external: bool = False
    dry_run: bool = False
    reason: str = ""
    journal: Path | None = None
    resume: Path | None = None
    engine: EngineOptions = field(default_factory=EngineOptions)
    timeout: float = 30.0
    #: --skip-inactive-days: users without sign-in activity for more than N days are not revoked
    skip_inactive_days: int | None = None
    #: Graph's limit for reads of signInActivity (a time-scaled sandbox needs a higher one)
    activity_reads_per_minute: float = 10.0
    #: Python API only: False keeps Graph's listing order even when activity is readable (comparisons)
    order_by_activity: bool = True

    def spec(self) -> dict[str, Any]:
        spec = self._spec()
        if self.skip_inactive_days is not None:  # only when given: older journals keep their digest
            spec["skipInactiveDays"] = self.skip_inactive_days
        return spec

    def _spec(self) -> dict[str, Any]:
        return {
            "users": self.users,
            "files": [str(Path(f).resolve()) if f != "-" else "-" for f in self.files],
            "group": self.group,
            "allUsers": self.all_users,
            "filter": self.filter,
            "exclude": self.exclude,
            # "-" (stdin) stays "-": it is not a file a resume could read again
            "excludeFiles": [str(Path(f).resolve()) if f != "-" else "-" for f in self.exclude_files],
            "includeExternal": self.include_external,
        }

    @classmethod
    def from_spec(cls, spec: dict[str, Any], **overrides: Any) -> RevokeRequest:
        return cls(
            users=list(spec.get("users", [])),
            files=list(spec.get("files", [])),
            group=spec.get("group"),
            all_users=bool(spec.get("allUsers")),
            filter=spec.get("filter"),
            exclude=list(spec.get("exclude", [])),
            exclude_files=list(spec.get("excludeFiles", [])),
            include_external=bool(spec.get("includeExternal")),
            skip_inactive_days=spec.get("skipInactiveDays"),
            **overrides,
        )


def input_digest(request: RevokeRequest) -> str:
    h = hashlib.sha256(json.dumps(request.spec(), sort_keys=True).encode())
    for name in [*request.files, *request.exclude_files]:
        if name != "-" and Path(name).is_file():
            with open(name, "rb") as handle:
                for block in iter(lambda: handle.read(1 << 20), b""):
                    h.update(block)
    return h.hexdigest()


def exclusion_values(request: RevokeRequest) -> list[str]:
    """Every exclusion as given (``--exclude`` values and ``--exclude-file`` lines), validated.

    :raises InputError: naming each invalid line.
    """
    values = list(request.exclude)
    errors = []
    for name in request.exclude_files:
        handle = TargetFile.open(name, "--exclude-file")
        try:
            before = len(values)
            for item in handle.targets():
                if isinstance(item, InputError):
                    errors.append(str(item))
                else:
                    values.append(item.key)
        finally:
            handle.cleanup()
        if len(values) == before and not errors:
            raise InputError(
                f"--exclude-file {name} names nobody (empty, or only comments/a header): an exclusion file "
                "given is meant to protect someone, so the run is refused; nothing was changed"
            )
    if errors:
        raise InputError("invalid exclusion line(s); nothing was changed:\n" + "\n".join(f"  {e}" for e in errors[:20]))
    for value in request.exclude:
        parse_target(value, "--exclude")
    return values


#: How to carry on after a run that read its targets from stdin (such a run cannot be resumed).
STDIN_RERUN = (
    "Save the list to a file and start a new run with --from-file FILE (users already revoked are revoked "
    "again, which is harmless)"
)
#: The same when the exclusions came from stdin.
STDIN_EXCLUSIONS_RERUN = (
    "save them to a file and start a new run with --exclude-file FILE (users already revoked are revoked "
    "again, which is harmless)"
)


def stdin_input(request: RevokeRequest) -> str | None:
    """Which of a run's inputs came from standard input ("targets" or "exclusions"): such a run is
    never resumed (see :func:`resumed_request`), so nothing may tell the operator to resume it."""
    if "-" in request.files:
        return "targets"
    if "-" in request.exclude_files:
        return "exclusions"
    return None


def how_to_continue(journal: Path | str | None, command: str = "revoke", *, stdin: str | None = None) -> str:
    """The command that carries on a stopped run: its ``--resume``, or (an input from stdin) a new run.

    :param stdin: which input came from standard input (:func:`stdin_input`), if any.
    """
    if stdin:
        rerun = STDIN_RERUN if stdin == "targets" else STDIN_EXCLUSIONS_RERUN
        if command == "contain" and journal is not None:
            # The new run reads the accounts this one disabled as already disabled, so its own undo
            # leaves them alone: this run's journal must be undone too.
            rerun += (
                f". To undo later, undo both runs: `revoke-ops contain --undo --journal {journal}` re-enables the "
                "accounts this run disabled, which the new run will find already disabled"
            )
        return f"its {stdin} came from standard input, which a resume cannot read again: {rerun}"
    if journal is None:
        return "run the same command again"
    return f"run `revoke-ops {command} --resume {journal}`"


def resumed_request(request: RevokeRequest, state: JournalState) -> tuple[RevokeRequest, list[str]]:
    """The request a journal recorded, with the resume's own settings and any added exclusions.

    Target, filter, external and skip options given with ``--resume`` must equal the journal's (else
    the resume is refused, naming the option), and so must the command (``contain`` or ``revoke``)
    and ``--journal``; exclusions may be added (never removed: the journal's always apply), not from
    stdin (a later resume could not read them again). Returns the request to run and the exclusions added.

    :raises InputError: the journal is for another run's inputs, or an option differs.
    """
    spec = state.header.get("spec") or {}
    given = request.spec()
    journal_command, command = spec.get("command", "revoke"), given.get("command", "revoke")
    if journal_command != command:
        raise InputError(
            f"--resume {request.resume} is the journal of a `{journal_command}` run: continue it with "
            f"`revoke-ops {journal_command} --resume {request.resume}`, not `{command}`"
        )
    if request.journal is not None and Path(request.journal).resolve() != Path(request.resume or "").resolve():
        raise InputError(
            f"--journal {request.journal} differs from --resume {request.resume}: a resumed run continues the "
            "journal it resumes; give --resume alone"
        )
    if "-" in request.exclude_files:
        raise InputError(
            "--exclude-file - with --resume: exclusions added on resume are recorded so that later resumes keep "
            "them, and standard input cannot be read again; save them to a file and give --exclude-file FILE"
        )
    original = type(request).from_spec(
        spec,
        reason=request.reason or state.header.get("reason", ""),
        journal=request.resume,
        resume=request.resume,
        engine=request.engine,
        timeout=request.timeout,
        dry_run=request.dry_run,
        activity_reads_per_minute=request.activity_reads_per_minute,
    )
    differs = []
    for key, option in (
        ("users", "--user"),
        ("files", "--from-file"),
        ("group", "--group"),
        ("allUsers", "--all-users"),
        ("filter", "--filter"),
        ("includeExternal", "--include-external"),
        ("skipInactiveDays", "--skip-inactive-days"),
    ):
        value = given.get(key)
        if value and value != spec.get(key):
            differs.append(f"{option} (journal: {spec.get(key)!r}, given: {value!r})")
    if differs:
        raise InputError(
            f"--resume {request.resume} continues the run its journal records; these options differ from it: "
            + "; ".join(differs)
            + ". Give --resume alone (exclusions may be added), or start a new run"
        )
    stdin = stdin_input(original)  # the same rule decides what a stopped run tells the operator
    if stdin == "targets":
        raise InputError(
            f"--resume {request.resume}: that run read its targets from standard input, which cannot be read "
            "again the same way (a resume fed another list would revoke the wrong users and leave the first "
            f"list's rest unrevoked); nothing was changed. {STDIN_RERUN}"
        )
    if stdin == "exclusions":
        raise InputError(
            f"--resume {request.resume}: that run read its exclusions from standard input, which cannot be read "
            f"again, and an exclusion is never dropped; {STDIN_EXCLUSIONS_RERUN}"
        )
    if input_digest(original) != state.header.get("inputDigest"):
        raise InputError(
            f"the inputs of {request.resume} changed since the run started (files or options differ): "
            "resume needs the same inputs; start a new run instead"
        )
    # Exclusions added by earlier resumes (recorded in their headers) keep applying: never lost.
    earlier_files = [e for e in state.added_exclusions if e.startswith("file:")]
    original.exclude += [e for e in state.added_exclusions if not e.startswith("file:")]
    original.exclude_files += [e.removeprefix("file:") for e in earlier_files]
    added = [e for e in request.exclude if e not in original.exclude]
    added_files = [f for f in given["excludeFiles"] if f not in original.exclude_files]
    original.exclude = [*original.exclude, *added]
    original.exclude_files = [*original.exclude_files, *added_files]
    return original, [*added, *(f"file:{f}" for f in added_files)]


def check_sources(request: RevokeRequest) -> None:
    """Targets come one way per run.

    :raises InputError: none, several, ``--filter`` without ``--all-users``, or ``--skip-inactive-days``
        where it cannot apply.
    """
    sources = sum([bool(request.users or request.files), bool(request.group), request.all_users])
    if sources == 0:
        raise InputError("no targets: give --user, --from-file, --group or --all-users")
    if sources > 1:
        raise InputError("give targets one way per run: --user/--from-file, or --group, or --all-users")
    if "-" in request.files and "-" in request.exclude_files:
        raise InputError(
            "--from-file - and --exclude-file - cannot both read standard input: give one of them as a file"
        )
    if request.filter and not request.all_users:
        raise InputError("--filter goes with --all-users")
    days = request.skip_inactive_days
    if days is not None:
        if request.filter:
            raise InputError(
                "--skip-inactive-days does not go with --filter (it needs the tenant's sign-in activity, and Graph "
                "cannot combine a filter on sign-in activity with other properties)"
            )
        if days < 1:
            raise InputError(f"--skip-inactive-days must be a whole number of days, 1 or more (got {days})")
