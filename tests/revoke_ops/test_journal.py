"""The journal's integrity: a hash chain, owner and mode checks, no symlinks, one writer, torn lines.

Fast tests drive :mod:`revoke_ops.journal` directly; the end-to-end ones go through the real
`revoke-ops` command against the sandbox, where an operator would meet each case.
"""

from __future__ import annotations

import json
import os
import signal
import stat
from pathlib import Path
from typing import Any

import pytest

from revoke_ops.errors import InputError
from revoke_ops.journal import Journal, read_journal
from tests.revoke_ops.conftest import Ops, signal_after_first_outcome


def _write(path: Path, outcomes: int = 3) -> None:
    journal = Journal(path)
    journal.header(tool="revoke-ops test", tenant="t", spec={})
    journal.attempt(1, [{"id": f"id{n}", "upn": "", "target": f"id{n}"} for n in range(outcomes)])
    for n in range(outcomes):
        journal.outcome(id=f"id{n}", target=f"id{n}", outcome="revoked", sentAt="2026-01-01T00:00:00Z")
    journal.end({"outcomes": {"revoked": outcomes}}, completed=True)
    journal.close()


def _lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def _rewrite(path: Path, lines: list[dict[str, Any]]) -> None:
    path.write_text("".join(json.dumps(r, separators=(",", ":")) + "\n" for r in lines))


def test_every_line_is_chained_and_an_intact_journal_reads_back(tmp_path: Path):
    path = tmp_path / "j.jsonl"
    _write(path)
    lines = _lines(path)
    assert all(len(line["hash"]) == 64 for line in lines)
    assert len({line["hash"] for line in lines}) == len(lines)
    state = read_journal(path)
    assert state.completed is True and set(state.outcomes) == {"id0", "id1", "id2"}


@pytest.mark.parametrize(
    "damage",
    [
        "an excluded line in place of a revoked one",
        "an exclusion dropped from the header",
        "a line removed in the middle",
        "two lines swapped",
    ],
)
def test_an_edited_journal_is_refused_naming_the_line(tmp_path: Path, damage: str):
    path = tmp_path / "j.jsonl"
    _write(path)
    lines = _lines(path)
    if damage.startswith("an excluded"):
        lines[3]["outcome"] = "excluded"
        broken = 4
    elif damage.startswith("an exclusion"):
        lines[0]["spec"] = {"exclude": []}
        broken = 1
    elif damage.startswith("a line removed"):
        del lines[2]
        broken = 3
    else:
        lines[2], lines[3] = lines[3], lines[2]
        broken = 3
    _rewrite(path, lines)
    with pytest.raises(InputError, match=rf"j.jsonl:{broken}: the journal's integrity chain is broken"):
        read_journal(path)


def test_a_journal_without_the_chain_is_refused_saying_which_version_wrote_it(tmp_path: Path):
    path = tmp_path / "old.jsonl"
    path.write_text(json.dumps({"type": "header", "tool": "revoke-ops 0.3.0", "tenant": "t"}) + "\n")
    path.chmod(0o600)
    with pytest.raises(InputError, match=r"written by revoke-ops 0.3.0 without an integrity chain"):
        read_journal(path)


def test_journals_must_be_ours_0600_and_never_a_symlink(tmp_path: Path):
    path = tmp_path / "j.jsonl"
    _write(path)
    path.chmod(0o644)
    with pytest.raises(InputError, match=r"readable or writable by others \(mode 0644"):
        read_journal(path)
    path.chmod(0o600)
    link = tmp_path / "link.jsonl"
    link.symlink_to(path)
    with pytest.raises(InputError, match="is a symbolic link"):
        read_journal(link)
    with pytest.raises(InputError, match="is a symbolic link"):
        Journal(link, append=True)


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() != 0, reason="needs root to give the file away")
def test_a_journal_owned_by_another_user_is_refused_by_resume_and_verify(ops: Ops, tmp_path: Path):
    """Issue 10 #5: `verify` and `--resume` used to accept a journal another user owns (and could edit)."""
    people = _users(ops, 2, 420)
    journal = tmp_path / "j.jsonl"
    result = ops.cli("revoke", *(a for u in people for a in ("--user", u.id)), "--journal", str(journal))
    assert result.returncode == 0, result.stderr
    os.chown(journal, 65534, 65534)
    for command in (("revoke", "--resume", str(journal), "--yes"), ("verify", "--journal", str(journal))):
        refused = ops.cli(*command)
        assert refused.returncode == 2, refused.stderr
        assert f"the journal {journal} is owned by another user (uid 65534): refusing to trust it" in refused.stderr


