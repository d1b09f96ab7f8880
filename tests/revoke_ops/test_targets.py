"""Target and exclusion files: real CSV, Entra's bulk template, mail columns, stdin, directories, empty files.

Fast tests read files through :mod:`revoke_ops.targets`; end-to-end ones go through the real command.
"""

from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path

import pytest

from revoke_ops.errors import InputError
from revoke_ops.targets import Target, TargetFile, validate_files
from tests.revoke_ops.conftest import DOMAIN, Ops


def _read(path: Path) -> list[Target | str]:
    return [t if isinstance(t, Target) else str(t) for t in TargetFile.open(str(path)).targets()]


def test_quoted_fields_with_newlines_are_one_record_and_errors_name_the_record_line(tmp_path: Path):
    export = tmp_path / "export.csv"
    export.write_text(
        "displayName,userPrincipalName,streetAddress\n"
        f'Alice,alice@{DOMAIN},"1 Main St\nSuite 4"\n'
        f'"Bob, Jr.",bob@{DOMAIN},"2 Side St\n\nBuilding B"\n'
        'Carol,not a upn,"3 Road"\n'
    )
    items = _read(export)
    assert [i.key for i in items if isinstance(i, Target)] == [f"alice@{DOMAIN}", f"bob@{DOMAIN}"]
    assert [i for i in items if isinstance(i, str)] == [
        f"{export}:7: 'not a upn' is neither a user object id (a GUID) nor a userPrincipalName (name@domain)"
    ]


def test_the_entra_bulk_template_is_recognised(tmp_path: Path):
    template = tmp_path / "UserDeleteTemplate.csv"
    template.write_text(f"version:v1.0,,\nUser name [userPrincipalName] Required\nalice@{DOMAIN}\nbob@{DOMAIN}\n")
    assert [t.key for t in _read(template) if isinstance(t, Target)] == [f"alice@{DOMAIN}", f"bob@{DOMAIN}"]
    semicolons = tmp_path / "semi.csv"
    semicolons.write_text(f"Name;Object Id\nAlice;{'1' * 8}-1111-1111-1111-{'1' * 12}\n")
    assert [t.kind for t in _read(semicolons) if isinstance(t, Target)] == ["id"]


def test_a_one_column_csv_with_a_heading_is_read_as_csv(tmp_path: Path):
    # An export of one column ("userPrincipalName", then one UPN a line) has no delimiter to detect:
    # its heading was read as a target and refused ('userPrincipalName' is neither ... ).
    one = tmp_path / "breakglass.csv"
    one.write_text(f"userPrincipalName\nbreakglass1@{DOMAIN}\n# second account\nbreakglass2@{DOMAIN}\n")
    assert _read(one) == [
        Target(f"breakglass1@{DOMAIN}", "upn", f"{one}:2"),
        Target(f"breakglass2@{DOMAIN}", "upn", f"{one}:4"),
    ]
    ids = tmp_path / "ids.csv"
    ids.write_text(f"Object Id\n{'1' * 8}-1111-1111-1111-{'1' * 12}\n")
    assert [t.kind for t in _read(ids) if isinstance(t, Target)] == ["id"]
    mail = tmp_path / "mail-only.csv"
    mail.write_text(f"mail\nalice@{DOMAIN}\n")
    with pytest.raises(InputError, match="a mail address is not a"):
        validate_files([TargetFile.open(str(mail))], [])
    plain = tmp_path / "plain.txt"
    plain.write_text(f"alice@{DOMAIN}\nuser@{DOMAIN}\n")  # no heading: one user a line, as before
    assert [t.key for t in _read(plain) if isinstance(t, Target)] == [f"alice@{DOMAIN}", f"user@{DOMAIN}"]


def test_a_file_whose_only_user_column_is_mail_is_refused_saying_mail_is_not_a_upn(tmp_path: Path):
    mail = tmp_path / "mail.csv"
    mail.write_text(f"displayName,mail\nAlice,alice@{DOMAIN}\n")
    with pytest.raises(InputError, match=r"mail.csv:1: the only user column is 'mail': a mail address is not a"):
        validate_files([TargetFile.open(str(mail))], [])


def test_a_directory_is_named_as_such(tmp_path: Path):
    with pytest.raises(InputError, match=r"--from-file .*: is a directory"):
        TargetFile.open(str(tmp_path))


