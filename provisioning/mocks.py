"""One emulation of the azuread and tls providers for Pulumi's mock runtime.

:class:`ProviderMocks` turns each registered resource into the Microsoft Graph operations the
azuread provider performs, against a pluggable :class:`Directory`: :class:`MemoryDirectory` for
unit tests, or the sandbox's Graph endpoints for ``python -m sandbox apply``. It answers with the
provider's outputs (camelCase), echoing inputs, as the real provider would. pulumi-tls keys and
certificates are generated for real with ``cryptography``. (``Directory`` and ``MemoryDirectory``
live in :mod:`provisioning.directory` and are re-exported here.)

Outputs take the formats the real providers produce, so that the program meets them here first:

- pulumi-tls ``validityStartTime``/``validityEndTime`` are Go's ``time.MarshalText`` of a
  ``time.Now()``-based value (terraform-provider-tls ``internal/provider/common_cert.go``): the
  deployer's local offset and up to nine fractional digits (``2027-11-26T17:13:00.123456789+01:00``).
- azuread ``ApplicationCertificate`` sends ``key`` as base64 of the ``value`` text for ``pem``, and
  of a re-encoded PEM block for ``base64``/``hex`` (``internal/helpers/credentials.go``,
  ``KeyCredentialForResource``), ``endDateTime`` as ``time.Parse(RFC3339)`` then
  ``Format(RFC3339)`` (offset kept, fraction dropped), and reads ``end_date`` back from Graph as
  UTC whole seconds (``applicationCertificateResourceRead``).
- A service principal's ``tags`` read back from Graph are the union of its own and its
  application's tags (Microsoft Graph ``application`` resource, ``tags``).
"""

from __future__ import annotations

import base64
import binascii
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pulumi
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID
from pulumi.runtime.mocks import MockMonitor

from provisioning.directory import Directory, DirectoryError, MemoryDirectory, graph_service_principal
from revoke_ops.facts import parse_rfc3339

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
T_FEDERATED_CREDENTIAL = "azuread:index/applicationFederatedIdentityCredential:ApplicationFederatedIdentityCredential"
T_PRIVATE_KEY = "tls:index/privateKey:PrivateKey"
T_SELF_SIGNED_CERT = "tls:index/selfSignedCert:SelfSignedCert"
F_CLIENT_CONFIG = "azuread:index/getClientConfig:getClientConfig"
F_SERVICE_PRINCIPAL = "azuread:index/getServicePrincipal:getServicePrincipal"


@dataclass
class Registered:
    """One resource the program registered, with the inputs it sent and the outputs it got."""

    type: str
    name: str
    inputs: dict[str, Any]
    outputs: dict[str, Any]
    #: resource options the engine saw: ``parent`` (URN), ``protect`` and ``aliases``
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
            # names this resource was known by before (Pulumi alias specs, or full URNs)
            "aliases": [a.spec.name if a.HasField("spec") else a.urn for a in request.aliases],
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


def go_marshal_text(moment: datetime, nanosecond: int) -> str:
    """Go's ``time.MarshalText`` (RFC 3339 with nanoseconds, trailing zeros cut) in ``moment``'s zone."""
    fraction = f"{nanosecond:09d}".rstrip("0")
    return _go_format(moment, f".{fraction}" if fraction else "")


def _go_format(moment: datetime, fraction: str = "") -> str:
    """Go's ``Format(time.RFC3339)`` (``Z07:00``: ``Z`` for a zero offset, else ``+hh:mm``)."""
    offset = moment.utcoffset() or timedelta(0)
    minutes = int(offset.total_seconds()) // 60
    zone = "Z" if minutes == 0 else f"{'+' if minutes > 0 else '-'}{abs(minutes) // 60:02d}:{abs(minutes) % 60:02d}"
    return moment.strftime("%Y-%m-%dT%H:%M:%S") + fraction + zone


