"""The append-only JSONL audit journal, and reading it back for ``--resume`` and ``verify``.

Lines: one ``header`` (tool version, tenant, client id, operator, reason, a digest of the inputs,
the run's target specification), ``attempt`` lines fsynced *before* each batch is sent, ``outcome``
lines (with the ``client-request-id`` sent) fsynced once per batch, and an ``end`` line saying
whether the run completed. A resume appends its own header and lines to the same file.

Integrity: every line carries ``hash`` = SHA-256(previous line's hash + the line's canonical JSON
without ``hash``), the header included, so an edited, removed or reordered line breaks the chain
and ``--resume``/``verify`` refuse the journal. That detects accidents and naive edits, not a
determined local attacker (who could recompute the chain, or simply run the tool).

Files: created 0600 in a directory created 0700 (UPNs are personal data), owned by the user;
reopened without following symlinks; an exclusive ``flock`` is held while a run writes, so a second
writer is refused. A torn last line (a crash mid-write) is reported and skipped, and the next
resume starts on a new line and records which line was torn. Never holds a secret.
"""

from __future__ import annotations

import errno
import fcntl
import hashlib
import json
import os
import stat
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, BinaryIO

from revoke_ops.errors import InputError
from revoke_ops.facts import rfc3339
from revoke_ops.outcomes import Outcome
from revoke_ops.redact import redact
from revoke_ops.targets import key_hash

__all__ = ["FINAL_DONE", "FORMAT", "Journal", "JournalState", "default_journal_path", "not_revoked", "read_journal"]

#: Outcomes that a resumed run does not touch again.
FINAL_DONE = frozenset({Outcome.REVOKED, Outcome.EXCLUDED, Outcome.SKIPPED_EXTERNAL, Outcome.NOT_FOUND})
#: The journal format written by this version (1: no integrity chain).
FORMAT = 2


def now_iso() -> str:
    return rfc3339(datetime.now(UTC), fraction=True)


def default_journal_path(tenant_id: str) -> Path:
    """``$XDG_STATE_HOME/revoke-ops/journals/<UTC time>-<tenant>.jsonl`` (~/.local/state by default)."""
    base = Path(os.environ.get("XDG_STATE_HOME") or Path.home() / ".local" / "state")
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")
    return base / "revoke-ops" / "journals" / f"{stamp}-{tenant_id}.jsonl"


