"""Run the real Pulumi program (``__main__.py``) under Pulumi's mock runtime.

Used by the tests (one fresh process per run: a second ``set_mocks`` in one process reuses the
first root stack) and by ``python -m sandbox apply``. Prints, as JSON, every registered resource
and the stack outputs with their secret flags::

    python -m provisioning.mockrun --stack sandbox [--config-json '{"revoke-sessions:cloud": ...}']
"""

from __future__ import annotations

import argparse
import json
import os
import runpy
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from provisioning.errors import ProvisioningError

__all__ = ["PROJECT_DIR", "ProgramResult", "run_program", "stack_config"]

PROJECT_DIR = Path(__file__).resolve().parent.parent
PROJECT = "revoke-sessions"


@dataclass
class ProgramResult:
    """What one program run registered and exported."""

    resources: list[dict[str, Any]]
    outputs: dict[str, Any]
    secret_outputs: list[str]

    def to_json(self) -> dict[str, Any]:
        return {"resources": self.resources, "outputs": self.outputs, "secretOutputs": self.secret_outputs}


def stack_config(stack: str, project_dir: Path = PROJECT_DIR) -> dict[str, str]:
    """Read ``stacks/Pulumi.<stack>.yaml`` into Pulumi's flat config map (``ns:key`` -> string).

    Structured values become JSON text, as the Pulumi CLI hands them to a program.

    :raises ProvisioningError: when the file is missing or holds an encrypted (``secure:``) value.
    """
    path = project_dir / "stacks" / f"Pulumi.{stack}.yaml"
    try:
        document = yaml.safe_load(path.read_text("utf-8")) or {}
    except OSError as err:
        raise ProvisioningError(f"no stack file for stack {stack!r}: {path} ({err.strerror})") from err
    flat: dict[str, str] = {}
    for key, value in (document.get("config") or {}).items():
        if isinstance(value, dict) and "secure" in value:
            raise ProvisioningError(f"{path}: {key} is encrypted; the mock runtime cannot decrypt it")
        if isinstance(value, str):
            flat[key] = value
        elif isinstance(value, bool):
            flat[key] = "true" if value else "false"
        else:
            flat[key] = json.dumps(value)
    return flat


def run_program(
    config: Mapping[str, str],
    *,
    stack: str,
    directory: Any = None,
    project_dir: Path = PROJECT_DIR,
) -> ProgramResult:
    """Run ``__main__.py`` once under the mock runtime (``preview=False``) and collect the result.

    Call at most once per process.

    :param config: Pulumi's flat config map (``revoke-sessions:permissionMode`` -> ``"both"``).
    :param directory: the :class:`~provisioning.mocks.Directory` resources are applied to
        (default: a fresh :class:`~provisioning.mocks.MemoryDirectory`).
    """
    os.environ["PULUMI_CONFIG"] = json.dumps(dict(config))
    import pulumi
    from pulumi.runtime.stack import run_pulumi_func
    from pulumi.runtime.sync_await import _sync_await

    from provisioning.mocks import MemoryDirectory, ProviderMocks, RecordingMonitor

    mocks = ProviderMocks(directory if directory is not None else MemoryDirectory())
    monitor = RecordingMonitor(mocks)
    pulumi.runtime.set_mocks(mocks, project=PROJECT, stack=stack, preview=False, monitor=monitor)
    cwd = Path.cwd()
    os.chdir(project_dir)
    try:
        program = str(project_dir / "__main__.py")

        def run() -> None:
            runpy.run_path(program, run_name="__main__")

        _sync_await(run_pulumi_func(run))
    finally:
        os.chdir(cwd)

    root = pulumi.runtime.get_root_resource()
    outputs: dict[str, Any] = {}
    secrets: list[str] = []

    async def resolve() -> None:
        for name, value in getattr(root, "outputs", {}).items():
            out = pulumi.Output.from_input(value)
            outputs[name] = await out.future()
            if await out.is_secret():
                secrets.append(name)

    _sync_await(resolve())
    resources = [
        {"type": r.type, "name": r.name, "inputs": r.inputs, "outputs": r.outputs, "options": r.options}
        for r in mocks.resources
    ]
    return ProgramResult(resources, outputs, sorted(secrets))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m provisioning.mockrun", description=__doc__.splitlines()[0])
    parser.add_argument("--stack", required=True, help="stack name; its stacks/Pulumi.<stack>.yaml is read")
    parser.add_argument("--no-stack-file", action="store_true", help="start from an empty config instead")
    parser.add_argument("--config-json", default="{}", help="flat config entries that override the stack file")
    parser.add_argument(
        "--project-dir", type=Path, default=PROJECT_DIR, help="directory holding __main__.py and stacks/"
    )
    args = parser.parse_args(argv)
    try:
        config = {} if args.no_stack_file else stack_config(args.stack, args.project_dir)
        config.update(json.loads(args.config_json))
        result = run_program(config, stack=args.stack, project_dir=args.project_dir.resolve())
    except ProvisioningError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except Exception as err:  # noqa: BLE001  # the program's own failure, reported like `pulumi up` does
        print(f"error: {type(err).__name__}: {err}", file=sys.stderr)
        return 1
    json.dump(result.to_json(), sys.stdout, indent=2, default=str)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
