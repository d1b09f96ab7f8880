"""A stand-in ``pulumi`` executable for testing the acceptance harness without the Pulumi CLI.

It implements only the commands the harness runs, with the real CLI's argument shapes and its
refusals that matter here (non-interactive without a passphrase; ``stack rm`` of a stack that still
has resources). ``up`` applies the stack to the running sandbox with the real program
(``python -m sandbox apply``), ``destroy`` deletes what that apply created. Every invocation is
appended to ``$FAKE_PULUMI_LOG`` (one JSON argv per line); ``FAKE_PULUMI_FAIL=<command>[,<command>]`` makes
those commands (``up``, ``destroy``, ``stack rm``...) fail as a provider error would.

Environment: ``FAKE_PULUMI_SANDBOX`` (the sandbox's state dir), ``FAKE_PULUMI_ROOT`` (checkout),
``PULUMI_BACKEND_URL`` (``file://`` directory).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yaml


def fail(message: str, code: int = 255) -> int:
    print(f"error: {message}", file=sys.stderr)
    return code


def option(args: list[str], name: str) -> str:
    return args[args.index(name) + 1]


def set_path(config: dict[str, Any], key: str, value: str, path: bool) -> None:
    """``ns:key`` or, with --path, ``ns:key[0]`` (the only path form the harness uses)."""
    if path and key.endswith("]"):
        name, index = key[:-1].split("[")
        items = config.setdefault(name, [])
        while len(items) <= int(index):
            items.append(None)
        items[int(index)] = value
    else:
        config[key] = value


def main(argv: list[str]) -> int:
    with open(os.environ["FAKE_PULUMI_LOG"], "a", encoding="utf-8") as log:
        log.write(json.dumps(argv) + "\n")
    args = [a for a in argv if a != "--non-interactive"]
    command = " ".join(args[:2]) if args[0] in ("stack", "config") else args[0]
    if command in os.environ.get("FAKE_PULUMI_FAIL", "").split(","):
        return fail(f"{command} failed (FAKE_PULUMI_FAIL)")
    backend = Path(urlsplit(os.environ["PULUMI_BACKEND_URL"]).path)
    backend.mkdir(parents=True, exist_ok=True)
    project = Path.cwd()
    if command == "stack init":
        stack = args[2]
        if not os.environ.get("PULUMI_CONFIG_PASSPHRASE"):
            return fail("passphrase must be set with PULUMI_CONFIG_PASSPHRASE or PULUMI_CONFIG_PASSPHRASE_FILE")
        (project / "stacks" / f"Pulumi.{stack}.yaml").write_text(yaml.safe_dump({"encryptionsalt": "v1:fake"}))
        (backend / f"{stack}.json").write_text(json.dumps({"resources": False}))
        return 0
    stack = option(args, "--stack") if "--stack" in args else args[2]
    record = backend / f"{stack}.json"
    if not record.exists():
        return fail(f"no stack named '{stack}' found")
    state = json.loads(record.read_text())
    stack_file = project / "stacks" / f"Pulumi.{stack}.yaml"
    if command == "config set":
        key, value = [a for a in args[2:] if not a.startswith("--") and a != stack][-2:]
        document = yaml.safe_load(stack_file.read_text()) or {}
        set_path(document.setdefault("config", {}), key, value, "--path" in args)
        stack_file.write_text(yaml.safe_dump(document))
        return 0
    root = os.environ["FAKE_PULUMI_ROOT"]
    env = {**os.environ, "PYTHONPATH": root}
    sandbox = os.environ["FAKE_PULUMI_SANDBOX"]
    if command == "up":
        outputs = backend / f"{stack}.outputs.json"
        apply = [sys.executable, "-m", "sandbox", "apply", "--state-dir", sandbox, "--stack", stack]
        apply += ["--out", str(outputs), "--project-dir", str(project)]
        result = subprocess.run(apply, cwd=root, env=env, capture_output=True, text=True, check=False)
        if result.returncode != 0:
            return fail(result.stderr.strip())
        state["resources"] = True
    elif command == "preview":
        # FAKE_PULUMI_PREVIEW_DIFF: the diff a real preview would print; with --expect-no-changes
        # the CLI then fails with its own message.
        diff = os.environ.get("FAKE_PULUMI_PREVIEW_DIFF", "")
        sys.stdout.write(diff + "\n" if diff else "Resources:\n    unchanged\n")
        if diff and "--expect-no-changes" in args:
            return fail("no changes were expected but changes were proposed")
        return 0
    elif command == "stack output":
        sys.stdout.write((backend / f"{stack}.outputs.json").read_text())
        return 0
    elif command == "destroy":
        applied = Path(sandbox) / f"applied-{stack}.json"
        if applied.exists():
            code = (
                "import json, sys, pathlib\n"
                "from sandbox.apply import GraphDirectory\n"
                "info = json.loads(pathlib.Path(sys.argv[1], 'sandbox.json').read_text())\n"
                "directory = GraphDirectory(info)\n"
                "for item in json.loads(pathlib.Path(sys.argv[2]).read_text()):\n"
                "    if item['kind'] == 'application':\n"
                "        directory.delete_application(item['id'])\n"
            )
            result = subprocess.run(
                [sys.executable, "-c", code, sandbox, str(applied)], cwd=root, env=env, capture_output=True, text=True
            )
            if result.returncode != 0:
                return fail(result.stderr.strip())
            applied.unlink()
        (backend / f"{stack}.outputs.json").unlink(missing_ok=True)
        state["resources"] = False
    elif command == "stack rm":
        if state["resources"]:
            return fail(f"'{stack}' still has resources; removal rejected. Use --force to override")
        record.unlink()
        stack_file.unlink(missing_ok=True)
        return 0
    else:
        return fail(f"the fake pulumi does not implement {command!r}")
    record.write_text(json.dumps(state))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
