"""revoke-ops revoke, end to end against the sandbox with the real msgraph-sdk and azure-identity."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

from tests.revoke_ops.conftest import DOMAIN, Ops


def test_group_revocation_never_touches_break_glass_or_external_users(ops: Ops, tmp_path: Path):
    tenant = ops.run.sandbox.tenant
    group = tenant.group_named("compromised-sales")
    before = len(ops.run.revocations())
    journal = tmp_path / "j.jsonl"
    result = ops.cli(
        "revoke",
        "--group",
        group.id,
        "--exclude",
        f"breakglass1@{DOMAIN}",
        "--yes",
        "--journal",
        str(journal),
        "--reason",
        "incident 42",
        "--output",
        "json",
    )
    assert result.returncode == 0, result.stderr
    members = [m for m in tenant.transitive_members(group.id) if m in tenant.users_by_id]
    external = {
        m
        for m in members
        if tenant.users_by_id[m].user_type == "Guest" or "#EXT#" in tenant.users_by_id[m].user_principal_name
    }
    expected = set(members) - {ops.user("breakglass1").id} - external
    revoked = ops.revoked_ids(before)
    assert set(revoked) == expected
    assert len(revoked) == len(expected), "nobody is revoked twice"
    # the privileged member (a Security Administrator) went first
    assert revoked[0] == ops.user("admin.security").id
    body = json.loads(result.stdout)
    assert body["summary"]["outcomes"] == {
        "revoked": len(expected),
        "not_found": 0,
        "forbidden": 0,
        "skipped_external": len(external),
        "skipped_inactive": 0,
        "excluded": 1,
        "failed": 0,
    }
    assert stat.S_IMODE(os.stat(journal).st_mode) == 0o600
    lines = [json.loads(line) for line in journal.read_text().splitlines()]
    header = lines[0]
    assert header["type"] == "header" and header["reason"] == "incident 42"
    assert header["tenant"] == ops.run.info["tenantId"] and header["clientId"] == ops.creds.client_id
    outcomes = {r["id"]: r for r in lines if r["type"] == "outcome"}
    assert outcomes[ops.user("breakglass1").id]["outcome"] == "excluded"
    assert all(
        outcomes[i]["outcome"] == "revoked" and outcomes[i]["requestId"] and outcomes[i]["clientRequestId"]
        for i in expected
    )
    # every outcome was preceded by an attempt naming that user
    attempted = {u["id"] for r in lines if r["type"] == "attempt" for u in r["users"]}
    assert expected <= attempted
    assert lines[-1]["type"] == "end"


def test_dry_run_changes_nothing_and_lists_exactly_what_would_be_revoked(ops: Ops, tmp_path: Path):
    targets = tmp_path / "targets.csv"
    users = ops.run.sandbox.tenant.users[200:210]
    targets.write_text("\ufeffid,comment\n" + "\n".join(f"{u.id},x" for u in users) + "\n")
    before = ops.run.revocations()
    result = ops.cli("revoke", "--from-file", str(targets), "--exclude", users[0].id, "--dry-run", "--output", "json")
    assert result.returncode == 0, result.stderr
    assert ops.run.revocations() == before, "a dry run must not change the tenant"
    body = json.loads(result.stdout)
    would = {u["id"] for u in body["wouldRevoke"]}
    expected = {u.id for u in users[1:] if u.user_type == "Member" and "#EXT#" not in u.user_principal_name}
    assert would == expected
    assert body["journal"] is None


def test_target_file_forms_and_validation_errors(ops: Ops, tmp_path: Path):
    users = ops.run.sandbox.tenant.users[220:224]
    good = tmp_path / "upns.txt"
    good.write_text(
        "# incident 42\n\n"
        + "\n".join(u.user_principal_name.upper() for u in users)
        + "\n"
        + users[0].user_principal_name
        + "\n"
    )
    before = len(ops.run.revocations())
    result = ops.cli("revoke", "--from-file", str(good), "--yes")
    assert result.returncode == 0, result.stderr
    assert sorted(ops.revoked_ids(before)) == sorted(u.id for u in users)  # duplicates handled
    bad = tmp_path / "bad.txt"
    bad.write_text(f"{users[0].id}\nnot a user\n{users[1].id}\n")
    before = len(ops.run.revocations())
    result = ops.cli("revoke", "--from-file", str(bad), "--yes")
    assert result.returncode == 2
    assert f"{bad}:2: 'not a user' is neither a user object id (a GUID) nor a userPrincipalName" in result.stderr
    assert len(ops.run.revocations()) == before, "invalid input: nothing changed"


def test_stdin_targets_without_a_terminal_need_yes(ops: Ops):
    users = ops.run.sandbox.tenant.users[230:240]
    text = "\n".join(u.id for u in users)
    before = len(ops.run.revocations())
    refused = ops.cli("revoke", "--from-file", "-", stdin=text)
    assert refused.returncode == 2
    assert "no terminal to ask: add --yes" in refused.stderr
    assert len(ops.run.revocations()) == before
    accepted = ops.cli("revoke", "--from-file", "-", "--yes", stdin=text)
    assert accepted.returncode == 0, accepted.stderr
    assert sorted(ops.revoked_ids(before)) == sorted(u.id for u in users)


def test_unknown_user_is_not_found_exit_1(ops: Ops):
    result = ops.cli(
        "revoke", "--user", "00000000-0000-4000-8000-000000000999", "--user", ops.run.sandbox.tenant.users[241].id
    )
    assert result.returncode == 1
    assert "not_found  00000000-0000-4000-8000-000000000999" in result.stdout


def test_unresolvable_exclusion_refuses_the_run(ops: Ops):
    before = len(ops.run.revocations())
    result = ops.cli("revoke", "--user", ops.run.sandbox.tenant.users[242].id, "--exclude", f"nobody@{DOMAIN}")
    assert result.returncode == 2
    assert f"exclusion(s) do not exist in the tenant, so the run is refused: nobody@{DOMAIN}" in result.stderr
    assert len(ops.run.revocations()) == before


def test_missing_read_permission_names_the_permission(sandbox, tmp_path: Path):
    from tests.revoke_ops.conftest import write_bundle

    creds = sandbox.app("revoke-only-cli", app_roles=("User.RevokeSessions.All",))
    ops = Ops(sandbox, creds, write_bundle(sandbox, creds, tmp_path / "b.json", app_roles=("User.RevokeSessions.All",)))
    group = sandbox.sandbox.tenant.group_named("compromised-sales")
    result = ops.cli("revoke", "--group", group.id, "--yes")
    assert result.returncode == 3
    assert "needs the Microsoft Graph permission GroupMember.Read.All" in result.stderr
    assert "readPermissions" in result.stderr
    user = sandbox.sandbox.tenant.users[243]
    mixed = ops.cli("revoke", "--user", user.id, "--exclude", f"breakglass1@{DOMAIN}")
    assert mixed.returncode == 2
    assert "cannot be matched without the Microsoft Graph permission User.Read.All" in mixed.stderr
    before = len(sandbox.revocations())
    plain = ops.cli("revoke", "--user", user.id)
    assert plain.returncode == 0, plain.stderr
    assert [r["userId"] for r in sandbox.revocations()[before:]] == [user.id]


def test_no_consent_is_exit_3_with_what_to_do(sandbox, tmp_path: Path):
    from tests.revoke_ops.conftest import write_bundle

    creds = sandbox.app("no-consent-cli")
    ops = Ops(sandbox, creds, write_bundle(sandbox, creds, tmp_path / "b.json", app_roles=()))
    result = ops.cli("revoke", "--user", sandbox.sandbox.tenant.users[244].id)
    assert result.returncode == 3
    assert "does not carry User.RevokeSessions.All" in result.stderr


def test_bundle_from_another_tenant_and_unregistered_certificate(ops: Ops, tmp_path: Path):
    document = json.loads(ops.bundle.read_text())
    other = tmp_path / "other.json"
    other.write_text(json.dumps({**document, "tenantId": "99999999-0000-4000-8000-000000000000"}))
    other.chmod(0o600)
    result = ops.cli("revoke", "--user", ops.run.sandbox.tenant.users[245].id, "--credentials", str(other))
    assert result.returncode == 3
    assert "AADSTS90002" in result.stderr and "check the bundle's tenantId" in result.stderr
    from cryptography.hazmat.primitives import hashes, serialization

    from sandbox.server import make_client_certificate

    cert, key = make_client_certificate("stray")
    stray = tmp_path / "stray.pem"
    stray.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
        + cert.public_bytes(serialization.Encoding.PEM)
    )
    stray.chmod(0o600)
    result = ops.cli("revoke", "--user", ops.run.sandbox.tenant.users[245].id, "--certificate", str(stray))
    assert result.returncode == 3
    assert "AADSTS700027" in result.stderr
    assert cert.fingerprint(hashes.SHA1()).hex().upper() in result.stderr
    assert "the certificate is not registered on the application" in result.stderr


def test_loose_bundle_permissions_are_refused(ops: Ops):
    ops.bundle.chmod(0o644)
    result = ops.cli("revoke", "--user", ops.run.sandbox.tenant.users[246].id)
    assert result.returncode == 2
    assert f"the credentials bundle {ops.bundle} is accessible to group or others" in result.stderr
    assert f"chmod 600 {ops.bundle}" in result.stderr


def test_all_users_with_filter_needs_confirmation(ops: Ops):
    before = len(ops.run.revocations())
    result = ops.cli("revoke", "--all-users", "--filter", "startswith(userPrincipalName,'admin.')")
    assert result.returncode == 2
    assert len(ops.run.revocations()) == before
    result = ops.cli(
        "revoke",
        "--all-users",
        "--filter",
        "startswith(userPrincipalName,'admin.')",
        "--yes",
        "--exclude",
        f"admin.global@{DOMAIN}",
    )
    assert result.returncode == 0, result.stderr
    expected = {
        u.id
        for u in ops.run.sandbox.tenant.users
        if u.user_principal_name.startswith("admin.") and u.user_principal_name != f"admin.global@{DOMAIN}"
    }
    assert set(ops.revoked_ids(before)) == expected


def test_verify_confirms_and_reports_what_did_not_happen(ops: Ops, tmp_path: Path):
    users = ops.run.sandbox.tenant.users[250:255]
    journal = tmp_path / "v.jsonl"
    assert ops.cli("revoke", *[a for u in users for a in ("--user", u.id)], "--journal", str(journal)).returncode == 0
    result = ops.cli("verify", "--journal", str(journal))
    assert result.returncode == 0, result.stderr
    assert "verified: 5;" in result.stdout
    # a journal claiming a revocation after the tenant's last one is not verified
    lines = journal.read_text().splitlines()
    forged = [json.loads(line) for line in lines]
    for record in forged:
        if record["type"] == "outcome" and record["id"] == users[0].id:
            record["sentAt"] = "2099-01-01T00:00:00.000000Z"
    from revoke_ops.journal import chain

    previous = ""  # the forger recomputes the chain: verify must still catch it from Graph's answer
    for record in forged:
        record.pop("hash")
        record["hash"] = previous = chain(previous, record)
    journal.write_text("\n".join(json.dumps(r) for r in forged) + "\n")
    result = ops.cli("verify", "--journal", str(journal), "--output", "json")
    assert result.returncode == 1
    body = json.loads(result.stdout)
    assert [(e["id"], e["verdict"]) for e in body["notVerified"]] == [(users[0].id, "not_revoked")]
    assert body["verdicts"] == {"accounted": 4, "not_revoked": 1, "failed": 0, "not_found": 0, "incomplete": 0}
    assert body["accountedFor"] is False


def test_doctor_reports_ok_and_explains_consent_replication(ops: Ops, sandbox, tmp_path: Path):
    result = ops.cli("doctor", "--output", "json")
    assert result.returncode == 0, result.stderr
    checks = {c["name"]: c for c in json.loads(result.stdout)}
    assert checks["token"]["status"] == "ok" and checks["graph"]["status"] == "ok"
    from tests.revoke_ops.conftest import FULL, write_bundle

    sandbox.settings(consentDelay=3600)
    try:
        fresh = sandbox.app("just-provisioned", app_roles=FULL)
        bundle = write_bundle(sandbox, fresh, tmp_path / "fresh.json")
        result = ops.cli("doctor", "--credentials", str(bundle))
    finally:
        sandbox.settings(consentDelay=0)
    assert result.returncode == 3
    assert "The role is granted but not yet in the token; this can take minutes after `pulumi up`" in result.stdout
    revoke = ops.cli("revoke", "--user", sandbox.sandbox.tenant.users[256].id, "--credentials", str(bundle))
    assert revoke.returncode == 0, "after replication the same bundle works"


def test_privileged_first_for_upn_targets_and_filtered_tenant_runs(ops: Ops):
    ordinary = [u for u in ops.run.sandbox.tenant.users[300:330] if u.user_type == "Member"][:8]
    before = len(ops.run.revocations())
    args = [a for u in ordinary for a in ("--user", u.user_principal_name)] + ["--user", f"admin.global@{DOMAIN}"]
    result = ops.cli("revoke", *args, "--yes", "--concurrency", "1")
    assert result.returncode == 0, result.stderr
    assert ops.revoked_ids(before)[0] == ops.user("admin.global").id, "the Global Administrator goes first"
    before = len(ops.run.revocations())
    result = ops.cli(
        "revoke",
        "--all-users",
        "--filter",
        "department eq 'IT'",
        "--yes",
        "--concurrency",
        "1",
        "--exclude",
        f"breakglass1@{DOMAIN}",
    )
    assert result.returncode == 0, result.stderr
    revoked = ops.revoked_ids(before)
    it_people = [u for u in ops.run.sandbox.tenant.users if u.department == "IT"]
    assert set(revoked) == {u.id for u in it_people}
    assert revoked[-1] == ops.user("operator").id, "the only IT user without a directory role goes after the admins"
