"""The command line as an operator meets it: options, output formats, the terminal, pipes, progress.

Parser tests call :func:`revoke_ops.cli.main` in-process (they fail before any I/O); everything that
talks to a tenant runs the installed `revoke-ops` against the sandbox, in a pty where a terminal matters.
"""

from __future__ import annotations

import io
import json
import logging
import os
import pty
import select
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from revoke_ops.cli import main
from revoke_ops.engine import Summary
from revoke_ops.output import LIST_LIMIT, Progress, writer
from tests.revoke_ops.conftest import DOMAIN, Ops

G1 = "11111111-1111-1111-1111-111111111111"
G2 = "22222222-2222-2222-2222-222222222222"


def _main(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize(
    ("argv", "named"),
    [
        (["revoke", "--group", G1, "--group", G2], "--group given twice"),
        (["revoke", "--all-users", "--filter", "a eq 'b'", "--filter", "c eq 'd'"], "--filter given twice"),
        (["revoke", "--user", "a@b.com", "--journal", "a", "--journal", "b"], "--journal given twice"),
        (["revoke", "--user", "a@b.com", "-o", "json", "--output", "table"], "--output given twice"),
    ],
)
def test_a_single_value_option_given_twice_is_a_usage_error_naming_it(capsys: Any, argv: list[str], named: str):
    code, _out, err = _main(capsys, *argv)
    assert code == 2 and named in err and "it takes one value" in err


def test_abbreviations_are_off_and_short_flags_and_defaults_are_there(capsys: Any):
    code, _out, err = _main(capsys, "revoke", "--all", "--yes")
    assert code == 2 and "unrecognized arguments: --all" in err
    with pytest.raises(SystemExit):
        main(["revoke", "--help"])
    help_text = " ".join(capsys.readouterr().out.split())
    assert "-y, --yes" in help_text and "-o {table,json,jsonl}, --output {table,json,jsonl}" in help_text
    assert "(default: 20.0)" in help_text and "(default: table)" in help_text
    with pytest.raises(SystemExit):
        main(["verify", "--help"])
    assert "the journal of the run to verify" in " ".join(capsys.readouterr().out.split())


def test_a_group_name_is_refused_saying_it_takes_an_object_id(capsys: Any):
    code, out, err = _main(capsys, "revoke", "--group", "Sales Team", "--output", "json")
    assert code == 2
    assert "takes the group's object id (a GUID), not a name like 'Sales Team'" in err
    assert json.loads(out)["error"]["exitCode"] == 2


def test_json_output_answers_errors_with_an_error_object_on_stdout(capsys: Any, tmp_path: Path):
    code, out, err = _main(
        capsys, "revoke", "--user", "a@b.com", "--credentials", str(tmp_path / "none.json"), "-o", "json"
    )
    assert code == 2 and "cannot read the credentials bundle" in err
    error = json.loads(out)["error"]
    assert error["exitCode"] == 2 and error["code"] == "InputError" and "credentials bundle" in error["message"]
    code, out, _err = _main(capsys, "verify", "--journal", str(tmp_path / "j"), "-o", "jsonl")
    assert code == 2 and json.loads(out)["type"] == "error"


def test_long_listings_are_cut_in_the_table_and_complete_in_json():
    rows = [{"outcome": "not_found", "id": f"id{n}", "target": f"id{n}", "reason": "no such user"} for n in range(70)]
    table, full = io.StringIO(), io.StringIO()
    for out in (table, full):
        kind = "table" if out is table else "json"
        writer(kind, out).revoke_result(
            dry_run=False, summary=Summary(), journal="j.jsonl", warnings=[], not_revoked=rows
        )
    assert f"... and {70 - LIST_LIMIT} more (all of them in the journal and --output json)" in table.getvalue()
    assert "id69" not in table.getvalue()
    assert len(json.loads(full.getvalue())["notRevoked"]) == 70


def test_verbose_progress_logs_a_line_every_10_seconds_when_stderr_is_not_a_terminal(caplog: Any):
    now = [0.0]
    progress = Progress(100, bar=False, log_lines=True, clock=lambda: now[0])
    summary = Summary()
    with caplog.at_level(logging.INFO, logger="revoke_ops"):
        for second in range(1, 26):
            now[0] = float(second)
            summary.counts[next(iter(summary.counts))] += 1
            progress(summary)
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("progress:")]
    assert lines == [
        "progress: 10 of 100 users after 10 s; revoked=10",
        "progress: 20 of 100 users after 20 s; revoked=20",
    ]


