"""The directory the provider emulation writes to: Graph-shaped operations and an in-memory one.

:class:`Directory` is what the azuread provider does to Microsoft Graph for this program;
:class:`MemoryDirectory` implements it for unit tests (the sandbox's ``GraphDirectory`` implements it
over HTTPS). What Graph itself does with the request is emulated here: a key credential is stored
with UTC times and its thumbprint, a service principal's tags include its application's.
"""

from __future__ import annotations

import base64
import binascii
import itertools
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from revoke_ops.facts import (
    DISABLE_PERMISSION,
    GRAPH_APP_ID,
    READ_PERMISSIONS,
    REVOKE_PERMISSION,
    parse_rfc3339,
    rfc3339,
    thumbprint,
)

__all__ = [
    "Directory",
    "DirectoryError",
    "MemoryDirectory",
    "graph_key_credential",
    "graph_service_principal",
]


class DirectoryError(Exception):
    """A directory operation failed the way the provider would report it."""


class Directory(Protocol):
    """The Graph-shaped operations the azuread provider performs for this program.

    Bodies and results are Microsoft Graph JSON objects (camelCase, as on the wire).
    """

    tenant_id: str

    def caller(self) -> dict[str, str]:
        """The identity running ``up``: ``clientId`` and ``objectId``."""

    def service_principal_by_app_id(self, app_id: str) -> dict[str, Any] | None:
        """GET /servicePrincipals?$filter=appId eq '{app_id}' (first match or None)."""

    def applications_named(self, display_name: str) -> list[dict[str, Any]]:
        """GET /applications?$filter=displayName eq '{display_name}'."""

    def create_application(self, body: dict[str, Any], owners: list[str]) -> dict[str, Any]:
        """POST /applications, then add each owner (owners/$ref)."""

    def add_key_credential(self, application_id: str, credential: dict[str, Any]) -> dict[str, Any]:
        """Add one keyCredential to the application (PATCH keyCredentials)."""

    def add_federated_credential(self, application_id: str, body: dict[str, Any]) -> dict[str, Any]:
        """POST a federatedIdentityCredential to the application; return it as Graph answers (with ``id``)."""

    def create_service_principal(self, body: dict[str, Any], owners: list[str]) -> dict[str, Any]:
        """POST /servicePrincipals, then add each owner."""

    def create_app_role_assignment(self, resource_id: str, body: dict[str, Any]) -> dict[str, Any]:
        """POST /servicePrincipals/{resource_id}/appRoleAssignedTo."""

    def create_oauth2_permission_grant(self, body: dict[str, Any]) -> dict[str, Any]:
        """POST /oauth2PermissionGrants."""


def graph_service_principal(object_id: str) -> dict[str, Any]:
    """The Microsoft Graph service principal as Graph returns it, with the ids this project uses."""
    permissions = [REVOKE_PERMISSION, *READ_PERMISSIONS.values(), DISABLE_PERMISSION]
    return {
        "id": object_id,
        "appId": GRAPH_APP_ID,
        "displayName": "Microsoft Graph",
        "servicePrincipalType": "Application",
        "appRoleAssignmentRequired": False,
        "appRoles": [
            {
                "id": p.role_id,
                "value": p.name,
                "allowedMemberTypes": ["Application"],
                "displayName": p.name,
                "description": p.used_for,
                "isEnabled": True,
            }
            for p in permissions
            if p.role_id
        ],
        "oauth2PermissionScopes": [
            {
                "id": p.scope_id,
                "value": p.name,
                "type": "Admin",
                "adminConsentDisplayName": p.name,
                "adminConsentDescription": p.used_for,
                "isEnabled": True,
            }
            for p in permissions
            if p.scope_id
        ],
    }


