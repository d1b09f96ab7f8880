"""Local target input: ``--user``, ``--from-file`` (one per line or CSV with a header), ``-`` (stdin).

One streaming pass validates everything before anything changes in the tenant; errors name the
file and line. A second pass streams the targets to the engine.
"""

from __future__ import annotations

import contextlib
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
from typing import Any

from revoke_ops.errors import InputError

__all__ = ["Target", "TargetFile", "key_hash", "parse_target", "validate_files"]

GUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")
# Entra ID's userPrincipalName: the local part allows A-Z a-z 0-9 ' . - _ ! # ^ ~ (Microsoft's
# "prepare for directory synchronization" and password-policy pages), and Graph documents UPNs that
# begin with `$`; the domain is a verified domain name. At most 113 characters in all.
UPN = re.compile(r"^(?=.{3,113}$)[A-Za-z0-9'._!#^~$-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}$")
ID_COLUMNS = ("id", "objectid", "object id", "userid", "user id")
UPN_COLUMNS = ("userprincipalname", "upn", "user principal name", "user")
#: Columns that hold addresses, not sign-in names: a mail address often differs from the UPN.
MAIL_COLUMNS = ("mail", "email", "e-mail", "mail address", "email address", "primary smtp address")
#: Entra's bulk-operation templates: "version:v1.0" on the first row, then headings such as
#: "User name [userPrincipalName] Required" (Microsoft Entra "Bulk delete users", CSV template structure).
TEMPLATE_VERSION = re.compile(r"^version:v\d", re.IGNORECASE)
TEMPLATE_HEADING = re.compile(r"\[([A-Za-z]+)\]")
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


def _column_name(cell: str) -> str:
    """A heading as a plain lower-case name: "User name [userPrincipalName] Required" -> "userprincipalname"."""
    template = TEMPLATE_HEADING.search(cell)
    return (template.group(1) if template else cell).strip().lower()