def test_the_progress_bars_first_frames_show_no_rate():
    # Issue 11 #24: the first frame showed a rate from a handful of users over milliseconds.
    now, err = [0.0], io.StringIO()
    progress = Progress(100, bar=True, log_lines=False, clock=lambda: now[0], err=err)
    summary = Summary()
    summary.counts[next(iter(summary.counts))] += 20
    now[0] = 0.3
    progress(summary)
    assert err.getvalue().startswith("\r20/100 users ") and "/s" not in err.getvalue()
    now[0] = 2.0
    progress(summary)
    assert "20/100 users 10.0/s" in err.getvalue()


# -- end to end ------------------------------------------------------------------------------------
def _members(ops: Ops, n: int, start: int) -> list[Any]:
    return [u for u in ops.run.sandbox.tenant.users[start : start + 60] if u.user_type == "Member"][:n]


def test_who_was_not_revoked_is_listed_and_a_lone_guest_says_why(ops: Ops, tmp_path: Path):
    guest = f"gail_fabrikam.com#EXT#@{DOMAIN}"
    result = ops.cli("revoke", "--user", guest, "--journal", str(tmp_path / "g.jsonl"))
    assert result.returncode == 0, result.stderr
    assert "skipped_external" in result.stdout and guest.lower() in result.stdout
    assert "their sessions live in their home tenant" in result.stdout
    assert "nothing was revoked: 1 external user(s) skipped" in result.stderr
    people = _members(ops, 3, 550)
    args = ["revoke", *(a for u in people for a in ("--user", u.id)), "--user", guest]
    args += ["--exclude", people[0].user_principal_name, "-o", "json"]
    body = json.loads(ops.cli(*args, "--journal", str(tmp_path / "j.jsonl")).stdout)
    assert sorted((r["outcome"], r["id"]) for r in body["notRevoked"]) == sorted(
        [("excluded", people[0].id), ("skipped_external", ops.run.sandbox.tenant.user(guest).id)]
    )
    dry = json.loads(ops.cli(*args, "--dry-run").stdout)
    assert sorted(r["outcome"] for r in dry["notRevoked"]) == ["excluded", "skipped_external"]


def test_a_dry_run_streams_json_lines(ops: Ops):
    people = _members(ops, 4, 380)
    result = ops.cli("revoke", *(a for u in people for a in ("--user", u.id)), "--dry-run", "-o", "jsonl")
    assert result.returncode == 0, result.stderr
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert [line["type"] for line in lines] == ["wouldRevoke"] * 4 + ["summary"]
    assert {line["id"] for line in lines[:4]} == {u.id for u in people}
    assert lines[-1]["wouldRevoke"] == 4 and lines[-1]["dryRun"] is True


def test_a_reader_that_goes_away_early_ends_the_command_quietly(ops: Ops, tmp_path: Path):
    users = [u for u in ops.run.sandbox.tenant.users if u.user_type == "Member"][:400]
    targets = tmp_path / "t.txt"
    targets.write_text("".join(f"{u.id}\n" for u in users))
    exe = Path(sys.executable).parent / "revoke-ops"
    env = {**os.environ, "SSL_CERT_FILE": ops.run.ca, "REQUESTS_CA_BUNDLE": ops.run.ca}
    command = [str(exe), "revoke", "--credentials", str(ops.bundle), "--from-file", str(targets), "--dry-run"]
    process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert process.stdout is not None and process.stderr is not None
    process.stdout.readline()  # `| head -1`
    process.stdout.close()
    err = process.stderr.read().decode()
    process.wait(timeout=120)
    assert "BrokenPipe" not in err and "unexpected" not in err and "Traceback" not in err, err
    assert process.returncode in (0, 141)


