"""Bad input never crashes: a clear error naming where, and nothing sent (property-based).

The validators are exercised directly (many examples, fast) and through the real ``revoke-ops``
command against the sandbox tenant (fewer examples): there, every generated file also names one
real user, so "nothing changed in the tenant" is observable — a refused file revokes nobody, an
accepted one revokes that user.
"""

from __future__ import annotations

import io
import json
import tempfile
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path
from typing import Any

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from provisioning.config import load
from provisioning.errors import StackConfigError
from revoke_ops.bundle import parse_bundle
from revoke_ops.cli import main
from revoke_ops.errors import InputError
from revoke_ops.targets import TargetFile, validate_files
from tests.revoke_ops.conftest import FULL, Ops, write_bundle
from tests.revoke_ops.test_bundle import BUNDLE
from tests.sandbox.conftest import Running, sandbox  # noqa: F401  # the fixture

lines = st.lists(
    st.one_of(
        st.text(max_size=60),
        st.uuids().map(str),
        st.emails(),
        st.sampled_from(["", "# comment", "id,upn", "\ufeffid", "a,b,c", "  ", "user@", "@x.com"]),
    ),
    max_size=30,
)


@settings(max_examples=150, deadline=None)
@given(content=lines)
def test_target_files_validate_or_name_the_line(content: list[str]):
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "targets.txt"
        path.write_text("\n".join(line.replace("\r", "") for line in content), encoding="utf-8")
        try:
            count, duplicates = validate_files([TargetFile.open(str(path))], [])
        except InputError as err:
            assert f"{path}:" in str(err) or "UTF-8" in str(err)
        else:
            assert count >= 0 and duplicates >= 0


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4),
    max_leaves=10,
)


@settings(max_examples=150, deadline=None)
@given(changes=st.dictionaries(st.sampled_from([*sorted(BUNDLE), "privateKeyPem", "extra"]), json_values, max_size=4))
def test_bundles_are_valid_or_an_input_error(changes: dict[str, Any]):
    document = {**BUNDLE, **changes}
    try:
        parse_bundle(document, "b.json")
    except InputError as err:
        assert "b.json" in str(err)
        assert "BEGIN" not in str(err)


@settings(max_examples=150, deadline=None)
@given(
    raw=st.dictionaries(
        st.sampled_from(
            [
                "permissionMode",
                "readPermissions",
                "protect",
                "cloud",
                "certificates",
                "owners",
                "operatorsGroup",
                "graphEndpoint",
                "displayName",
                "typo",
            ]
        ),
        json_values.map(json.dumps) | st.text(max_size=30),
        max_size=5,
    )
)
def test_stack_config_is_valid_or_one_clear_error(raw: dict[str, str]):
    try:
        load(raw, azuread={"tenantId": "5a1db0c5-0000-4000-8000-00000000beef"}, environ={})
    except StackConfigError as err:
        assert all(
            line.strip().startswith(("revoke-sessions:", "azuread:", "-")) or "problems" in line
            for line in str(err).splitlines()
        )


# -- through the real command, against the sandbox tenant ------------------------------------


@pytest.fixture(scope="module")
def ops(sandbox: Running, tmp_path_factory: pytest.TempPathFactory) -> Ops:  # noqa: F811
    creds = sandbox.app("bad-input-end-to-end", app_roles=FULL)
    return Ops(sandbox, creds, write_bundle(sandbox, creds, tmp_path_factory.mktemp("bad-input") / "bundle.json"))


def revoke_ops(*argv: str) -> tuple[int, str]:
    """``revoke-ops ARGV`` in this process (the command's own entry point); exit code and stderr."""
    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        code = main(list(argv))
    return code, err.getvalue()


def victim(ops: Ops) -> str:
    return next(u.id for u in reversed(ops.run.sandbox.tenant.users) if u.user_type == "Member")


def assert_no_crash(code: int, err: str) -> None:
    assert "revoke-ops: error: unexpected " not in err and "Traceback" not in err, err
    assert code in (0, 1, 2, 3, 4), (code, err)  # 4: Graph unreachable or failing, nothing changed


@pytest.mark.slow
@settings(max_examples=25, deadline=None)
@given(content=lines, at=st.integers(min_value=0, max_value=30))
def test_a_refused_target_file_changes_nothing_in_the_tenant(ops: Ops, content: list[str], at: int):
    real = victim(ops)
    content = [line.replace("\r", "") for line in content]
    content.insert(min(at, len(content)), real)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "targets.txt"
        path.write_text("\n".join(content), encoding="utf-8")
        before = len(ops.run.revocations())
        code, err = revoke_ops(
            "revoke", "--credentials", str(ops.bundle), "--from-file", str(path), "--yes", "--journal", f"{tmp}/j"
        )
        revoked = ops.revoked_ids(before)
    assert_no_crash(code, err)
    if code == 2:
        assert f"{path}:" in err, err  # names the file and line
        assert revoked == [], "a refused file revoked somebody"
    else:
        assert real in revoked, err


bundle_values = json_values | st.uuids().map(str) | st.sampled_from(["https://127.0.0.1:1", "public", "usgovernment"])


@pytest.mark.slow
@settings(max_examples=25, deadline=None)
@given(changes=st.dictionaries(st.sampled_from([*sorted(BUNDLE), "privateKeyPem", "extra"]), bundle_values, max_size=3))
@example(changes={"authorityHost": "https://127.0.0.1:1"})  # nothing listens there
@example(changes={"graphEndpoint": "https://127.0.0.1:1/v1.0"})
@example(changes={"authorityHost": "https://127.0.0.1:1", "applicationObjectId": "x"})  # refused before any call
def test_a_refused_bundle_changes_nothing_in_the_tenant(ops: Ops, changes: dict[str, Any]):
    real = victim(ops)
    document = {**json.loads(ops.bundle.read_text()), **changes}
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "bundle.json"
        path.write_text(json.dumps(document))
        path.chmod(0o600)
        before = len(ops.run.revocations())
        code, err = revoke_ops(
            "revoke", "--credentials", str(path), "--user", real, "--yes", "--journal", f"{tmp}/j", "--timeout", "5"
        )
        revoked = ops.revoked_ids(before)
    assert_no_crash(code, err)
    assert "BEGIN" not in err, "an error must not echo key material"
    if code == 0:
        assert revoked == [real], err
    else:
        # Refused (2: invalid, 3: no token, 4: the identity platform unreachable) or, for endpoints
        # nothing answers at, 1 after the reads failed: a clear error either way, and nobody revoked.
        assert err.startswith("revoke-ops: error: "), err
        assert revoked == [], "a refused bundle revoked somebody"
    # When the rest of the bundle is valid (not refused with 2), an endpoint nothing answers at is named.
    if code != 2 and changes.get("authorityHost") == "https://127.0.0.1:1":
        assert code == 4 and "could not reach the identity platform at https://127.0.0.1:1" in err, err
    elif code != 2 and changes.get("graphEndpoint") == "https://127.0.0.1:1/v1.0":
        assert "check the Graph endpoint https://127.0.0.1:1/v1.0" in err, err
