"""``python -m sandbox apply``: run the real Pulumi program against a running sandbox.

The program runs under Pulumi's mock runtime in a fresh subprocess; the provisioning package's
:class:`~provisioning.mocks.ProviderMocks` applies every azuread resource through the sandbox's
Graph endpoints (this module's :class:`GraphDirectory`), signed in as the sandbox's deployer app,
the way the azuread provider applies them to Microsoft Graph. The result is exactly the JSON
``pulumi stack output --json --show-secrets`` would print.
"""

from __future__ import annotations

import json
import os
import ssl
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx

PROJECT_DIR = Path(__file__).resolve().parent.parent


#: the child's stderr line before its error report (what follows it is shown in full)
FAILED_MARKER = "sandbox apply: the program failed:"


class ApplyError(Exception):
    """Applying the stack to the sandbox failed."""


def needed_permission(method: str, path: str) -> str:
    """What the deployer needs for one of the provider's calls (Graph's API pages, least privileged)."""
    parts = [p for p in path.split("/") if p]
    if parts[-1:] == ["appRoleAssignedTo"]:
        return "AppRoleAssignment.ReadWrite.All and Application.Read.All (or Directory.Read.All)"
    if parts[:1] == ["oauth2PermissionGrants"]:
        return "DelegatedPermissionGrant.ReadWrite.All"
    if parts[-1:] == ["$ref"]:
        return "Application.ReadWrite.OwnedBy and Directory.Read.All"
    if method == "GET":
        return "Application.Read.All or Directory.Read.All"
    return "Application.ReadWrite.OwnedBy (on applications it created) or Application.ReadWrite.All"


class GraphDirectory:
    """The azuread provider's Graph calls, made over HTTPS to the sandbox as the deployer app."""

    def __init__(self, info: dict[str, Any]) -> None:
        from azure.identity import CertificateCredential

        self.tenant_id: str = info["tenantId"]
        deployer = info["deployer"]
        self.credential = CertificateCredential(
            self.tenant_id,
            deployer["clientId"],
            certificate_path=deployer["certificatePath"],
            authority=info["authorityHost"],
            disable_instance_discovery=True,
            connection_verify=info["caBundle"],
        )
        self.scope: str = info["graphScope"]
        self.deployer_client_id: str = deployer["clientId"]
        tls = ssl.create_default_context(cafile=info["caBundle"])
        self.http = httpx.Client(base_url=info["graphEndpoint"], verify=tls, timeout=30)
        self.created: list[dict[str, str]] = []

    def _call(self, method: str, path: str, body: Any = None, params: dict[str, str] | None = None) -> Any:
        token = self.credential.get_token(self.scope).token
        response = self.http.request(
            method, path, json=body, params=params, headers={"Authorization": f"Bearer {token}"}
        )
        if response.status_code >= 400:
            try:
                error = response.json()["error"]
                detail = f"{error['code']}: {error['message']}"
            except (ValueError, KeyError):
                detail = response.text[:200]
            needs = f"; the deployer needs {needed_permission(method, path)}" if response.status_code == 403 else ""
            raise ApplyError(f"{method} {path} -> {response.status_code} {detail}{needs}")
        return response.json() if response.content else None

    def caller(self) -> dict[str, str]:
        sp = self.service_principal_by_app_id(self.deployer_client_id)
        return {"clientId": self.deployer_client_id, "objectId": sp["id"] if sp else ""}

    def service_principal_by_app_id(self, app_id: str) -> dict[str, Any] | None:
        found = self._call("GET", "/servicePrincipals", params={"$filter": f"appId eq '{app_id}'"})["value"]
        return found[0] if found else None

    def applications_named(self, display_name: str) -> list[dict[str, Any]]:
        escaped = display_name.replace("'", "''")
        return list(self._call("GET", "/applications", params={"$filter": f"displayName eq '{escaped}'"})["value"])

    def create_application(self, body: dict[str, Any], owners: list[str]) -> dict[str, Any]:
        app: dict[str, Any] = self._call("POST", "/applications", body)
        self.created.append({"kind": "application", "id": app["id"]})
        for owner in owners:
            self._owner("applications", app["id"], owner)
        return app

    def _owner(self, collection: str, object_id: str, owner: str) -> None:
        ref = {"@odata.id": f"{self.http.base_url}/directoryObjects/{owner}"}
        self._call("POST", f"/{collection}/{object_id}/owners/$ref", ref)

    def add_key_credential(self, application_id: str, credential: dict[str, Any]) -> dict[str, Any]:
        # Like the provider: read the current credentials, PATCH the whole list with the new one.
        app = self._call("GET", f"/applications/{application_id}")
        existing = [{"keyId": kc["keyId"], "key": None} for kc in app.get("keyCredentials", [])]
        self._call("PATCH", f"/applications/{application_id}", {"keyCredentials": [*existing, credential]})
        after = self._call("GET", f"/applications/{application_id}")["keyCredentials"]
        known = {kc["keyId"] for kc in existing}
        new = [kc for kc in after if kc["keyId"] not in known]
        if len(new) != 1:
            raise ApplyError(f"expected one new key credential on application {application_id}, found {len(new)}")
        return dict(new[0])

    def add_federated_credential(self, application_id: str, body: dict[str, Any]) -> dict[str, Any]:
        return dict(self._call("POST", f"/applications/{application_id}/federatedIdentityCredentials", body))

    def create_service_principal(self, body: dict[str, Any], owners: list[str]) -> dict[str, Any]:
        sp: dict[str, Any] = self._call("POST", "/servicePrincipals", body)
        for owner in owners:
            self._owner("servicePrincipals", sp["id"], owner)
        return sp

    def create_app_role_assignment(self, resource_id: str, body: dict[str, Any]) -> dict[str, Any]:
        return dict(self._call("POST", f"/servicePrincipals/{resource_id}/appRoleAssignedTo", body))

    def create_oauth2_permission_grant(self, body: dict[str, Any]) -> dict[str, Any]:
        grant = {k: v for k, v in body.items() if v is not None}
        return dict(self._call("POST", "/oauth2PermissionGrants", grant))

    def delete_application(self, object_id: str) -> None:
        try:
            self._call("DELETE", f"/applications/{object_id}")
        except ApplyError as err:
            if "-> 404" not in str(err):
                raise


