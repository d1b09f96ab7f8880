"""One emulation of the azuread and tls providers for Pulumi's mock runtime.

:class:`ProviderMocks` turns each registered resource into the Microsoft Graph operations the
azuread provider performs, against a pluggable :class:`Directory`: :class:`MemoryDirectory` for
unit tests, or the sandbox's Graph endpoints for ``python -m sandbox apply``. It answers with the
provider's outputs (camelCase), echoing inputs, as the real provider would. pulumi-tls keys and
certificates are generated for real with ``cryptography``.
"""

from __future__ import annotations

import base64
import itertools
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

import pulumi
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID
from pulumi.runtime.mocks import MockMonitor

from revoke_ops.facts import GRAPH_APP_ID, READ_PERMISSIONS, REVOKE_PERMISSION

__all__ = [
    "Directory",
    "DirectoryError",
    "MemoryDirectory",
    "ProviderMocks",
    "RecordingMonitor",
    "Registered",
    "graph_service_principal",
]

T_APPLICATION = "azuread:index/application:Application"
T_SERVICE_PRINCIPAL = "azuread:index/servicePrincipal:ServicePrincipal"
T_APP_ROLE_ASSIGNMENT = "azuread:index/appRoleAssignment:AppRoleAssignment"
T_DELEGATED_GRANT = "azuread:index/servicePrincipalDelegatedPermissionGrant:ServicePrincipalDelegatedPermissionGrant"
T_APPLICATION_CERTIFICATE = "azuread:index/applicationCertificate:ApplicationCertificate"
T_PRIVATE_KEY = "tls:index/privateKey:PrivateKey"
T_SELF_SIGNED_CERT = "tls:index/selfSignedCert:SelfSignedCert"
F_CLIENT_CONFIG = "azuread:index/getClientConfig:getClientConfig"
F_SERVICE_PRINCIPAL = "azuread:index/getServicePrincipal:getServicePrincipal"


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

    def create_service_principal(self, body: dict[str, Any], owners: list[str]) -> dict[str, Any]:
        """POST /servicePrincipals, then add each owner."""

    def create_app_role_assignment(self, resource_id: str, body: dict[str, Any]) -> dict[str, Any]:
        """POST /servicePrincipals/{resource_id}/appRoleAssignedTo."""

    def create_oauth2_permission_grant(self, body: dict[str, Any]) -> dict[str, Any]:
        """POST /oauth2PermissionGrants."""


def graph_service_principal(object_id: str) -> dict[str, Any]:
    """The Microsoft Graph service principal as Graph returns it, with the ids this project uses."""
    permissions = [REVOKE_PERMISSION, *READ_PERMISSIONS.values()]
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
        stored = {**credential, "keyId": credential.get("keyId") or self._new_id()}
        app["keyCredentials"].append(stored)
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


@dataclass
class Registered:
    """One resource the program registered, with the inputs it sent and the outputs it got."""

    type: str
    name: str
    inputs: dict[str, Any]
    outputs: dict[str, Any]
    #: resource options the engine saw: ``parent`` (URN) and ``protect``
    options: dict[str, Any] = field(default_factory=dict)


class RecordingMonitor(MockMonitor):
    """The mock monitor, also recording the resource options the provider mocks cannot see."""

    def __init__(self, mocks: ProviderMocks) -> None:
        super().__init__(mocks)
        self._provider_mocks = mocks

    def RegisterResource(self, request: Any) -> Any:  # noqa: N802  # gRPC method name
        self._provider_mocks.options[(request.type, request.name)] = {
            "parent": request.parent,
            "protect": bool(request.protect),
        }
        return super().RegisterResource(request)  # type: ignore[no-untyped-call]


_SIG_KEY = "4dabf18193072939515e22adb298388d"  # Pulumi's special-value signature key
_SECRET_SIG = "1b47061264138c4ac30d75fd1eb44270"  # noqa: S105  # not a credential