def _pty_run(ops: Ops, argv: list[str], stdin_text: str, answer: bytes) -> tuple[int, str]:
    """Run revoke-ops with targets on stdin (a pipe) and a controlling terminal (a pty) for the question."""
    exe = str(Path(sys.executable).parent / "revoke-ops")
    env = {**os.environ, "SSL_CERT_FILE": ops.run.ca, "REQUESTS_CA_BUNDLE": ops.run.ca}
    read_end, write_end = os.pipe()
    pid, master = pty.fork()
    if pid == 0:  # the child: stdin is the pipe, the pty is its terminal (/dev/tty)
        os.dup2(read_end, 0)
        os.execve(exe, [exe, *argv, "--credentials", str(ops.bundle)], env)
    os.close(read_end)
    os.write(write_end, stdin_text.encode())
    os.close(write_end)
    seen = b""
    deadline = time.monotonic() + 120
    answered = False
    while time.monotonic() < deadline:
        ready, _, _ = select.select([master], [], [], 0.5)
        if ready:
            try:
                chunk = os.read(master, 4096)
            except OSError:
                break
            if not chunk:
                break
            seen += chunk
        if not answered and b"[y/N]" in seen:
            os.write(master, answer)
            answered = True
    _, status = os.waitpid(pid, 0)
    os.close(master)
    return os.waitstatus_to_exitcode(status), seen.decode(errors="replace")


@pytest.mark.parametrize("answer", [b"y\n", b"\x03"], ids=["yes", "ctrl-c"])
def test_the_question_with_targets_on_stdin_is_asked_on_the_terminal(ops: Ops, tmp_path: Path, answer: bytes):
    people = _members(ops, 6, 580 if answer == b"y\n" else 520)
    before = len(ops.run.revocations())
    journal = tmp_path / "j.jsonl"
    argv = ["revoke", "--from-file", "-", "--journal", str(journal)]
    code, seen = _pty_run(ops, argv, "".join(f"{u.id}\n" for u in people), answer)
    assert "6 listed target(s)" in seen
    if answer == b"y\n":
        assert code == 0, seen
        assert sorted(ops.revoked_ids(before)) == sorted(u.id for u in people)
    else:  # Ctrl-C at the question stops at once, and nothing was started
        assert code == 130, seen
        assert "interrupted; nothing was started (no journal was written): nothing was changed" in seen
        assert not journal.exists() and ops.revoked_ids(before) == []


def test_the_question_counts_the_runs_exclusions_and_privileged_targets(ops: Ops, tmp_path: Path):
    # Issue 11 #9, where the operator reads it: one --exclude said "2 excluded" (its id and its UPN), and
    # "privileged first" was the tenant's count of role holders, not the targets'. An admin named twice
    # (by id and by UPN) is one privileged target.
    people = _members(ops, 5, 300)
    security, helpdesk = ops.user("admin.security"), ops.user("admin.helpdesk")
    lines = [u.id for u in people] + [security.id, security.user_principal_name.upper(), helpdesk.user_principal_name]
    before = len(ops.run.revocations())
    argv = ["revoke", "--from-file", "-", "--exclude", people[0].user_principal_name, "--journal", str(tmp_path / "j")]
    code, seen = _pty_run(ops, argv, "".join(f"{line}\n" for line in lines), b"n\n")
    assert code == 2, seen
    assert "(1 excluded, 2 privileged first)" in seen, seen
    assert "stopped at the confirmation: nothing was changed" in seen
    assert ops.revoked_ids(before) == []


def test_main_runs_in_a_worker_thread(ops: Ops, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]):
    """A SOAR integration may call ``revoke_ops.cli.main`` from a thread pool: signal handlers can only
    be installed in the main thread, and main() raised ValueError there instead of giving an exit code."""
    import threading

    from revoke_ops.bundle import ALLOW_CUSTOM_CLOUD_ENV
    from revoke_ops.cli import main

    monkeypatch.setenv(ALLOW_CUSTOM_CLOUD_ENV, "1")
    codes: list[object] = []

    def call() -> None:
        try:
            codes.append(main(["bundle", "check", str(ops.bundle), "--output", "json"]))
        except BaseException as err:  # noqa: BLE001  # what the caller's thread would see
            codes.append(err)

    worker = threading.Thread(target=call)
    worker.start()
    worker.join(60)
    assert codes == [0], codes
    assert json.loads(capsys.readouterr().out)
