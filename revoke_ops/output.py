"""What the ``revoke-ops`` command writes: results on stdout as a table, JSON or JSON Lines; progress on stderr.

One writer per ``--output`` format with the same methods, so command handlers stay thin:

- ``table``: for people; long lists are cut at :data:`LIST_LIMIT` rows with "... and N more";
- ``json``: one document per command (a dry run's ``wouldRevoke`` array is written as it streams);
- ``jsonl``: JSON Lines, one object per line with a ``type`` — a dry run streams one line per user
  that would be revoked, then the users not revoked, then the summary.

Every list of users not revoked (not found, forbidden, failed, excluded, skipped external users) is
complete in JSON and JSON Lines. On an error, JSON writers put ``{"error": {...}}`` on stdout (closing
a document already started) so automation always reads one parseable answer.
"""

from __future__ import annotations

import asyncio
import json
import logging
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import IO, Any

from revoke_ops.engine import Summary

__all__ = ["LIST_LIMIT", "Progress", "RevokeReport", "Writer", "table", "writer"]

log = logging.getLogger("revoke_ops")

#: Rows of a table listing before "... and N more" (JSON lists everything).
LIST_LIMIT = 50


def table(rows: list[list[str]], header: list[str]) -> str:
    """Columns padded to their widest cell; trailing spaces trimmed."""
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    lines = ["  ".join(str(c).ljust(w) for c, w in zip(header, widths, strict=True)).rstrip()]
    lines += ["  ".join(str(c).ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows]
    return "\n".join(lines)


def _not_revoked_row(r: dict[str, Any]) -> list[str]:
    return [
        r["outcome"],
        r.get("id") or "",
        r.get("upn") or r.get("target") or "",
        r.get("code") or "",
        (r.get("reason") or "")[:100],
    ]


@dataclass(frozen=True)
class RevokeReport:
    """What a revoke (or contain) run reports, framed once for every format."""

    dry_run: bool
    summary: Summary
    journal: str | None
    warnings: list[str]
    not_revoked: list[Any]
    contain_text: str = ""  # contain's own table text
    contain_fields: dict[str, Any] = field(default_factory=dict)  # contain's JSON fields

    def document(self) -> dict[str, Any]:
        """The JSON answer: every list complete; JSON Lines writes the same keys, a list item per line."""
        return {
            "dryRun": self.dry_run,
            "summary": self.summary.to_json(),
            "journal": self.journal,
            "warnings": self.warnings,
            "notRevoked": list(self.not_revoked),
            **self.contain_fields,
        }


class Writer:
    """The table writer; :class:`JsonWriter` and :class:`JsonLinesWriter` override what differs."""

    def __init__(self, out: IO[str] | None = None) -> None:
        self.out = out or sys.stdout
        self.shown = 0  # users a dry run listed so far

    def _print(self, text: str = "") -> None:
        self.out.write(text + "\n")

    # -- revoke ---------------------------------------------------------------------------------
    def would_revoke(self, row: dict[str, Any]) -> None:
        if self.shown == 0:
            self._print(f"{'WOULD REVOKE (id)':<36}  userPrincipalName")
        mark = "  privileged" if row["privileged"] else ""
        self._print(f"{row['id'] or '':<36}  {row['userPrincipalName'] or row['target']}{mark}")
        self.shown += 1

    def revoke_result(
        self,
        *,
        dry_run: bool,
        summary: Summary,
        journal: str | None,
        warnings: list[str],
        not_revoked: list[Any],
        contain: tuple[str, dict[str, Any]] | None = None,  # contain: (its table text, its JSON fields)
    ) -> None:
        """Write a revoke (or contain) run's result: the users not revoked, the counts, the journal."""
        text, fields = contain if contain is not None else ("", {})
        self.revoke_report(RevokeReport(dry_run, summary, journal, warnings, not_revoked, text, fields))

    def revoke_report(self, report: RevokeReport) -> None:
        if report.dry_run and self.shown == 0:
            self._print("nothing would be revoked")
        not_revoked = report.not_revoked
        if not_revoked:
            rows = [_not_revoked_row(r) for r in not_revoked[:LIST_LIMIT]]
            self._print(table(rows, ["OUTCOME", "ID", "USER", "CODE", "REASON"]))
            if len(not_revoked) > LIST_LIMIT:
                more = len(not_revoked) - LIST_LIMIT
                where = "the journal and --output json" if report.journal else "--output json"
                self._print(f"... and {more} more (all of them in {where})")
        counts = [[str(k), str(v)] for k, v in report.summary.counts.items()]
        if report.dry_run:
            counts.insert(0, ["would revoke", str(report.summary.would_revoke)])
        self._print(table(counts, ["OUTCOME", "USERS"]))
        if report.contain_text:
            self._print(report.contain_text)
        if report.journal:
            self._print(f"journal: {report.journal}")

    # -- verify, doctor, messages ---------------------------------------------------------------
    def verify_result(self, result: Any) -> None:
        entries = [*result.not_verified, *result.not_found]
        rows = [
            [e["verdict"], e.get("id") or "", e.get("upn") or e.get("target") or "", e["journal"], e.get("reason", "")]
            for e in entries[:LIST_LIMIT]
        ]
        if rows:
            self._print(table(rows, ["VERDICT", "ID", "USER", "JOURNAL", "REASON"]))
            if len(entries) > LIST_LIMIT:
                self._print(f"... and {len(entries) - LIST_LIMIT} more (all of them in --output json)")
        self._print(
            f"verified: {len(result.verified)}; settled (journal said failed, but it happened): "
            f"{len(result.settled)}; not verified: {len(result.not_verified)}"
        )
        self._print(table([[str(k), str(v)] for k, v in result.verdicts().items()], ["VERDICT", "USERS"]))
        note = result.incomplete_note()
        if note:
            self._print(note)
        self._print("every target is accounted for" if result.accounted_for else "NOT every target is accounted for")

    def doctor_report(self, report: Any) -> None:
        self._print(table([[c.status.upper(), c.name, c.detail] for c in report.checks], ["STATUS", "CHECK", "DETAIL"]))

    def message(self, text: str, **fields: Any) -> None:
        """A one-line result (``me``, ``bundle check``); JSON writers emit ``fields`` with it."""
        self._print(text)

    def error(self, message: str, exit_code: int, code: str | None) -> None:
        """Tables say nothing on stdout: the error is on stderr."""


class JsonWriter(Writer):
    """One JSON document per command; a dry run's ``wouldRevoke`` array is streamed."""

    def would_revoke(self, row: dict[str, Any]) -> None:
        self.out.write(('{\n  "wouldRevoke": [\n    ' if self.shown == 0 else ",\n    ") + json.dumps(row))
        self.shown += 1

    def _document(self, body: dict[str, Any], *, streamed: bool) -> None:
        if not streamed:
            self._print(json.dumps(body, indent=2))
            return
        if self.shown == 0:
            self.out.write('{\n  "wouldRevoke": [')
        rest = json.dumps(body, indent=2)[1:]  # the remaining keys of the same object
        self.out.write("\n  ],\n" + rest.lstrip("\n") + "\n")
        self.shown = -1  # closed

    def revoke_report(self, report: RevokeReport) -> None:
        self._document(report.document(), streamed=report.dry_run)

    def verify_result(self, result: Any) -> None:
        self._print(json.dumps(result.to_json(), indent=2))

    def doctor_report(self, report: Any) -> None:
        self._print(json.dumps(report.to_json(), indent=2))

    def message(self, text: str, **fields: Any) -> None:
        self._print(json.dumps({"message": text, **fields}, indent=2))

    def error(self, message: str, exit_code: int, code: str | None) -> None:
        error = {"error": {"message": message, "code": code, "exitCode": exit_code}}
        if self.shown > 0:  # a streamed document is open: close it with the error
            self.out.write("\n  ],\n" + json.dumps(error, indent=2)[1:].lstrip("\n") + "\n")
            self.shown = -1
        else:
            self._print(json.dumps(error, indent=2))


class JsonLinesWriter(JsonWriter):
    """JSON Lines: one object per line, each with a ``type``; nothing is held back for a dry run."""

    def _line(self, kind: str, body: dict[str, Any]) -> None:
        self.out.write(json.dumps({"type": kind, **body}) + "\n")

    def would_revoke(self, row: dict[str, Any]) -> None:
        self._line("wouldRevoke", row)
        self.shown += 1

    def revoke_report(self, report: RevokeReport) -> None:
        document = report.document()
        for kind in ("notRevoked", "notContained"):  # the document's lists, one line per entry
            for row in document.pop(kind, []):
                self._line(kind, row)
        self._line("summary", {"dryRun": document.pop("dryRun"), **document.pop("summary"), **document})

    def verify_result(self, result: Any) -> None:
        body = result.to_json()
        for entry in [*body.pop("notVerified"), *body.pop("notFound")]:
            self._line("notAccounted", entry)
        self._line("summary", body)

    def doctor_report(self, report: Any) -> None:
        for check in report.to_json():
            self._line("check", check)

    def message(self, text: str, **fields: Any) -> None:
        self._line("message", {"message": text, **fields})

    def error(self, message: str, exit_code: int, code: str | None) -> None:
        self._line("error", {"message": message, "code": code, "exitCode": exit_code})


def writer(kind: str, out: IO[str] | None = None) -> Writer:
    """The writer for ``--output`` ``table``, ``json`` or ``jsonl``."""
    return {"table": Writer, "json": JsonWriter, "jsonl": JsonLinesWriter}[kind](out)


class Progress:
    """Progress on stderr: a one-line bar on a terminal; with ``-v`` and no terminal, a log line every
    ``interval`` seconds (CI and SOAR logs must not look hung)."""

    def __init__(
        self,
        total: int | None,
        *,
        bar: bool,
        log_lines: bool,
        interval: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
        err: IO[str] | None = None,
    ) -> None:
        self.total = total
        self.bar = bar
        self.log_lines = log_lines and not bar
        self.interval = interval
        self.clock = clock
        self.err = err or sys.stderr
        self.started = clock()
        self.shown = 0.0
        self.logged = self.started
        self.last: Summary | None = None  # the latest counts, for lines logged between outcomes

    def _counts(self, summary: Summary) -> tuple[int, str, str]:
        done = sum(summary.counts.values())
        left = summary.eta(self.total - done) if self.total else None  # from the pacer's budget
        eta = f" ETA {left:.0f}s" if left is not None else ""
        counts = " ".join(f"{k}={v}" for k, v in summary.counts.items() if v)
        return done, eta, counts

    def __call__(self, summary: Summary) -> None:
        now = self.clock()
        self.last = summary
        if self.log_lines and now - self.logged >= self.interval:
            self._log(now, summary)
        if not self.bar or now - self.shown < 0.2:
            return
        self.shown = now
        done, eta, counts = self._counts(summary)
        elapsed = now - self.started
        # The first frames have no meaningful rate yet.
        rate = f" {done / elapsed:.1f}/s" if elapsed >= 1.0 and done else ""
        of = f"/{self.total}" if self.total else ""
        self.err.write(f"\r{done}{of} users{rate}{eta} {counts}\x1b[K")
        self.err.flush()

    def _log(self, now: float, summary: Summary | None) -> None:
        self.logged = now
        of = f" of {self.total}" if self.total else ""
        if summary is None:
            log.info("progress: 0%s users after %.0f s; none sent yet", of, now - self.started)
            return
        done, eta, counts = self._counts(summary)
        log.info("progress: %d%s users after %.0f s%s; %s", done, of, now - self.started, eta, counts or "-")

    async def ticking(self) -> None:
        """Log a line every ``interval`` also while no outcome arrives (a paced or throttled run waits
        minutes between batches: without this its log stopped, and the run looked hung)."""
        if not self.log_lines:
            return
        while True:
            await asyncio.sleep(max(0.5, self.logged + self.interval - self.clock()))
            now = self.clock()
            if now - self.logged >= self.interval:
                self._log(now, self.last)

    def close(self) -> None:
        if self.bar:
            self.err.write("\n")
