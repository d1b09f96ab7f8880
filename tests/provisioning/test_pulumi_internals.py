"""Canary: the private Pulumi internals the mock runner leans on are still there and still mean the same.

provisioning/mockrun.py, provisioning/mocks.py and provisioning/config.py use a few names that are
not part of Pulumi's public API (pyproject pins pulumi to one minor release for that reason). When
an upgrade moves one of them, this test fails first and names it, instead of the program tests
failing in some confusing way.
"""

from __future__ import annotations

import inspect
from contextvars import ContextVar

import pulumi
import pulumi.runtime
from pulumi.runtime import config as runtime_config
from pulumi.runtime import mocks as runtime_mocks
from pulumi.runtime import rpc, stack, sync_await
from pulumi.runtime.proto import alias_pb2, resource_pb2

from provisioning import mocks


def test_the_mock_runner_entry_points_exist_with_the_signatures_used():
    # mockrun.run_program: run_pulumi_func(callable) awaited with _sync_await.
    assert inspect.iscoroutinefunction(stack.run_pulumi_func), "pulumi.runtime.stack.run_pulumi_func moved"
    assert list(inspect.signature(stack.run_pulumi_func).parameters) == ["func"]
    assert callable(sync_await._sync_await), "pulumi.runtime.sync_await._sync_await moved"
    # set_mocks(..., preview=False, monitor=...) and the root stack's `outputs` dict.
    assert {"mocks", "project", "stack", "preview", "monitor"} <= set(
        inspect.signature(pulumi.runtime.set_mocks).parameters
    )
    assert callable(pulumi.runtime.get_root_resource)
    assert "self.outputs = {}" in inspect.getsource(stack.Stack.__init__), "Stack no longer keeps `outputs`"


def test_the_recording_monitor_sees_what_it_records():
    # RecordingMonitor overrides MockMonitor.RegisterResource and reads these request fields.
    assert issubclass(mocks.RecordingMonitor, runtime_mocks.MockMonitor)
    assert callable(runtime_mocks.MockMonitor.RegisterResource)
    fields = set(resource_pb2.RegisterResourceRequest.DESCRIPTOR.fields_by_name)
    assert {"type", "name", "parent", "protect", "aliases"} <= fields
    alias = alias_pb2.Alias(spec=alias_pb2.Alias.Spec(name="old"))
    assert alias.HasField("spec") and alias.spec.name == "old"
    # The mock monitor must still announce alias specs, or aliases arrive as URNs only.
    info = runtime_mocks.MockMonitor(mocks.ProviderMocks(mocks.MemoryDirectory())).GetDeploymentInfo(None)
    assert resource_pb2.RESOURCE_MONITOR_FEATURE_ALIAS_SPECS in info.supportedFeatures


def test_the_secret_wrapper_signature_is_the_one_unwrapped():
    assert rpc._special_sig_key == mocks._SIG_KEY
    assert rpc._special_secret_sig == mocks._SECRET_SIG


def test_the_config_internals_read_by_the_loader():
    # config.load_from_pulumi lists the keys a stack set (to refuse unknown ones) from these.
    assert isinstance(runtime_config.CONFIG, ContextVar)
    assert callable(runtime_config.get_config_env)


def test_the_mock_args_carry_the_fields_the_mocks_read():
    args = pulumi.runtime.MockResourceArgs(typ="t", name="n", inputs={}, provider=None, resource_id=None)
    assert (args.typ, args.name, args.inputs) == ("t", "n", {})
    call = pulumi.runtime.MockCallArgs(token="tok", args={"a": 1}, provider="")
    assert (call.token, call.args) == ("tok", {"a": 1})
