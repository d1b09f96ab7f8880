"""No core dumps of a process that holds the key, tokens and assertions (issue 10 #9)."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

# Runs the real CLI entry point in a fresh interpreter, then reports what the kernel says about the
# process: the core-file limit and its dumpable flag (prctl's PR_GET_DUMPABLE).
PROBE = textwrap.dedent(
    """
    import ctypes, ctypes.util, json, resource, sys
    from revoke_ops.cli import main
    try:
        main(sys.argv[1:])
    except SystemExit:
        pass
    libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    PR_GET_DUMPABLE = 3
    dumpable = libc.prctl(PR_GET_DUMPABLE, 0, 0, 0, 0)
    print(json.dumps({"core": resource.getrlimit(resource.RLIMIT_CORE), "dumpable": dumpable}))
    """
)


def probe(*args: str) -> dict[str, object]:
    import json

    result = subprocess.run(
        [sys.executable, "-c", PROBE, *args], capture_output=True, text=True, timeout=120, check=False
    )
    return dict(json.loads(result.stdout.strip().splitlines()[-1]))


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="prctl is Linux's")
def test_the_cli_turns_core_dumps_off_at_start_up(tmp_path):
    # A command that fails early (no such bundle) still hardened the process first.
    seen = probe("doctor", "--credentials", str(tmp_path / "missing.json"))
    assert seen == {"core": [0, 0], "dumpable": 0}


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="prctl is Linux's")
def test_allow_core_dumps_leaves_the_process_alone(tmp_path):
    import resource

    seen = probe("doctor", "--allow-core-dumps", "--credentials", str(tmp_path / "missing.json"))
    assert seen["dumpable"] == 1
    assert seen["core"] == list(resource.getrlimit(resource.RLIMIT_CORE))