@dataclass
class MemoryDirectory:
    """An in-memory directory for unit tests: holds what the program created, nothing else."""

    tenant_id: str = "00000000-0000-4000-8000-000000000001"
    caller_object_id: str = "00000000-0000-4000-8000-00000000c0de"
    graph_sp_id: str = "00000000-0000-4000-8000-0000000067a9"
    objects: dict[str, dict[str, Any]] = field(default_factory=dict)
    assignments: list[dict[str, Any]] = field(default_factory=list)
    grants: list[dict[str, Any]] = field(default_factory=list)
    #: extra application display names that already exist in the tenant
    existing_app_names: set[str] = field(default_factory=set)
    _ids: itertools.count[int] = field(default_factory=lambda: itertools.count(1))
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self) -> None:
        self.objects[self.graph_sp_id] = graph_service_principal(self.graph_sp_id)

    def _new_id(self) -> str:
        with self._lock:
            return str(uuid.UUID(int=(0xABCD << 96) + next(self._ids)))

    def caller(self) -> dict[str, str]:
        return {"clientId": "04b07795-8ddb-461a-bbee-02f9e1bf7b46", "objectId": self.caller_object_id}

    def service_principal_by_app_id(self, app_id: str) -> dict[str, Any] | None:
        return next((o for o in self.objects.values() if o.get("appId") == app_id and "appRoles" in o), None)

    def applications_named(self, display_name: str) -> list[dict[str, Any]]:
        found = [
            o for o in self.objects.values() if o.get("@kind") == "application" and o["displayName"] == display_name
        ]
        if display_name in self.existing_app_names:
            found.append({"id": "pre-existing", "displayName": display_name})
        return found

    def create_application(self, body: dict[str, Any], owners: list[str]) -> dict[str, Any]:
        app = {**body, "@kind": "application", "id": self._new_id(), "appId": self._new_id(), "owners": owners}
        app.setdefault("keyCredentials", [])
        self.objects[app["id"]] = app
        return app

    def add_key_credential(self, application_id: str, credential: dict[str, Any]) -> dict[str, Any]:
        app = self.objects.get(application_id)
        if app is None:
            raise DirectoryError(f"application {application_id} was not found")
        stored = graph_key_credential(credential, self._new_id)
        app["keyCredentials"].append(stored)
        return stored

    def add_federated_credential(self, application_id: str, body: dict[str, Any]) -> dict[str, Any]:
        app = self.objects.get(application_id)
        if app is None:
            raise DirectoryError(f"application {application_id} was not found")
        stored = {**body, "id": self._new_id()}
        app.setdefault("federatedIdentityCredentials", []).append(stored)
        return stored

    def create_service_principal(self, body: dict[str, Any], owners: list[str]) -> dict[str, Any]:
        app = next((o for o in self.objects.values() if o.get("appId") == body["appId"]), None)
        if app is None:
            raise DirectoryError(f"no application with appId {body['appId']}")
        sp = {
            **body,
            "@kind": "servicePrincipal",
            "id": self._new_id(),
            "displayName": app["displayName"],
            # Graph merges the application's tags into its service principal's.
            "tags": _union(body.get("tags", []), app.get("tags", [])),
            "owners": owners,
            "appRoles": [],
            "oauth2PermissionScopes": [],
        }
        self.objects[sp["id"]] = sp
        return sp

    def create_app_role_assignment(self, resource_id: str, body: dict[str, Any]) -> dict[str, Any]:
        if resource_id not in self.objects:
            raise DirectoryError(f"resource service principal {resource_id} was not found")
        assignment = {**body, "resourceId": resource_id, "id": self._new_id()}
        self.assignments.append(assignment)
        return assignment

    def create_oauth2_permission_grant(self, body: dict[str, Any]) -> dict[str, Any]:
        grant = {**body, "id": self._new_id()}
        self.grants.append(grant)
        return grant


def _union(first: list[str], second: list[str]) -> list[str]:
    return [*first, *(t for t in second if t not in first)]


def _certificate_from_key(key: str) -> x509.Certificate:
    """Graph's reading of a key credential's ``key``: base64 of DER, or of a PEM certificate."""
    try:
        data = base64.b64decode(key, validate=True)
        if data.lstrip().startswith(b"-----BEGIN"):
            return x509.load_pem_x509_certificate(data)
        return x509.load_der_x509_certificate(data)
    except (binascii.Error, ValueError, TypeError):
        raise DirectoryError("Invalid certificate: key value is invalid.") from None


def graph_key_credential(credential: dict[str, Any], new_id: Callable[[], str]) -> dict[str, Any]:
    """A keyCredential as Graph stores it: UTC times, the thumbprint as customKeyIdentifier."""
    cert = _certificate_from_key(str(credential.get("key")))
    try:
        start = parse_rfc3339(credential["startDateTime"]) if credential.get("startDateTime") else None
        end = parse_rfc3339(credential["endDateTime"]) if credential.get("endDateTime") else None
    except ValueError as err:
        raise DirectoryError(f"Invalid keyCredential date: {err}") from None
    if end is not None and end > cert.not_valid_after_utc:
        raise DirectoryError("Key credential end date is invalid: it is after the certificate's notAfter")
    return {
        "keyId": credential.get("keyId") or new_id(),
        "type": credential.get("type", "AsymmetricX509Cert"),
        "usage": credential.get("usage", "Verify"),
        "key": base64.b64encode(cert.public_bytes(serialization.Encoding.DER)).decode(),
        # Graph: "When not provided in the payload, defaults to the thumbprint of the certificate."
        "customKeyIdentifier": credential.get("customKeyIdentifier")
        or thumbprint(cert.public_bytes(serialization.Encoding.DER)),
        "displayName": credential.get("displayName") or f"CN={cert.subject.rfc4514_string()}",
        "startDateTime": rfc3339(start or cert.not_valid_before_utc),
        "endDateTime": rfc3339(end or cert.not_valid_after_utc),
    }
