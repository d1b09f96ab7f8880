"""Local target input: ``--user``, ``--from-file`` (one per line or CSV with a header), ``-`` (stdin).

One streaming pass validates everything before anything changes in the tenant; errors name the
file and line. A second pass streams the targets to the engine.
"""

from __future__ import annotations

import csv
import hashlib
import io
import os
import re
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from revoke_ops.errors import InputError

__all__ = ["Target", "TargetFile", "key_hash", "parse_target", "validate_files"]

GUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")
# Entra ID's userPrincipalName: the local part allows A-Z a-z 0-9 ' . - _ ! # ^ ~ (Microsoft's
# "prepare for directory synchronization" and password-policy pages), and Graph documents UPNs that
# begin with `$`; the domain is a verified domain name. At most 113 characters in all.
UPN = re.compile(r"^(?=.{3,113}$)[A-Za-z0-9'._!#^~$-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}$")
ID_COLUMNS = ("id", "objectid", "object id", "userid", "user id")
UPN_COLUMNS = ("userprincipalname", "upn", "user principal name", "mail", "email", "user")
MAX_ERRORS_SHOWN = 20


@dataclass(frozen=True, slots=True)
class Target:
    """A user as the operator named them: an object id or a userPrincipalName."""

    key: str  # lower-cased
    kind: str  # "id" | "upn"
    source: str  # where it came from, e.g. "targets.csv:12" or "--user"


def parse_target(text: str, source: str) -> Target:
    """Classify one value.

    :raises InputError: naming the source and what is allowed.
    """
    value = text.strip()
    if GUID.match(value):
        return Target(value.lower(), "id", source)
    if UPN.match(value):
        return Target(value.lower(), "upn", source)
    shown = value if len(value) <= 80 else value[:77] + "..."
    raise InputError(f"{source}: {shown!r} is neither a user object id (a GUID) nor a userPrincipalName (name@domain)")


def key_hash(key: str) -> int:
    """A 64-bit digest of a target key: dedup and resume sets hold these, not strings (memory)."""
    return int.from_bytes(hashlib.blake2b(key.encode(), digest_size=8).digest(), "little")


@dataclass
class TargetFile:
    """A target file (or stdin, spooled to a private temporary file for the second pass)."""

    path: Path
    label: str
    column: int | None = None  # CSV column holding the user, None for one-per-line
    count: int = 0
    duplicates: int = 0
    _spooled: bool = False

    @classmethod
    def open(cls, name: str) -> TargetFile:
        if name == "-":
            fd, spool = tempfile.mkstemp(prefix="revoke-ops-stdin-", suffix=".txt")
            os.chmod(spool, 0o600)
            with os.fdopen(fd, "w", encoding="utf-8") as out:
                for line in sys.stdin:
                    out.write(line)
            return cls(Path(spool), "<stdin>", _spooled=True)
        path = Path(name)
        if not path.is_file():
            raise InputError(f"--from-file {name}: no such file")
        return cls(path, name)

    def cleanup(self) -> None:
        if self._spooled:
            self.path.unlink(missing_ok=True)

    def _lines(self) -> Iterator[tuple[int, str]]:
        try:
            with self.path.open("r", encoding="utf-8-sig", newline="") as handle:
                yield from enumerate(handle, start=1)
        except UnicodeDecodeError as err:
            raise InputError(f"{self.label}: not UTF-8 text ({err.reason} at byte {err.start})") from None

    def _header(self) -> None:
        """Detect a CSV header on the first meaningful line and pick the user column."""
        for number, line in self._lines():
            text = line.strip()
            if not text or text.startswith("#"):
                continue
            if "," not in text and ";" not in text and "\t" not in text:
                self.column = None
                return
            dialect = csv.excel_tab if "\t" in text else csv.excel
            cells = [c.strip().lower() for c in next(csv.reader(io.StringIO(text), dialect))]
            for names in (ID_COLUMNS, UPN_COLUMNS):
                for i, cell in enumerate(cells):
                    if cell in names:
                        self.column = i
                        self._header_line = number
                        self._dialect = dialect
                        return
            raise InputError(
                f"{self.label}:{number}: a CSV file needs a header naming the user column "
                f"(one of: id, objectId, userPrincipalName, upn, mail); got {', '.join(cells)[:120]}"
            )
        self.column = None

    def targets(self) -> Iterator[Target | InputError]:
        """Yield every target, or an InputError for a bad line (the caller collects them)."""
        if not hasattr(self, "_checked"):
            self._header()
            self._checked = True
        header_line = getattr(self, "_header_line", 0)
        for number, line in self._lines():
            text = line.strip()
            if not text or text.startswith("#") or number == header_line:
                continue
            source = f"{self.label}:{number}"
            if self.column is not None:
                cells = next(csv.reader(io.StringIO(text), self._dialect))
                if self.column >= len(cells) or not cells[self.column].strip():
                    yield InputError(f"{source}: no value in the user column")
                    continue
                text = cells[self.column]
            try:
                yield parse_target(text, source)
            except InputError as err:
                yield err


def validate_files(files: list[TargetFile], users: list[str]) -> tuple[int, int]:
    """Phase 1: one streaming pass over every input; nothing has been sent yet.

    :returns: (unique targets, duplicates).
    :raises InputError: listing the first errors with file and line, and how many there were.
    """
    errors: list[str] = []
    total = 0
    seen: set[int] = set()
    duplicates = 0

    def take(item: Target | InputError) -> None:
        nonlocal total, duplicates
        if isinstance(item, InputError):
            errors.append(str(item))
            return
        digest = key_hash(item.key)
        if digest in seen:
            duplicates += 1
        else:
            seen.add(digest)
            total += 1

    for value in users:
        try:
            take(parse_target(value, "--user"))
        except InputError as err:
            take(err)
    for handle in files:
        for item in handle.targets():
            take(item)
    if errors:
        shown = "\n".join(f"  {e}" for e in errors[:MAX_ERRORS_SHOWN])
        more = f"\n  ... and {len(errors) - MAX_ERRORS_SHOWN} more" if len(errors) > MAX_ERRORS_SHOWN else ""
        raise InputError(f"{len(errors)} invalid target line(s); nothing was changed:\n{shown}{more}")
    return total, duplicates