def test_journal_directories_are_created_0700_even_under_umask_000(tmp_path: Path):
    old = os.umask(0)
    try:
        path = tmp_path / "state" / "revoke-ops" / "journals" / "j.jsonl"
        _write(path)
    finally:
        os.umask(old)
    for directory in (path.parent, path.parent.parent, path.parent.parent.parent):
        assert stat.S_IMODE(directory.stat().st_mode) == 0o700, directory
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_a_journal_directory_others_can_write_is_refused(tmp_path: Path):
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o777)
    with pytest.raises(InputError, match=r"writable by others \(mode 0777\)"):
        Journal(shared / "j.jsonl")
    assert not (shared / "j.jsonl").exists()
    shared.chmod(0o1777)  # sticky, as /tmp: others cannot replace our file
    _write(shared / "j.jsonl")
    assert read_journal(shared / "j.jsonl").completed


def test_a_second_writer_is_refused_while_the_first_holds_the_journal(tmp_path: Path):
    path = tmp_path / "j.jsonl"
    _write(path)
    first = Journal(path, append=True)
    try:
        with pytest.raises(InputError, match="in use by another revoke-ops run"):
            Journal(path, append=True)
        with pytest.raises(InputError, match="in use by another revoke-ops run"):
            read_journal(path)
    finally:
        first.close()
    Journal(path, append=True).close()


def test_a_resume_refuses_a_journal_that_changed_since_it_was_read(tmp_path: Path):
    path = tmp_path / "j.jsonl"
    _write(path)
    state = read_journal(path)
    other = Journal(path, append=True)
    other.header(tool="another resume", tenant="t", spec={})
    other.close()
    with pytest.raises(InputError, match="changed since it was read"):
        Journal(path, append=True, expect=state)


def test_a_torn_last_line_is_reported_and_the_resume_starts_on_a_new_line(tmp_path: Path):
    path = tmp_path / "j.jsonl"
    _write(path)
    with path.open("a") as handle:
        handle.write('{"type":"outcome","id":"id9","outc')  # a crash mid-write
    state = read_journal(path)
    assert state.torn_line == 7 and "id9" not in state.outcomes
    resumed = Journal(path, append=True, expect=state)
    resumed.header(tool="resume", tenant="t", spec={})
    resumed.outcome(id="id9", target="id9", outcome="revoked")
    resumed.close()
    lines = path.read_text().splitlines()
    assert lines[6].endswith('"outc') and json.loads(lines[7])["tornLine"] == 7
    again = read_journal(path)
    assert again.outcomes["id9"]["outcome"] == "revoked" and again.torn_line is None
    # a fragment no header acknowledges is damage, not a crash
    text = path.read_text().splitlines(keepends=True)
    path.write_text("".join([*text[:3], "{garbage\n", *text[3:5]]))
    with pytest.raises(InputError, match=r"j.jsonl:4: not a journal line"):
        read_journal(path)


# -- end to end ------------------------------------------------------------------------------------
def _users(ops: Ops, n: int, start: int) -> list[Any]:
    return [u for u in ops.run.sandbox.tenant.users[start : start + 60] if u.user_type == "Member"][:n]


def test_resume_and_verify_refuse_an_edited_journal(ops: Ops, tmp_path: Path):
    people = _users(ops, 3, 400)
    journal = tmp_path / "j.jsonl"
    result = ops.cli("revoke", *(a for u in people for a in ("--user", u.id)), "--journal", str(journal))
    assert result.returncode == 0, result.stderr
    lines = _lines(journal)
    # the classic: turn a user's outcome into "excluded" so that a resume skips them and verify passes
    for line in lines:
        if line["type"] == "outcome" and line["id"] == people[1].id:
            line["outcome"] = "excluded"
    _rewrite(journal, lines)
    journal.chmod(0o600)
    for command in (("revoke", "--resume", str(journal), "--yes"), ("verify", "--journal", str(journal))):
        refused = ops.cli(*command)
        assert refused.returncode == 2, refused.stderr
        assert "integrity chain is broken" in refused.stderr and f"{journal}:" in refused.stderr


def test_ctrl_c_mid_run_ends_the_journal_as_interrupted_and_names_it(ops: Ops, tmp_path: Path):
    journal = tmp_path / "j.jsonl"
    returncode, err = signal_after_first_outcome(ops, _users(ops, 30, 440), journal, signal.SIGINT, rate="0.2")
    assert returncode == 130, err
    assert f"--resume {journal}" in err
    end = _lines(journal)[-1]
    assert end["type"] == "end" and end["completed"] is False and end["stoppedBy"] == "interrupted"
    assert end["summary"]["seconds"] >= 0
    assert read_journal(journal).completed is False
    verify = ops.cli("verify", "--journal", str(journal), "--output", "json")
    assert verify.returncode == 1, verify.stderr
    body = json.loads(verify.stdout)
    outcomes = len(read_journal(journal).outcomes)
    assert body["accountedFor"] is False and body["neverAttempted"] == 30 - outcomes > 0
    assert (
        f"{30 - outcomes} target(s) never attempted: resume it with `revoke-ops revoke --resume {journal}`"
        in (body["incomplete"])
    )