def test_the_stdin_spool_never_stays_on_disk_and_every_pass_reads_it_whole(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    import io
    import stat
    import sys
    import tempfile

    people = [f"user{n}@{DOMAIN}" for n in range(3000)]  # more than one read buffer
    monkeypatch.setattr(sys, "stdin", io.StringIO("\ufeff" + "".join(f"{p}\n" for p in people)))
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    monkeypatch.setattr(tempfile, "tempdir", None)
    handle = TargetFile.open("-")
    assert list(tmp_path.iterdir()) == [], "the spool was unlinked before the list was written into it"
    assert handle._spool_fd is not None
    assert stat.S_IMODE(os.fstat(handle._spool_fd).st_mode) == 0o600
    # two passes alive at once (as the resolver runs them) each read the whole list from its start
    one, two = handle.targets(), handle.targets()
    pairs = list(zip(one, two, strict=True))
    assert [a.key for a, _ in pairs] == [b.key for _, b in pairs] == people
    handle.cleanup()
    assert handle._spool_fd is None


# -- end to end ------------------------------------------------------------------------------------
def test_stdin_for_both_targets_and_exclusions_is_refused(ops: Ops, tmp_path: Path):
    user = ops.run.sandbox.tenant.users[540]
    temp = tmp_path / "tmp"
    temp.mkdir()
    before = len(ops.run.revocations())
    result = ops.cli(
        "revoke", "--from-file", "-", "--exclude-file", "-", "--yes", stdin=user.id, env={"TMPDIR": str(temp)}
    )
    assert result.returncode == 2
    assert "--from-file - and --exclude-file - cannot both read standard input" in result.stderr
    assert ops.revoked_ids(before) == []
    # an error after stdin was spooled leaves nothing behind
    result = ops.cli(
        "revoke", "--from-file", "-", "--from-file", str(tmp_path / "missing.txt"), stdin=user.id,
        env={"TMPDIR": str(temp)},
    )  # fmt: skip
    assert result.returncode == 2 and "no such file" in result.stderr
    assert os.listdir(temp) == []


def test_an_exclusion_file_that_names_nobody_refuses_the_run(ops: Ops, tmp_path: Path):
    user = next(u for u in ops.run.sandbox.tenant.users[541:560] if u.user_type == "Member")
    empty = tmp_path / "breakglass.txt"
    empty.write_text("# break-glass accounts\n\n")
    before = len(ops.run.revocations())
    result = ops.cli("revoke", "--user", user.id, "--exclude-file", str(empty), "--yes")
    assert result.returncode == 2
    assert f"--exclude-file {empty} names nobody" in result.stderr
    assert ops.revoked_ids(before) == []
    result = ops.cli("revoke", "--from-file", str(tmp_path), "--yes")
    assert result.returncode == 2 and f"--from-file {tmp_path}: is a directory" in result.stderr


def test_an_entra_export_with_multiline_addresses_revokes_exactly_its_users(ops: Ops, tmp_path: Path):
    people = [u for u in ops.run.sandbox.tenant.users[560:600] if u.user_type == "Member"][:3]
    export = tmp_path / "export.csv"
    rows = [f'"{u.display_name}",{u.user_principal_name},"1 Main St\n{n} Floor"' for n, u in enumerate(people)]
    export.write_text("displayName,userPrincipalName,streetAddress\n" + "\n".join(rows) + "\n")
    before = len(ops.run.revocations())
    result = ops.cli("revoke", "--from-file", str(export), "--yes")
    assert result.returncode == 0, result.stderr
    assert sorted(ops.revoked_ids(before)) == sorted(u.id for u in people)


def test_a_run_fed_from_stdin_is_never_resumed_with_other_input(
    ops: Ops, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    """Issue 10 #4: a resume fed list B used to revoke B's users and leave the rest of list A
    unrevoked and unreported, exit 0. A stdin run cannot be resumed; its stop says what to do instead."""
    from tests.revoke_ops.test_engine import internal
    from tests.revoke_ops.test_engine_faults import token_outage

    first, second = internal(ops, 160, 200), internal(ops, 420, 5)
    journal = tmp_path / "j.jsonl"
    before = len(ops.run.revocations())
    token_outage(ops, monkeypatch, seconds=None)  # the run stops part-way: tokens kept failing
    common = ("--yes", "--write-rate", "40", "--write-burst", "20", "--max-attempts", "3")
    stopped = ops.cli(
        "revoke", "--from-file", "-", *common, "--journal", str(journal), stdin="".join(f"{u.id}\n" for u in first)
    )
    assert stopped.returncode == 1, stopped.stderr
    assert "its targets came from standard input, which a resume cannot read again" in stopped.stderr
    assert "start a new run with --from-file FILE" in stopped.stderr
    assert f"--resume {journal}" not in stopped.stderr, "the hint must not point at a resume that is refused"
    sent = ops.revoked_ids(before)
    assert 0 < len(sent) < len(first)
    assert json.loads(journal.read_text().splitlines()[-1])["completed"] is False

    monkeypatch.undo()  # the outage is over
    other = "".join(f"{u.id}\n" for u in second)
    for argv in (("--resume", str(journal), "--from-file", "-", "--yes"), ("--resume", str(journal), "--yes")):
        resumed = ops.cli("revoke", *argv, stdin=other)
        assert resumed.returncode == 2, resumed.stderr
        assert f"--resume {journal}: that run read its targets from standard input" in resumed.stderr
        assert "nothing was changed" in resumed.stderr
    assert ops.revoked_ids(before) == sent, "nobody of the second list (or the first) was revoked by a resume"


def test_a_run_whose_exclusions_came_from_stdin_is_not_told_to_resume(
    ops: Ops, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    """A run with `--exclude-file -` cannot be resumed (an exclusion is never dropped): its stop used to
    say "run revoke-ops revoke --resume J", which is then refused mid-incident. It says what to do."""
    from tests.revoke_ops.test_engine import internal
    from tests.revoke_ops.test_engine_faults import token_outage

    people = internal(ops, 260, 120)
    targets = tmp_path / "targets.txt"
    targets.write_text("".join(f"{u.id}\n" for u in people))
    journal = tmp_path / "j.jsonl"
    token_outage(ops, monkeypatch, seconds=None)  # the run stops part-way: tokens kept failing
    common = ("--yes", "--write-rate", "40", "--write-burst", "20", "--max-attempts", "3")
    stopped = ops.cli(
        "revoke", "--from-file", str(targets), "--exclude-file", "-", *common, "--journal", str(journal),
        stdin=f"breakglass1@{DOMAIN}\n",
    )  # fmt: skip
    assert stopped.returncode == 1, stopped.stderr
    assert "its exclusions came from standard input, which a resume cannot read again" in stopped.stderr
    assert "start a new run with --exclude-file FILE" in stopped.stderr
    assert f"--resume {journal}" not in stopped.stderr, "the hint must not point at a resume that is refused"
    monkeypatch.undo()
    refused = ops.cli("revoke", "--resume", str(journal), "--yes")
    assert refused.returncode == 2 and "read its exclusions from standard input" in refused.stderr


def test_a_contain_run_fed_from_stdin_says_both_journals_need_undoing() -> None:
    """A new contain run finds the accounts an earlier one disabled already disabled, so its undo leaves
    them alone: the advice to start a new run names the first journal's undo as well."""
    from revoke_ops.request import how_to_continue

    how = how_to_continue("/j/first.jsonl", "contain", stdin="targets")
    assert "start a new run with --from-file FILE" in how
    assert "`revoke-ops contain --undo --journal /j/first.jsonl`" in how and "--resume" not in how
    assert "--undo" not in how_to_continue("/j/first.jsonl", "revoke", stdin="targets")


def test_a_header_only_csv_and_an_empty_stdin_are_usage_errors(ops: Ops, tmp_path: Path):
    # Issue 11 #7: `failing-query | revoke-ops revoke --from-file - --yes` and a CSV with only its header
    # printed "revoked 0" and exited 0; no targets after reading the input is exit 2, like no target options.
    header = tmp_path / "users.csv"
    header.write_text("userPrincipalName,displayName\n")
    for argv, stdin in ((["--from-file", str(header)], None), (["--from-file", "-"], "")):
        result = ops.cli("revoke", *argv, "--yes", "-o", "json", stdin=stdin)
        assert result.returncode == 2, (argv, result.stderr)
        assert "the input holds no targets" in result.stderr
        assert json.loads(result.stdout)["error"]["exitCode"] == 2


def test_a_run_killed_while_reading_stdin_leaves_no_list_on_disk(ops: Ops, tmp_path: Path):
    """Issue 10 #14: the stdin spool used to stay in $TMPDIR after SIGKILL, the list readable there."""
    import signal
    import subprocess
    import sys
    import time

    temp = tmp_path / "tmp"
    temp.mkdir()
    env = {**os.environ, "TMPDIR": str(temp), "SSL_CERT_FILE": ops.run.ca, "REQUESTS_CA_BUNDLE": ops.run.ca}
    exe = Path(sys.executable).parent / "revoke-ops"
    argv = [str(exe), "revoke", "--from-file", "-", "--yes", "--credentials", str(ops.bundle)]
    user = ops.run.sandbox.tenant.users[560]
    before = len(ops.run.revocations())
    process = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                               env=env, start_new_session=True)  # fmt: skip
    try:
        assert process.stdin is not None
        process.stdin.write(f"{user.id}\n".encode())
        process.stdin.flush()  # stdin stays open: the run is still reading it
        spool = None
        deadline = time.monotonic() + 60
        while spool is None and time.monotonic() < deadline:
            for fd in Path(f"/proc/{process.pid}/fd").iterdir():
                with contextlib.suppress(OSError):
                    target = os.readlink(fd)
                    if target.startswith(str(temp)):
                        spool = target
            time.sleep(0.1)
        assert spool is not None and spool.endswith(" (deleted)"), "the spool is open but already unlinked"
        assert os.listdir(temp) == []
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=30)
        if process.stdin:
            process.stdin.close()
    assert os.listdir(temp) == [], "nothing of the list is left after SIGKILL"
    assert ops.revoked_ids(before) == []
