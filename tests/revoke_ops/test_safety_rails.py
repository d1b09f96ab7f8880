"""The rails an operator relies on mid-incident: exclusions, resume, de-duplication, counts, empty input.

End to end through the real `revoke-ops` command against the sandbox.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.revoke_ops.conftest import DOMAIN, Ops, write_bundle

REVOKE_ONLY = ("User.RevokeSessions.All",)
MEMBERS_ONLY = ("User.RevokeSessions.All", "GroupMember.Read.All")


def _ops_with(ops: Ops, tmp_path: Path, name: str, roles: tuple[str, ...]) -> Ops:
    creds = ops.run.app(name, app_roles=roles)
    return Ops(ops.run, creds, write_bundle(ops.run, creds, tmp_path / f"{name}.json", app_roles=roles))


def _members(ops: Ops, n: int, start: int) -> list[Any]:
    return [u for u in ops.run.sandbox.tenant.users[start : start + 40] if u.user_type == "Member"][:n]


def test_a_decoy_exclusion_of_the_other_form_does_not_open_the_guard(ops: Ops, tmp_path: Path):
    # Issue 10 #2: without User.Read.All, `--user <victim id> --user <other upn> --exclude victim@…
    # --exclude <other id>` used to pass the set-of-kinds guard and revoke the victim.
    limited = _ops_with(ops, tmp_path, "revoke-only-decoy", REVOKE_ONLY)
    victim, other = _members(ops, 2, 100)
    before = len(ops.run.revocations())
    result = limited.cli(
        "revoke",
        "--user",
        victim.id,
        "--user",
        other.user_principal_name,
        "--exclude",
        victim.user_principal_name,
        "--exclude",
        other.id,
    )
    assert result.returncode == 2, result.stderr
    assert "cannot be matched without the Microsoft Graph permission User.Read.All" in result.stderr
    assert ops.revoked_ids(before) == []
    # the same form on both sides is matched exactly, case-insensitively
    result = limited.cli("revoke", "--user", victim.id.upper(), "--user", other.id, "--exclude", victim.id)
    assert result.returncode == 0, result.stderr
    assert ops.revoked_ids(before) == [other.id]


def test_a_upn_exclusion_refuses_a_group_run_whose_members_arrive_without_upns(ops: Ops, tmp_path: Path):
    limited = _ops_with(ops, tmp_path, "members-only", MEMBERS_ONLY)
    group = ops.run.sandbox.tenant.group_named("compromised-sales")
    before = len(ops.run.revocations())
    result = limited.cli("revoke", "--group", group.id, "--exclude", f"breakglass1@{DOMAIN}", "--yes")
    assert result.returncode == 2
    assert "User.Read.All" in result.stderr
    assert ops.revoked_ids(before) == []
    # by object id it is matched, and the break-glass member is never revoked
    result = limited.cli("revoke", "--group", group.id, "--exclude", ops.user("breakglass1").id, "--yes")
    assert result.returncode == 0, result.stderr
    revoked = set(ops.revoked_ids(before))
    assert ops.user("breakglass1").id not in revoked and revoked


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    target_forms=st.lists(st.sampled_from(["id", "ID", "upn", "UPN"]), min_size=1, max_size=3),
    exclusion_forms=st.lists(st.sampled_from(["id", "ID", "upn", "UPN"]), min_size=1, max_size=3),
    excluded_is_target=st.booleans(),
)
def test_without_user_read_no_form_of_exclusion_is_ever_revoked(
    ops: Ops, tmp_path: Path, target_forms: list[str], exclusion_forms: list[str], excluded_is_target: bool
):
    limited = _ops_with(ops, tmp_path, "revoke-only-prop", REVOKE_ONLY)
    people = _members(ops, 3, 120)
    protected = people[0]

    def named(user, form: str) -> str:
        value = user.id if form.lower() == "id" else user.user_principal_name
        return value.upper() if form.isupper() else value

    targets = [
        named(protected if excluded_is_target and i == 0 else people[1 + i % 2], f) for i, f in enumerate(target_forms)
    ]
    exclusions = [named(protected, f) for f in exclusion_forms]
    before = len(ops.run.revocations())
    args = [a for t in targets for a in ("--user", t)] + [a for e in exclusions for a in ("--exclude", e)]
    result = limited.cli("revoke", *args, "--yes")
    assert protected.id not in ops.revoked_ids(before), (targets, exclusions, result.stderr)
    # The rule, per target: the run goes ahead only when every target and every exclusion are in one form.
    kinds = {f.lower() for f in target_forms + exclusion_forms}
    if len(kinds) > 1:
        assert result.returncode == 2, (targets, exclusions, result.stderr)
        assert "cannot be matched without the Microsoft Graph permission User.Read.All" in result.stderr
        assert ops.revoked_ids(before) == [], "a refused run changes nothing"
    else:
        assert result.returncode == 0, (targets, exclusions, result.stderr)
        named_ids = {people[1 + i % 2].id for i in range(len(target_forms)) if not (excluded_is_target and i == 0)}
        assert set(ops.revoked_ids(before)) == named_ids, (targets, exclusions)


def _group(ops: Ops, name: str, members: list[Any]) -> Any:
    tenant = ops.run.sandbox.tenant
    try:
        return tenant.group_named(name)
    except StopIteration:
        return ops.run.sandbox.call(tenant.add_group, name, [u.id for u in members])


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    exclusion_forms=st.lists(st.sampled_from(["id", "ID", "upn", "UPN"]), min_size=1, max_size=3),
    protected_is_member=st.booleans(),
    decoy=st.sampled_from([None, "id", "upn"]),
)
def test_without_user_read_a_group_run_never_revokes_an_excluded_member(
    ops: Ops, tmp_path: Path, exclusion_forms: list[str], protected_is_member: bool, decoy: str | None
):
    """Issue 10 #2 for groups: with GroupMember.Read.All but not User.Read.All the members arrive as
    object ids only, so an exclusion by UPN (any case) can never be matched: the run is refused, even
    when another exclusion (a decoy) is an object id; exclusions by object id (any case) are matched."""
    limited = _ops_with(ops, tmp_path, "members-only-prop", MEMBERS_ONLY)
    people = _members(ops, 4, 200)
    protected, outsider = people[0], people[3]
    members = people[:3] if protected_is_member else people[1:3]
    group = _group(ops, f"prop-group-{'with' if protected_is_member else 'without'}", members)

    def named(user: Any, form: str) -> str:
        value = user.id if form.lower() == "id" else user.user_principal_name
        return value.upper() if form.isupper() else value

    exclusions = [named(protected, f) for f in exclusion_forms] + ([named(outsider, decoy)] if decoy else [])
    before = len(ops.run.revocations())
    result = limited.cli("revoke", "--group", group.id, *[a for e in exclusions for a in ("--exclude", e)], "--yes")
    assert protected.id not in ops.revoked_ids(before), (exclusions, result.stderr)
    if any(f.lower() == "upn" for f in exclusion_forms) or decoy == "upn":
        assert result.returncode == 2, (exclusions, result.stderr)
        assert "User.Read.All" in result.stderr
        assert ops.revoked_ids(before) == [], "a refused run changes nothing"
    else:
        assert result.returncode == 0, (exclusions, result.stderr)
        assert sorted(ops.revoked_ids(before)) == sorted(u.id for u in people[1:3])


def test_one_user_named_by_upn_and_by_id_is_revoked_and_counted_once(ops: Ops):
    people = _members(ops, 3, 140)
    before = len(ops.run.revocations())
    args = [a for u in people for a in ("--user", u.id)]
    args += ["--user", people[0].user_principal_name.upper(), "--user", people[1].user_principal_name]
    result = ops.cli("revoke", *args, "--output", "json")
    assert result.returncode == 0, result.stderr
    assert sorted(ops.revoked_ids(before)) == sorted(u.id for u in people)
    assert json.loads(result.stdout)["summary"]["outcomes"]["revoked"] == 3


def test_resume_refuses_other_targets_and_keeps_added_exclusions(ops: Ops, tmp_path: Path):
    people = _members(ops, 8, 160)
    targets = tmp_path / "t.txt"
    targets.write_text("".join(f"{u.user_principal_name}\n" for u in people))
    journal = tmp_path / "j.jsonl"
    # a run that stopped after the header: nothing revoked yet
    first = ops.cli("revoke", "--from-file", str(targets), "--journal", str(journal), "--dry-run")
    assert first.returncode == 0
    journal_lines = [
        {
            "type": "header",
            "tenant": ops.run.info["tenantId"],
            "spec": {
                "users": [],
                "files": [str(targets.resolve())],
                "group": None,
                "allUsers": False,
                "filter": None,
                "exclude": [],
                "excludeFiles": [],
                "includeExternal": False,
            },
        }
    ]
    from revoke_ops.request import RevokeRequest, input_digest

    journal_lines[0]["inputDigest"] = input_digest(RevokeRequest(files=[str(targets.resolve())]))
    from revoke_ops.journal import Journal

    written = Journal(journal)
    written.header(**{k: v for k, v in journal_lines[0].items() if k != "type"})
    written.close()
    group = ops.run.sandbox.tenant.group_named("compromised-sales")
    other = ops.cli("revoke", "--resume", str(journal), "--group", group.id, "--yes")
    assert other.returncode == 2
    assert "--group" in other.stderr and "differ" in other.stderr
    before = len(ops.run.revocations())
    # an exclusion given with --resume applies (dry run lists it as excluded) ...
    dry = ops.cli("revoke", "--resume", str(journal), "--exclude", people[0].user_principal_name, "--dry-run")
    assert dry.returncode == 0, dry.stderr
    would = dry.stdout.split("OUTCOME")[0]  # the WOULD REVOKE rows, before the listings
    assert people[0].id not in would and people[1].id in would
    assert f"excluded  {people[0].id}" in dry.stdout
    # ... and the real resume records it; a second resume without it still honours it
    real = ops.cli("revoke", "--resume", str(journal), "--exclude", people[0].user_principal_name, "--yes")
    assert real.returncode == 0, real.stderr
    headers = [json.loads(line) for line in journal.read_text().splitlines() if '"header"' in line]
    assert headers[-1]["addedExclusions"] == [people[0].user_principal_name]
    from revoke_ops.journal import read_journal
    from revoke_ops.run import resumed_request

    again, added = resumed_request(RevokeRequest(resume=journal), read_journal(journal))
    assert people[0].user_principal_name in again.exclude and added == []
    assert people[0].id not in ops.revoked_ids(before)
    assert set(ops.revoked_ids(before)) == {u.id for u in people[1:]}


def test_confirmation_counts_what_is_known_and_says_what_is_estimated(ops: Ops):
    from revoke_ops.run import Confirmation

    question = Confirmation(
        tenant_id="t",
        targets=50000,
        targets_basis="listed",
        eta_seconds=2350.0,
        excluded=1,
        privileged_first=2,
        privileged_in_tenant=10,
        dry_run=False,
        operator=None,
        resumed=False,
    ).question()
    assert "50000 listed target(s)" in question and "1 excluded" in question and "2 privileged first" in question
    estimate = Confirmation("t", 900, "estimate", None, 0, None, 10, False, None, False).question()
    assert "about 900 user(s) (Graph's count" in estimate and "tenant's 10 role holders" in estimate
    # one --exclude is one excluded user (it used to say 2: its id and its UPN)
    people = _members(ops, 7, 330)
    args = [a for u in people[1:] for a in ("--user", u.id)]
    result = ops.cli("revoke", *args, "--exclude", people[1].user_principal_name, "--dry-run", "--output", "json")
    assert result.returncode == 0, result.stderr


def test_empty_input_is_a_usage_error_not_a_success(ops: Ops, tmp_path: Path):
    for text in ("", "# only a comment\n"):
        empty = tmp_path / "empty.csv"
        empty.write_text(text)
        result = ops.cli("revoke", "--from-file", str(empty), "--yes")
        assert result.returncode == 2, (text, result.stderr)
        assert "no targets" in result.stderr
    result = ops.cli("revoke", "--from-file", "-", "--yes", stdin="")
    assert result.returncode == 2 and "no targets" in result.stderr


def test_a_filter_graph_refuses_is_a_usage_error_naming_it(ops: Ops, tmp_path: Path):
    journal = tmp_path / "f.jsonl"
    result = ops.cli("revoke", "--all-users", "--filter", "nosuchproperty eq 'x'", "--yes", "--journal", str(journal))
    assert result.returncode == 2, result.stderr
    assert "--filter \"nosuchproperty eq 'x'\"" in result.stderr
    assert not journal.exists(), "refused before any journal is written"


def test_a_listing_far_below_graphs_count_is_reported_not_success():
    from types import SimpleNamespace

    from revoke_ops.engine import Summary
    from revoke_ops.run import Confirmation, RunResult, _short_listing

    confirmation = Confirmation("t", 980, "estimate", None, 0, None, 0, False, None, False)
    summary = Summary()
    summary.counts["revoked"] = 10
    prepared: Any = SimpleNamespace(confirmation=confirmation, resumed=False)
    how = "run `revoke-ops revoke --resume /j.jsonl`"
    reason = _short_listing(prepared, summary, how)
    assert reason and "ended after 10 user(s) where Microsoft Graph counted about 980" in reason
    assert f"cut short: {how}, and compare" in reason
    assert RunResult(summary, None, None, incomplete=reason).exit_code == 1
    summary.counts["revoked"] = 960  # within $count's eventual consistency
    assert _short_listing(prepared, summary, how) is None
    listed = Confirmation("t", 980, "listed", None, 0, None, 0, False, None, False)
    assert _short_listing(SimpleNamespace(confirmation=listed, resumed=False), Summary(), how) is None  # type: ignore[arg-type]


def test_a_503_storm_while_resolving_exclusions_is_a_service_failure_and_changes_nothing(ops: Ops):
    people = _members(ops, 2, 190)
    before = len(ops.run.revocations())
    ops.run.settings(faults={"error_5xx": 1.0})
    try:
        result = ops.cli("revoke", "--user", people[0].id, "--exclude", people[1].user_principal_name)
    finally:
        ops.run.settings(faults={"error_5xx": 0.0})
    assert result.returncode == 4, result.stderr
    assert "resolving the exclusions failed" in result.stderr and "nothing was changed" in result.stderr
    assert ops.revoked_ids(before) == []


def test_resume_refuses_another_command_another_journal_and_exclusions_from_stdin(ops: Ops, tmp_path: Path):
    # Issue 11 #1: anything given with --resume that differs from the journal is refused naming it.
    # `contain --resume` of a revoke journal (and the reverse) said "the inputs changed"; `--journal K`
    # beside `--resume J` was silently ignored; a run whose exclusions came from stdin could not be
    # resumed ("--exclude-file /cwd/-: no such file").
    people = _members(ops, 4, 262)
    targets = tmp_path / "t.txt"
    targets.write_text("".join(f"{u.id}\n" for u in people))
    journal = tmp_path / "j.jsonl"
    first = ops.cli("revoke", "--from-file", str(targets), "--journal", str(journal), "--yes")
    assert first.returncode == 0, first.stderr
    before = len(ops.run.revocations())
    contain = ops.cli("contain", "--resume", str(journal), "--yes")
    assert contain.returncode == 2, contain.stderr
    assert f"is the journal of a `revoke` run: continue it with `revoke-ops revoke --resume {journal}`" in (
        contain.stderr
    )
    other = tmp_path / "other.jsonl"
    moved = ops.cli("revoke", "--resume", str(journal), "--journal", str(other), "--yes")
    assert moved.returncode == 2 and f"--journal {other} differs from --resume {journal}" in moved.stderr
    assert not other.exists()
    added = ops.cli("revoke", "--resume", str(journal), "--exclude-file", "-", "--yes", stdin=people[0].id)
    assert added.returncode == 2 and "--exclude-file - with --resume" in added.stderr
    # exclusions read from stdin: the run works, its resume is refused saying why (never run without them)
    piped = tmp_path / "piped.jsonl"
    run = ops.cli(
        "revoke", "--from-file", str(targets), "--exclude-file", "-", "--journal", str(piped), "--yes",
        stdin=people[0].id,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    resume = ops.cli("revoke", "--resume", str(piped), "--yes")
    assert resume.returncode == 2, resume.stderr
    assert "read its exclusions from standard input" in resume.stderr and "no such file" not in resume.stderr
    assert people[0].id not in ops.revoked_ids(before)
    assert ops.cli("revoke", "--resume", str(journal), "--journal", str(journal), "--yes").returncode == 0


def test_a_second_resume_of_a_running_journal_is_refused_and_a_long_run_logs_progress(ops: Ops, tmp_path: Path):
    # Issue 11 #4: two `--resume` runs of one journal at once both proceeded (520 users revoked twice);
    # #12: `-v` without a terminal (CI, SOAR) logged progress only when an outcome arrived, so a paced
    # run (here one batch per 50 s) logged nothing between batches and looked hung.
    people = [u for u in ops.run.sandbox.tenant.users[200:300] if u.user_type == "Member"][:60]
    targets = tmp_path / "t.txt"
    targets.write_text("".join(f"{u.id}\n" for u in people))
    journal = tmp_path / "j.jsonl"
    exe = Path(sys.executable).parent / "revoke-ops"
    command = [str(exe), "revoke", "--credentials", str(ops.bundle), "--from-file", str(targets), "--yes", "-v"]
    command += ["--journal", str(journal), "--write-burst", "1", "--write-rate", "0.02", "--concurrency", "1"]
    env = {**os.environ, "SSL_CERT_FILE": ops.run.ca, "REQUESTS_CA_BUNDLE": ops.run.ca}
    before = len(ops.run.revocations())
    log = tmp_path / "stderr.txt"

    def outcomes() -> int:
        return (journal.read_text() if journal.exists() else "").count('"type":"outcome"')

    with open(log, "w") as stderr:
        process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=stderr, text=True)
    try:
        deadline = time.monotonic() + 60
        while not outcomes():
            assert process.poll() is None and time.monotonic() < deadline, log.read_text()
            time.sleep(0.05)
        for second in (["revoke", "--resume", str(journal), "--yes"], ["verify", "--journal", str(journal)]):
            refused = ops.cli(*second)
            assert refused.returncode == 2, refused.stderr
            assert f"the journal {journal} is in use by another revoke-ops run" in refused.stderr
        # between the first batch and the next (50 s later), a progress line within the next 10 s
        seen = len(log.read_text())
        deadline = time.monotonic() + 15
        while "progress: " not in log.read_text()[seen:]:
            assert process.poll() is None and time.monotonic() < deadline, log.read_text()
            time.sleep(0.1)
        assert outcomes() == 20, "logged while no outcome arrived"
        process.send_signal(signal.SIGINT)
        process.wait(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    err = log.read_text()
    assert process.returncode == 130, err
    assert re.search(rf"INFO: progress: 20 of {len(people)} users after \d+ s\b.*; revoked=20", err), err
    resumed = ops.cli("revoke", "--resume", str(journal), "--yes")
    assert resumed.returncode == 0, resumed.stderr
    revoked = ops.revoked_ids(before)
    assert sorted(revoked) == sorted(u.id for u in people), "each user revoked exactly once"


def test_a_target_that_would_change_the_url_is_refused_before_anything_is_sent(
    ops: Ops, tmp_path: Path, monkeypatch: Any
):
    """Issue 10 #11: `breakglass1@…?@x.io` used to become a query string in the $batch URL when ids
    could not be looked up. Every target and exclusion is validated (an id, or a UPN by Entra's
    rules) before a token is fetched; a guest's `#EXT#` UPN is valid and percent-encoded when sent."""
    from tests.revoke_ops.test_engine_faults import count_tokens

    limited = _ops_with(ops, tmp_path, "revoke-only-url", REVOKE_ONLY)
    tokens = count_tokens(limited, monkeypatch)
    bad = f"breakglass1@{DOMAIN}?@x.io"
    listed = tmp_path / "targets.txt"
    listed.write_text(f"{_members(ops, 1, 230)[0].id}\n{bad}\n")
    before = len(ops.run.revocations())
    for args in (
        ("--user", bad),
        ("--from-file", str(listed)),
        ("--user", _members(ops, 1, 230)[0].id, "--exclude", bad),
    ):
        result = limited.cli("revoke", *args, "--yes")
        assert result.returncode == 2, result.stderr
        assert bad in result.stderr and "neither a user object id" in result.stderr, result.stderr
    assert tokens() == 0, "refused before a token was fetched"
    assert ops.revoked_ids(before) == []