def _canonical(record: dict[str, Any]) -> bytes:
    return json.dumps(record, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def chain(previous: str, record: dict[str, Any]) -> str:
    """The hash a line carries: SHA-256 over the previous line's hash and this line without ``hash``."""
    return hashlib.sha256(previous.encode() + b"\n" + _canonical(record)).hexdigest()


# -- files and directories ------------------------------------------------------------------------
def _check_directory(directory: Path) -> None:
    """Refuse a directory others may write to (unless sticky, as /tmp: others cannot replace our file)."""
    try:
        info = os.stat(directory)
    except OSError as err:
        raise InputError(f"cannot use the journal directory {directory}: {err.strerror}") from err
    if info.st_mode & 0o022 and not info.st_mode & stat.S_ISVTX:
        raise InputError(
            f"the journal directory {directory} is writable by others (mode {stat.S_IMODE(info.st_mode):04o}): "
            f"anyone could replace the journal. `chmod go-w {directory}`, or choose another --journal"
        )


def _make_private_dirs(directory: Path) -> None:
    """Create missing directories 0700 explicitly (mkdir's mode is filtered by the umask only)."""
    missing = []
    current = directory
    while not current.exists():
        missing.append(current)
        if current.parent == current:
            break
        current = current.parent
    for path in reversed(missing):
        try:
            os.mkdir(path, 0o700)
        except FileExistsError:
            continue
        except OSError as err:
            raise InputError(f"cannot create the journal directory {path}: {err.strerror}") from err
        os.chmod(path, 0o700)
    _check_directory(directory)


def _open_existing(path: Path, flags: int) -> int:
    """Open an existing journal without following symlinks; it must be ours and 0600."""
    _check_directory(path.parent)
    try:
        fd = os.open(path, flags | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError as err:
        if err.errno == errno.ELOOP:
            raise InputError(f"the journal {path} is a symbolic link: give the journal file itself") from None
        raise InputError(f"cannot read the journal {path}: {err.strerror}") from err
    info = os.fstat(fd)
    problem = None
    if not stat.S_ISREG(info.st_mode):
        problem = "is not a regular file"
    elif info.st_uid != os.getuid():
        problem = f"is owned by another user (uid {info.st_uid})"
    elif info.st_mode & 0o077:
        problem = f"is readable or writable by others (mode {stat.S_IMODE(info.st_mode):04o}; journals are 0600)"
    if problem:
        os.close(fd)
        raise InputError(f"the journal {path} {problem}: refusing to trust it")
    return fd


def _lock(fd: int, path: Path, *, exclusive: bool) -> None:
    try:
        fcntl.flock(fd, (fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH) | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise InputError(
            f"the journal {path} is in use by another revoke-ops run (it holds the journal's lock): "
            "wait for it to end, or stop it first"
        ) from None


class Journal:
    """Appends chained records; ``sync()`` makes everything written so far durable.

    :param append: continue an existing journal (a resume); else create a new one (never overwrite).
    :param expect: the state read before (a resume): refuse when the journal changed since.
    :raises InputError: the file exists (new journal), is locked by another run, is not ours/0600,
        is a symlink, its directory is writable by others, or its chain is broken.
    """

    def __init__(self, path: Path, *, append: bool = False, expect: JournalState | None = None) -> None:
        self.path = path
        self.torn_line: int | None = None
        self._hash = ""
        if append:
            fd = _open_existing(path, os.O_RDWR | os.O_APPEND)
            _lock(fd, path, exclusive=True)
            try:
                with os.fdopen(os.dup(fd), "rb") as reader:
                    reader.seek(0)
                    state = _scan(reader, path)
            except BaseException:
                os.close(fd)
                raise
            if expect is not None and (state.lines, state.tip) != (expect.lines, expect.tip):
                os.close(fd)
                raise InputError(
                    f"the journal {path} changed since it was read (another run wrote to it meanwhile): resume it again"
                )
            self._hash = state.tip
            if state.torn_line is not None or state.needs_newline:
                self.torn_line = state.torn_line
                os.write(fd, b"\n")  # the appended part starts on a new line; the fragment stays as evidence
        else:
            _make_private_dirs(path.parent)
            try:
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
            except FileExistsError:
                raise InputError(
                    f"the journal {path} already exists: choose another --journal, or --resume it"
                ) from None
            except OSError as err:
                raise InputError(f"cannot write the journal {path}: {err.strerror}") from err
            os.fchmod(fd, 0o600)
            _lock(fd, path, exclusive=True)
        self._file = os.fdopen(fd, "a", encoding="utf-8")

    def write(self, record: dict[str, Any]) -> None:
        if isinstance(record.get("reason"), str):  # error text a misbehaving peer may have filled with secrets
            record = {**record, "reason": redact(record["reason"])}
        record.pop("hash", None)
        self._hash = chain(self._hash, record)
        line = json.dumps({**record, "hash": self._hash}, separators=(",", ":"), ensure_ascii=False)
        self._file.write(line + "\n")

    def sync(self) -> None:
        self._file.flush()
        os.fsync(self._file.fileno())

    def close(self) -> None:
        if not self._file.closed:
            self.sync()
            self._file.close()  # releases the lock

    def header(self, **fields: Any) -> None:
        record: dict[str, Any] = {"type": "header", "at": now_iso(), "journalFormat": FORMAT, **fields}
        if self.torn_line is not None:
            record["tornLine"] = self.torn_line
        self.write(record)
        self.sync()

    def attempt(self, batch: int, users: list[dict[str, str]], client_request_id: str | None = None) -> None:
        self.write(
            {"type": "attempt", "at": now_iso(), "batch": batch, "users": users, "clientRequestId": client_request_id}
        )
        self.sync()

    def outcome(self, **fields: Any) -> None:
        self.write({"type": "outcome", "at": now_iso(), **fields})

    def end(self, summary: dict[str, Any], *, completed: bool, stopped_by: str | None = None) -> None:
        """The last line: ``completed`` false for a run that was interrupted or failed part-way."""
        record: dict[str, Any] = {"type": "end", "at": now_iso(), "completed": completed, "summary": summary}
        if stopped_by:
            record["stoppedBy"] = stopped_by
        self.write(record)
        self.sync()


@dataclass
class JournalState:
    """What a journal says: its headers, per user the last outcome, and whether the last run completed."""

    header: dict[str, Any]
    outcomes: dict[str, dict[str, Any]] = field(default_factory=dict)  # user id (else UPN) -> last outcome
    disables: dict[str, dict[str, Any]] = field(default_factory=dict)  # contain: user id -> its disable line
    #: contain: users (id, else UPN) a disable was sent for while they were enabled (before-state true)
    attempted_enabled: set[str] = field(default_factory=set)
    #: True/False from the last run's ``end`` line; None when the last run wrote none (killed)
    completed: bool | None = None
    added_exclusions: list[str] = field(default_factory=list)  # by later resumes (values or file paths)
    headers: list[dict[str, Any]] = field(default_factory=list)
    torn_line: int | None = None  # a torn last line (a crash mid-write), skipped
    needs_newline: bool = False  # the last line is intact but its newline was never written
    lines: int = 0  # intact lines
    tip: str = ""  # the last intact line's hash

    def done_hashes(self) -> set[int]:
        done = set()
        for record in self.outcomes.values():
            if record["outcome"] in FINAL_DONE:
                if record.get("id"):
                    done.add(key_hash(record["id"]))
                if record.get("upn"):
                    done.add(key_hash(record["upn"].lower()))
                if record.get("target"):
                    done.add(key_hash(record["target"].lower()))
        return done


def _parse(raw: bytes) -> dict[str, Any] | None:
    try:
        record = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError):
        return None
    return record if isinstance(record, dict) else None


def _scan(reader: BinaryIO, path: Path) -> JournalState:
    """Read and check a whole journal: the chain, a torn last line, fragments acknowledged by a resume."""
    state: JournalState | None = None
    fragment: int | None = None  # an earlier torn line, to be acknowledged by the next header
    previous = ""
    for number, raw in enumerate(reader, start=1):
        where = f"{path}:{number}"
        record = _parse(raw)
        if not raw.endswith(b"\n"):
            # The last line, cut short by a crash (or complete but for its newline).
            intact = record is not None and record.get("hash") == chain(
                previous, {k: v for k, v in record.items() if k != "hash"}
            )
            if state is None:
                raise InputError(f"{path} is not a revoke-ops journal (its only line is incomplete)")
            if not intact:
                state.torn_line = number
                break
            state.needs_newline = True
        if record is None:
            if state is not None and fragment is None:
                fragment = number  # a torn line from an earlier crash: the next header must say so
                continue
            raise InputError(f"{where}: not a journal line (not a JSON object): the journal is damaged")
        given = record.pop("hash", None)
        if state is None:
            if record.get("type") != "header":
                raise InputError(f"{path} is not a revoke-ops journal (no header line)")
            if given is None:
                raise InputError(
                    f"the journal {path} was written by {record.get('tool') or 'an older revoke-ops'} without an "
                    f"integrity chain (journal format 1; this version reads format {FORMAT}): it cannot be "
                    "resumed or verified by this version. Keep it as the record; start a new run (or use that version)"
                )
        if fragment is not None and (record.get("type") != "header" or record.get("tornLine") != fragment):
            raise InputError(f"{path}:{fragment}: not a journal line (not a JSON object): the journal is damaged")
        if given != chain(previous, record):
            raise InputError(
                f"{where}: the journal's integrity chain is broken (this line was edited, or lines before it "
                "were removed, inserted or reordered): refusing to resume or verify from it"
            )
        previous = given
        fragment = None
        if state is None:
            state = JournalState(header=record)
        state.lines += 1
        state.tip = given
        _apply(state, record)
    if state is None:
        raise InputError(f"{path} is not a revoke-ops journal (it is empty)")
    if fragment is not None:
        raise InputError(f"{path}:{fragment}: not a journal line (not a JSON object): the journal is damaged")
    return state


def _apply(state: JournalState, record: dict[str, Any]) -> None:
    kind = record.get("type")
    if kind == "header":
        state.headers.append(record)
        state.completed = None  # a resumed run: its own end line decides
        # A resume that added exclusions recorded them in its own header: they apply from then on.
        state.added_exclusions.extend(e for e in record.get("addedExclusions") or [] if e not in state.added_exclusions)
    elif kind == "outcome":
        # keyed by object id; a target sent as given (no User.Read.All) by its UPN or text
        key = record.get("id") or record.get("upn") or record.get("target")
        if key:
            state.outcomes[str(key)] = record
    elif kind == "disable" and "id" in record:
        # contain: the line that disabled the account, else the first (its before-state counts for --undo)
        seen = state.disables.get(record["id"])
        if seen is None or (record.get("step") == "disabled" and seen.get("step") != "disabled"):
            state.disables[record["id"]] = record
    elif kind == "disable-attempt" and isinstance(record.get("before"), dict):
        state.attempted_enabled.update(str(ref) for ref, was in record["before"].items() if was is True)
    elif kind == "end":
        state.completed = bool(record.get("completed", True))


def read_journal(path: Path, *, writer_may_be_running: bool = False) -> JournalState:
    """Read and check a journal (tolerating and reporting a torn last line from a crash).

    :param writer_may_be_running: skip the lock check (a reader that does not care).
    :raises InputError: unreadable, not ours/0600, a symlink, in use by a running revoke-ops, written
        without the integrity chain, or the chain is broken.
    """
    fd = _open_existing(path, os.O_RDONLY)
    if not writer_may_be_running:
        _lock(fd, path, exclusive=False)
    with os.fdopen(fd, "rb") as reader:
        return _scan(reader, path)


def not_revoked(path: Path) -> list[dict[str, Any]]:
    """Every user whose last outcome in the journal is not ``revoked``, in journal order (for listings).

    :raises InputError: as :func:`read_journal`.
    """
    state = read_journal(path, writer_may_be_running=True)
    return [r for r in state.outcomes.values() if r.get("outcome") != Outcome.REVOKED]