def sandbox_config(info: dict[str, Any], stack: str, project_dir: Path = PROJECT_DIR) -> dict[str, str]:
    """The stack's config with the live sandbox endpoints as its custom cloud settings."""
    from provisioning.mockrun import stack_config

    config = stack_config(stack, project_dir)
    config.update(
        {
            "azuread:tenantId": info["tenantId"],
            "revoke-sessions:cloud": "custom",
            "revoke-sessions:authorityHost": info["authorityHost"],
            "revoke-sessions:graphEndpoint": info["graphEndpoint"],
            "revoke-sessions:graphScope": info["graphScope"],
        }
    )
    return config


def run_in_subprocess(state_dir: Path, stack: str, project_dir: Path = PROJECT_DIR) -> dict[str, Any]:
    """The child process: apply the program to the sandbox, print the run result as JSON.

    The result's ``replaced`` lists the applications of a previous apply of the stack that were deleted.
    """
    from provisioning.mockrun import run_program

    info = json.loads((state_dir / "sandbox.json").read_text())
    directory = GraphDirectory(info)
    record = state_dir / f"applied-{stack}.json"
    replaced: list[str] = []
    if record.exists():
        # Applying again replaces what the previous apply created (the caller says so).
        for item in json.loads(record.read_text()):
            if item["kind"] == "application":
                directory.delete_application(item["id"])
                replaced.append(item["id"])
        record.unlink()
    try:
        result = run_program(
            sandbox_config(info, stack, project_dir), stack=stack, directory=directory, project_dir=project_dir
        )
    finally:
        record.write_text(json.dumps(directory.created))
    return {**result.to_json(), "replaced": replaced}


def apply(
    state_dir: Path,
    stack: str,
    out: Path,
    project_dir: Path = PROJECT_DIR,
    *,
    replaced: list[str] | None = None,
) -> dict[str, Any]:
    """Apply ``stacks/Pulumi.<stack>.yaml`` to the running sandbox of ``state_dir``; write the bundle.

    :param replaced: receives the object ids of a previous apply's applications, which were deleted.
    :raises ApplyError: when the sandbox is not running or the program fails (its whole message kept:
        every problem of a bad stack config).
    """
    info_path = state_dir / "sandbox.json"
    if not info_path.exists():
        raise ApplyError(
            f"no running sandbox in {state_dir}: start one with `python -m sandbox serve --state-dir {state_dir}`"
        )
    info = json.loads(info_path.read_text())
    env = {**os.environ, "SSL_CERT_FILE": info["caBundle"], "REQUESTS_CA_BUNDLE": info["caBundle"]}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(PROJECT_DIR), env.get("PYTHONPATH")]))
    proc = subprocess.run(  # noqa: S603  # our own interpreter and module
        [
            sys.executable,
            "-m",
            "sandbox",
            "_apply-child",
            "--state-dir",
            str(state_dir),
            "--stack",
            stack,
            "--project-dir",
            str(project_dir),
        ],
        capture_output=True,
        text=True,
        env=env,
        cwd=PROJECT_DIR,
        check=False,
        timeout=300,
    )
    if proc.returncode != 0:
        text = proc.stderr.strip()
        if FAILED_MARKER in text:
            raise ApplyError(text.rsplit(FAILED_MARKER, 1)[1].strip())
        raise ApplyError(text.splitlines()[-1] if text else "the program failed")
    result = json.loads(proc.stdout)
    if replaced is not None:
        replaced.extend(result.get("replaced", []))
    outputs: dict[str, Any] = result["outputs"]
    fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        json.dump(outputs, handle, indent=2)
        handle.write("\n")
    out.chmod(0o600)
    return outputs