def _unwrap(value: Any) -> Any:
    """Strip Pulumi's secret wrappers: the mock monitor hands secret inputs over still wrapped."""
    if isinstance(value, dict):
        if value.get(_SIG_KEY) == _SECRET_SIG:
            return _unwrap(value.get("value"))
        return {k: _unwrap(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_unwrap(v) for v in value]
    return value


def _rfc3339(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _parse_time(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


class ProviderMocks(pulumi.runtime.Mocks):
    """Pulumi mocks that apply azuread resources to a :class:`Directory` like the real provider.

    :param directory: where Graph objects are created.
    :param now: clock for generated certificates' validity.
    """

    def __init__(self, directory: Directory, now: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        self.directory = directory
        self.now = now
        self.resources: list[Registered] = []
        self.options: dict[tuple[str, str], dict[str, Any]] = {}
        self._lock = threading.Lock()

    # -- invokes -------------------------------------------------------------------------
    def call(self, args: pulumi.runtime.MockCallArgs) -> tuple[dict[str, Any], list[tuple[str, str]] | None]:
        if args.token == F_CLIENT_CONFIG:
            caller = self.directory.caller()
            return {"tenantId": self.directory.tenant_id, **caller}, []
        if args.token == F_SERVICE_PRINCIPAL:
            client_id = args.args.get("clientId")
            sp = self.directory.service_principal_by_app_id(str(client_id))
            if sp is None:
                raise DirectoryError(f"service principal with client ID {client_id!r} was not found")
            return _service_principal_outputs(sp), []
        raise NotImplementedError(f"the mocks do not emulate the invoke {args.token}")

    # -- resources -----------------------------------------------------------------------
    def new_resource(self, args: pulumi.runtime.MockResourceArgs) -> tuple[str | None, dict[str, Any]]:
        handler = {
            T_APPLICATION: self._application,
            T_SERVICE_PRINCIPAL: self._service_principal,
            T_APP_ROLE_ASSIGNMENT: self._app_role_assignment,
            T_DELEGATED_GRANT: self._delegated_grant,
            T_APPLICATION_CERTIFICATE: self._application_certificate,
            T_PRIVATE_KEY: self._private_key,
            T_SELF_SIGNED_CERT: self._self_signed_cert,
        }.get(args.typ)
        if handler is None:
            # Component resources and anything not emulated: echo the inputs.
            resource_id, outputs = f"{args.name}-id", dict(args.inputs)
        else:
            resource_id, outputs = handler(_unwrap(dict(args.inputs)))
        with self._lock:
            options = self.options.get((args.typ, args.name), {})
            self.resources.append(Registered(args.typ, args.name, _unwrap(dict(args.inputs)), outputs, options))
        return resource_id, outputs

    def _application(self, inputs: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        name = inputs["displayName"]
        if inputs.get("preventDuplicateNames") and self.directory.applications_named(name):
            raise DirectoryError(
                f"An existing Application with display name {name!r} was found "
                "and `prevent_duplicate_names` was specified"
            )
        body: dict[str, Any] = {
            "displayName": name,
            "signInAudience": inputs.get("signInAudience", "AzureADMyOrg"),
            "requiredResourceAccess": [
                {
                    "resourceAppId": rra["resourceAppId"],
                    "resourceAccess": [{"id": ra["id"], "type": ra["type"]} for ra in rra.get("resourceAccesses", [])],
                }
                for rra in inputs.get("requiredResourceAccesses", [])
            ],
            "isFallbackPublicClient": bool(inputs.get("fallbackPublicClientEnabled", False)),
            "publicClient": {"redirectUris": list((inputs.get("publicClient") or {}).get("redirectUris", []))},
            "tags": list(inputs.get("tags", [])),
            "notes": inputs.get("notes"),
        }
        app = self.directory.create_application(body, list(inputs.get("owners", [])))
        outputs = {
            **inputs,
            "objectId": app["id"],
            "clientId": app["appId"],
            "publisherDomain": "sandbox.example",
            "disabledByMicrosoft": "",
        }
        return f"/applications/{app['id']}", outputs

    def _service_principal(self, inputs: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        body = {
            "appId": inputs["clientId"],
            "appRoleAssignmentRequired": bool(inputs.get("appRoleAssignmentRequired", False)),
            "tags": list(inputs.get("tags", [])),
        }
        sp = self.directory.create_service_principal(body, list(inputs.get("owners", [])))
        return f"/servicePrincipals/{sp['id']}", {**inputs, **_service_principal_outputs(sp)}

    def _app_role_assignment(self, inputs: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        body = {"principalId": inputs["principalObjectId"], "appRoleId": inputs["appRoleId"]}
        assignment = self.directory.create_app_role_assignment(inputs["resourceObjectId"], body)
        resource_id = f"/servicePrincipals/{inputs['resourceObjectId']}/appRoleAssignedTo/{assignment['id']}"
        return resource_id, {**inputs, "principalType": assignment.get("principalType", "ServicePrincipal")}

    def _delegated_grant(self, inputs: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        user = inputs.get("userObjectId")
        body = {
            "clientId": inputs["servicePrincipalObjectId"],
            "consentType": "Principal" if user else "AllPrincipals",
            "principalId": user,
            "resourceId": inputs["resourceServicePrincipalObjectId"],
            "scope": " ".join(inputs.get("claimValues", [])),
        }
        grant = self.directory.create_oauth2_permission_grant(body)
        return f"/oauth2PermissionGrants/{grant['id']}", dict(inputs)

    def _application_certificate(self, inputs: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        application_id = str(inputs["applicationId"]).removeprefix("/applications/")
        value = inputs["value"]
        cert = x509.load_pem_x509_certificate(value.encode()) if inputs.get("encoding", "pem") == "pem" else None
        if cert is None:
            raise DirectoryError("the mocks only accept pem-encoded certificates")
        credential = {
            "keyId": inputs.get("keyId") or None,
            "type": "AsymmetricX509Cert",
            "usage": "Verify",
            "key": base64.b64encode(cert.public_bytes(serialization.Encoding.DER)).decode(),
            "customKeyIdentifier": cert.fingerprint(hashes.SHA1()).hex().upper(),  # noqa: S303  # Entra's x5t
            "startDateTime": inputs.get("startDate") or _rfc3339(cert.not_valid_before_utc),
            "endDateTime": inputs.get("endDate") or _rfc3339(cert.not_valid_after_utc),
            "displayName": f"CN={cert.subject.rfc4514_string()}",
        }
        if _parse_time(str(credential["endDateTime"])) > cert.not_valid_after_utc + timedelta(seconds=1):
            raise DirectoryError("Key credential end date is invalid: it is after the certificate's notAfter")
        stored = self.directory.add_key_credential(application_id, credential)
        outputs = {
            **inputs,
            "keyId": stored["keyId"],
            "startDate": credential["startDateTime"],
            "endDate": credential["endDateTime"],
        }
        return f"{application_id}/certificate/{stored['keyId']}", outputs

    def _private_key(self, inputs: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        if inputs.get("algorithm") != "RSA":
            raise DirectoryError("the mocks generate RSA keys only")
        key = rsa.generate_private_key(public_exponent=65537, key_size=int(inputs.get("rsaBits", 2048)))
        public = key.public_key()
        outputs = {
            **inputs,
            "privateKeyPem": key.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL, serialization.NoEncryption()
            ).decode(),
            "privateKeyPemPkcs8": key.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
            ).decode(),
            "publicKeyPem": public.public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            ).decode(),
        }
        return str(uuid.uuid4()), outputs

    def _self_signed_cert(self, inputs: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        key = serialization.load_pem_private_key(inputs["privateKeyPem"].encode(), password=None)
        if not isinstance(key, rsa.RSAPrivateKey):
            raise DirectoryError("the mocks sign certificates with RSA keys only")
        subject = inputs.get("subject") or {}
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject.get("commonName", "revoke-sessions"))])
        start = self.now().replace(microsecond=0)
        end = start + timedelta(hours=int(inputs["validityPeriodHours"]))
        cert = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(start)
            .not_valid_after(end)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .sign(key, hashes.SHA256())
        )
        outputs = {
            **inputs,
            "certPem": cert.public_bytes(serialization.Encoding.PEM).decode(),
            "validityStartTime": _rfc3339(start),
            "validityEndTime": _rfc3339(end),
            "readyForRenewal": False,
        }
        return str(cert.serial_number), outputs


def _service_principal_outputs(sp: dict[str, Any]) -> dict[str, Any]:
    return {
        "objectId": sp["id"],
        "clientId": sp["appId"],
        "displayName": sp.get("displayName", ""),
        "appRoleIds": {r["value"]: r["id"] for r in sp.get("appRoles", [])},
        "oauth2PermissionScopeIds": {s["value"]: s["id"] for s in sp.get("oauth2PermissionScopes", [])},
        "appRoleAssignmentRequired": sp.get("appRoleAssignmentRequired", False),
        "type": sp.get("servicePrincipalType", "Application"),
    }
