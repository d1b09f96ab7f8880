"""The append-only JSONL audit journal, and reading it back for ``--resume`` and ``verify``.

Lines: one ``header`` (tool version, tenant, client id, operator, reason, a digest of the inputs,
the run's target specification), ``attempt`` lines fsynced *before* each batch is sent, ``outcome``
lines (with the ``client-request-id`` sent) fsynced once per batch, and an ``end`` line. The file is
created 0600 (UPNs are personal data) and never holds a secret.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from revoke_ops.errors import InputError
from revoke_ops.outcomes import Outcome
from revoke_ops.targets import key_hash

__all__ = ["FINAL_DONE", "Journal", "JournalState", "default_journal_path", "read_journal"]

#: Outcomes that a resumed run does not touch again.
FINAL_DONE = frozenset({Outcome.REVOKED, Outcome.EXCLUDED, Outcome.SKIPPED_EXTERNAL, Outcome.NOT_FOUND})


def now_iso() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def default_journal_path(tenant_id: str) -> Path:
    """``$XDG_STATE_HOME/revoke-ops/journals/<UTC time>-<tenant>.jsonl`` (~/.local/state by default)."""
    base = Path(os.environ.get("XDG_STATE_HOME") or Path.home() / ".local" / "state")
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")
    return base / "revoke-ops" / "journals" / f"{stamp}-{tenant_id}.jsonl"


class Journal:
    """Appends records; ``sync()`` makes everything written so far durable."""

    def __init__(self, path: Path, *, append: bool = False) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        flags = os.O_WRONLY | os.O_CREAT | os.O_APPEND | (0 if append else os.O_EXCL)
        try:
            fd = os.open(path, flags, 0o600)
        except FileExistsError:
            raise InputError(f"the journal {path} already exists: choose another --journal, or --resume it") from None
        except OSError as err:
            raise InputError(f"cannot write the journal {path}: {err.strerror}") from err
        os.fchmod(fd, 0o600)
        self._file = os.fdopen(fd, "a", encoding="utf-8")

    def write(self, record: dict[str, Any]) -> None:
        self._file.write(json.dumps(record, separators=(",", ":"), ensure_ascii=False) + "\n")

    def sync(self) -> None:
        self._file.flush()
        os.fsync(self._file.fileno())

    def close(self) -> None:
        if not self._file.closed:
            self.sync()
            self._file.close()

    def header(self, **fields: Any) -> None:
        self.write({"type": "header", "at": now_iso(), **fields})
        self.sync()

    def attempt(self, batch: int, users: list[dict[str, str]], client_request_id: str | None = None) -> None:
        self.write(
            {"type": "attempt", "at": now_iso(), "batch": batch, "users": users, "clientRequestId": client_request_id}
        )
        self.sync()

    def outcome(self, **fields: Any) -> None:
        self.write({"type": "outcome", "at": now_iso(), **fields})


@dataclass
class JournalState:
    """What a journal says: its header, and per user the last outcome."""

    header: dict[str, Any]
    outcomes: dict[str, dict[str, Any]] = field(default_factory=dict)  # user id -> last outcome record
    attempted: set[int] = field(default_factory=set)
    ended: bool = False
    added_exclusions: list[str] = field(default_factory=list)  # by later resumes (values or file paths)

    def done_hashes(self) -> set[int]:
        done = set()
        for record in self.outcomes.values():
            if record["outcome"] in FINAL_DONE:
                done.add(key_hash(record["id"]))
                if record.get("upn"):
                    done.add(key_hash(record["upn"].lower()))
                if record.get("target"):
                    done.add(key_hash(record["target"].lower()))
        return done


def _records(path: Path) -> Iterator[dict[str, Any]]:
    try:
        handle = path.open("r", encoding="utf-8")
    except OSError as err:
        raise InputError(f"cannot read the journal {path}: {err.strerror}") from err
    with handle:
        for number, line in enumerate(handle, start=1):
            if not line.endswith("\n"):
                return  # a torn last line from a crash: everything before it is intact
            try:
                yield json.loads(line)
            except json.JSONDecodeError:
                raise InputError(f"{path}:{number}: not a journal line (invalid JSON)") from None


def read_journal(path: Path) -> JournalState:
    """Read a journal (tolerating a torn last line from a crash).

    :raises InputError: unreadable file, or not a revoke-ops journal.
    """
    records = _records(path)
    first = next(records, None)
    if not first or first.get("type") != "header":
        raise InputError(f"{path} is not a revoke-ops journal (no header line)")
    state = JournalState(header=first)
    for record in records:
        kind = record.get("type")
        if kind == "header":
            # A resume that added exclusions recorded them in its own header: they apply from then on.
            state.added_exclusions.extend(
                e for e in record.get("addedExclusions") or [] if e not in state.added_exclusions
            )
        elif kind == "outcome" and "id" in record:
            state.outcomes[record["id"]] = record
        elif kind == "attempt":
            for user in record.get("users", []):
                state.attempted.add(key_hash(user["id"]))
        elif kind == "end":
            state.ended = True
    return state