class ProviderMocks(pulumi.runtime.Mocks):
    """Pulumi mocks that apply azuread resources to a :class:`Directory` like the real provider.

    :param directory: where Graph objects are created.
    :param clock_ns: nanoseconds since the epoch, as Go's ``time.Now()`` (generated certificates).
    :param local_zone: the deployer's zone, in which pulumi-tls writes its times (not UTC by default,
        so that code which assumes ``Z`` fails here rather than on a deployer's machine).
    """

    def __init__(
        self,
        directory: Directory,
        clock_ns: Callable[[], int] = time.time_ns,
        local_zone: timezone = timezone(timedelta(hours=1)),
    ) -> None:
        self.directory = directory
        self.clock_ns = clock_ns
        self.local_zone = local_zone
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
            T_FEDERATED_CREDENTIAL: self._federated_credential,
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
        credential: dict[str, Any] = {
            "keyId": inputs.get("keyId") or str(uuid.uuid4()),
            "type": inputs.get("type", "AsymmetricX509Cert"),
            "usage": "Verify",
            "key": _provider_key(str(inputs["value"]), inputs.get("encoding", "pem")),
        }
        for field_name, key in (("startDate", "startDateTime"), ("endDate", "endDateTime")):
            if inputs.get(field_name):
                credential[key] = _go_format(_go_parse_rfc3339(field_name, str(inputs[field_name])))
        stored = self.directory.add_key_credential(application_id, credential)
        # Read back from Graph (UTC) with Format(time.RFC3339): what a later diff compares against.
        outputs = {
            **inputs,
            "keyId": stored["keyId"],
            "startDate": _go_format(parse_rfc3339(stored["startDateTime"]).astimezone(UTC)),
            "endDate": _go_format(parse_rfc3339(stored["endDateTime"]).astimezone(UTC)),
        }
        return f"{application_id}/certificate/{stored['keyId']}", outputs

    def _federated_credential(self, inputs: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        # The provider POSTs /applications/{id}/federatedIdentityCredentials (display_name is Graph's
        # name) and sets the id parse.NewCredentialID(app, "federatedIdentityCredential", id) builds.
        application_id = str(inputs["applicationId"]).removeprefix("/applications/")
        body: dict[str, Any] = {
            "name": inputs["displayName"],
            "issuer": inputs["issuer"],
            "subject": inputs["subject"],
            "audiences": list(inputs.get("audiences", [])),
        }
        if inputs.get("description"):
            body["description"] = inputs["description"]
        stored = self.directory.add_federated_credential(application_id, body)
        outputs = {**inputs, "credentialId": stored["id"]}
        return f"/applications/{application_id}/federatedIdentityCredential/{stored['id']}", outputs

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
        seconds, nanosecond = divmod(self.clock_ns(), 1_000_000_000)
        start = datetime.fromtimestamp(seconds, self.local_zone)
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
            # X.509 keeps whole seconds; the provider's outputs keep Go's nanoseconds and zone.
            "validityStartTime": go_marshal_text(start, nanosecond),
            "validityEndTime": go_marshal_text(end, nanosecond),
            "readyForRenewal": False,
        }
        return str(cert.serial_number), outputs


def _go_parse_rfc3339(field_name: str, value: str) -> datetime:
    try:
        return parse_rfc3339(value)
    except ValueError as err:
        raise DirectoryError(f"Unable to parse the provided {field_name} {value!r}: {err}") from None


def _provider_key(value: str, encoding: str) -> str:
    """The keyCredential ``key`` the azuread provider sends for ``value`` in ``encoding``."""
    if encoding == "pem":
        return base64.b64encode(value.encode()).decode()
    if encoding not in ("base64", "hex"):
        raise DirectoryError(f"expected encoding to be one of [base64 hex pem], got {encoding}")
    try:
        der = base64.b64decode(value.strip(), validate=True) if encoding == "base64" else bytes.fromhex(value.strip())
    except (binascii.Error, ValueError):
        raise DirectoryError(f"failed to decode {encoding} certificate data") from None
    body = base64.encodebytes(der).decode().replace("\n", "")
    lines = "\n".join(body[i : i + 64] for i in range(0, len(body), 64))
    pem = f"-----BEGIN CERTIFICATE-----\n{lines}\n-----END CERTIFICATE-----\n"
    return base64.b64encode(pem.encode()).decode()


def _service_principal_outputs(sp: dict[str, Any]) -> dict[str, Any]:
    return {
        "objectId": sp["id"],
        "clientId": sp["appId"],
        "displayName": sp.get("displayName", ""),
        "appRoleIds": {r["value"]: r["id"] for r in sp.get("appRoles", [])},
        "oauth2PermissionScopeIds": {s["value"]: s["id"] for s in sp.get("oauth2PermissionScopes", [])},
        "appRoleAssignmentRequired": sp.get("appRoleAssignmentRequired", False),
        "type": sp.get("servicePrincipalType", "Application"),
        "tags": list(sp.get("tags", [])),
    }