def _spool_stdin() -> int:
    """Copy stdin into a private file that is unlinked before anything is written to it.

    The file is created 0600 (``O_EXCL | O_NOFOLLOW``) in a fresh 0700 directory, then the file
    and the directory are removed at once: the open descriptor is all that remains, so the list
    is never left on disk, not after an error, Ctrl-C or SIGKILL either (issue 10 #14).
    """
    directory = tempfile.mkdtemp(prefix="revoke-ops-stdin-")  # 0700
    spool = os.path.join(directory, "targets.txt")
    try:
        fd = os.open(spool, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(spool)
        os.rmdir(directory)
    try:
        with os.fdopen(os.dup(fd), "w", encoding="utf-8") as out:
            for line in sys.stdin:
                out.write(line)
    except BaseException:
        os.close(fd)
        raise
    return fd


class _SpoolReader(io.RawIOBase):
    """Reads the spool's descriptor with its own offset (``pread``): passes never share a position,
    and closing the reader leaves the descriptor open for the next pass."""

    def __init__(self, fd: int) -> None:
        super().__init__()
        self._fd = fd
        self._offset = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        data = os.pread(self._fd, len(buffer), self._offset)
        buffer[: len(data)] = data
        self._offset += len(data)
        return len(data)


@dataclass
class TargetFile:
    """A target file (or stdin, spooled to a private file for the later passes).

    One user per line, or CSV with a header naming the user column (read as CSV over the whole
    file, so quoted fields may hold newlines), including Entra's bulk-operation template
    (``version:v1.0``, then ``User name [userPrincipalName] Required``).
    """

    path: Path
    label: str
    column: int | None = None  # CSV column holding the user, None for one-per-line
    count: int = 0
    duplicates: int = 0
    _spool_fd: int | None = None  # the stdin spool: an unlinked file, read with its own offset per pass
    _header_row: int = 0  # the CSV header's row number (csv records, 1-based), 0 for none
    _delimiter: str = ","
    _checked: bool = False

    @classmethod
    def open(cls, name: str, option: str = "--from-file") -> TargetFile:
        """Open ``name`` (``-`` spools stdin into an unlinked private file, closed by :meth:`cleanup`).

        :raises InputError: no such file, a directory, or unreadable.
        """
        if name == "-":
            return cls(Path("-"), "<stdin>", _spool_fd=_spool_stdin())
        path = Path(name)
        if path.is_dir():
            raise InputError(f"{option} {name}: is a directory; give the file that lists the users")
        if not path.is_file():
            raise InputError(f"{option} {name}: no such file")
        return cls(path, name)

    def cleanup(self) -> None:
        """Close the stdin spool (its file was never left on disk); nothing for a named file."""
        if self._spool_fd is not None:
            os.close(self._spool_fd)
            self._spool_fd = None

    def _text(self) -> Iterator[str]:
        try:
            with self._open() as handle:
                yield from handle
        except UnicodeDecodeError as err:
            raise InputError(f"{self.label}: not UTF-8 text ({err.reason} at byte {err.start})") from None

    def _open(self) -> io.TextIOBase:
        if self._spool_fd is None:
            return self.path.open("r", encoding="utf-8-sig", newline="")
        reader = io.BufferedReader(_SpoolReader(self._spool_fd))
        return io.TextIOWrapper(reader, encoding="utf-8-sig", newline="")

    def _csv(self) -> Iterator[tuple[int, int, list[str]]]:
        """(row number, first line of the row, cells) for every CSV record of the whole file."""
        reader = csv.reader(self._text(), delimiter=self._delimiter, skipinitialspace=False)
        line = 1
        try:
            for row_number, cells in enumerate(reader, start=1):
                yield row_number, line, cells
                line = reader.line_num + 1
        except csv.Error as err:
            raise InputError(f"{self.label}:{reader.line_num}: not valid CSV ({err})") from None

    def _detect(self) -> None:
        """Decide one-per-line or CSV from the first meaningful line, and find the user column."""
        self._checked = True
        first = next((t.strip() for t in self._text() if t.strip() and not t.strip().startswith("#")), None)
        if first is None:
            return
        template = bool(TEMPLATE_VERSION.match(first))
        heading = _column_name(first) in (*ID_COLUMNS, *UPN_COLUMNS, *MAIL_COLUMNS)  # a one-column CSV
        if not template and not heading and not any(sep in first for sep in ",;\t"):
            return  # one user per line
        self._delimiter = "\t" if "\t" in first else ";" if ";" in first and "," not in first else ","
        for row, line, cells in self._csv():
            text = ",".join(cells).strip()
            if not text or text.startswith("#") or (template and TEMPLATE_VERSION.match(cells[0].strip())):
                continue
            names = [_column_name(c) for c in cells]
            for wanted in (ID_COLUMNS, UPN_COLUMNS):
                for i, name in enumerate(names):
                    if name in wanted:
                        self.column, self._header_row = i, row
                        return
            mail = [c.strip() for c, n in zip(cells, names, strict=True) if n in MAIL_COLUMNS]
            if mail:
                raise InputError(
                    f"{self.label}:{line}: the only user column is {mail[0]!r}: a mail address is not a "
                    "userPrincipalName (they often differ, and mail is not unique), so it is not matched. Export "
                    "the userPrincipalName or id column instead"
                )
            raise InputError(
                f"{self.label}:{line}: a CSV file needs a header naming the user column "
                f"(one of: id, objectId, userPrincipalName, upn, or Entra's template heading "
                f"'User name [userPrincipalName] Required'); got {', '.join(cells)[:120]}"
            )
        raise InputError(f"{self.label}: a CSV file (or Entra template) without a header naming the user column")

    def targets(self) -> Iterator[Target | InputError]:
        """Yield every target, or an InputError for a bad line (the caller collects them)."""
        if not self._checked:
            self._detect()
        if self.column is None:
            for number, line in enumerate(self._text(), start=1):
                text = line.strip()
                if text and not text.startswith("#"):
                    yield _parse_or_error(text, f"{self.label}:{number}")
            return
        for row, first_line, cells in self._csv():
            if row <= self._header_row or not "".join(cells).strip() or cells[0].strip().startswith("#"):
                continue
            source = f"{self.label}:{first_line}"
            if self.column >= len(cells) or not cells[self.column].strip():
                yield InputError(f"{source}: no value in the user column")
                continue
            yield _parse_or_error(cells[self.column], source)


def _parse_or_error(text: str, source: str) -> Target | InputError:
    try:
        return parse_target(text, source)
    except InputError as err:
        return err


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
