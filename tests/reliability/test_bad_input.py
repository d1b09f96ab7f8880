"""Bad input never crashes: a clear error naming where, and nothing sent (property-based)."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from provisioning.config import load
from provisioning.errors import StackConfigError
from revoke_ops.bundle import parse_bundle
from revoke_ops.errors import InputError
from revoke_ops.targets import TargetFile, validate_files
from tests.revoke_ops.test_bundle import BUNDLE

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
