"""The benchmarks' own Graph reads (bench.bench.graph_pages): signed in with the bundle's certificate,
every page followed, errors raised rather than read as data."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest

from bench.bench import graph_pages
from tests.sandbox.conftest import AppCredentials, Running


def _bundle(sandbox: Running, creds: AppCredentials, path: Path) -> Path:
    key, cert = creds.pem.decode().split("-----BEGIN CERTIFICATE-----")
    bundle = {
        "tenantId": sandbox.info["tenantId"],
        "clientId": creds.client_id,
        "privateKeyPem": key,
        "certificatePem": "-----BEGIN CERTIFICATE-----" + cert,
        "authorityHost": sandbox.info["authorityHost"],
        "graphScope": sandbox.info["graphScope"],
        "graphEndpoint": sandbox.info["graphEndpoint"],
    }
    path.write_text(json.dumps(bundle))
    path.chmod(0o600)
    return path


def test_graph_pages_follows_every_page_as_the_bundles_app(sandbox: Running, tmp_path: Path):
    bundle = _bundle(sandbox, sandbox.app("bench-reader", app_roles=("User.Read.All",)), tmp_path / "b.json")
    pages = list(graph_pages(bundle, sandbox.ca, "users?$select=id&$top=400"))
    assert [len(p) for p in pages[:-1]] == [400] * (len(pages) - 1) and len(pages) > 1
    assert sorted(u["id"] for p in pages for u in p) == sorted(u.id for u in sandbox.sandbox.tenant.users)


def test_graph_pages_raises_on_a_refusal(sandbox: Running, tmp_path: Path):
    bundle = _bundle(sandbox, sandbox.app("bench-no-read"), tmp_path / "b.json")
    with pytest.raises(httpx.HTTPStatusError, match="403"):
        next(graph_pages(bundle, sandbox.ca, "users?$select=id"))
