"""Read and validate ALL stack configuration once, before any resource is declared.

The loader owns the defaults (Pulumi.yaml ``config:`` defaults are not applied under the mock
runtime; a test keeps both in step). Every invalid value is reported in one
:class:`~provisioning.errors.StackConfigError` whose lines name the key, the value and what is
allowed. Certificate and key material is never echoed: a certificate is named by its SHA-256
fingerprint.
"""

from __future__ import annotations

import difflib
import json
import re
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final, Literal

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.serialization import Encoding

from provisioning.errors import StackConfigError
from revoke_ops.facts import CLOUDS, READ_PERMISSIONS, REVOKE_PERMISSION, Cloud, endpoint_problems

__all__ = [
    "DEFAULTS",
    "NAMESPACE",
    "GeneratedCertificate",
    "ProvidedCertificate",
    "StackConfig",
    "certificate_common_name",
    "load",
    "load_from_pulumi",
]

NAMESPACE: Final = "revoke-sessions"

PermissionMode = Literal["application", "delegated", "both"]
PERMISSION_MODES: Final = ("application", "delegated", "both")
RSA_BITS: Final = (2048, 3072, 4096)
VALIDITY_DAYS: Final = (1, 730)
MIN_PROVIDED_RSA_BITS: Final = 2048
DISPLAY_NAME_MAX: Final = 120
#: X.509's upper bound for a common name (RFC 5280 ub-common-name).
COMMON_NAME_MAX: Final = 64
SLOT_NAME = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,30}[a-z0-9])?$")

#: Every key of the ``revoke-sessions:`` namespace with its default, as Pulumi.yaml declares it.
#: ``certificates`` is structured (a list of objects) and so not declarable in Pulumi.yaml's
#: type system: it is documented there and defaults to one generated RSA-2048 slot for 365 days.
DEFAULTS: Final[dict[str, Any]] = {
    "displayName": "revoke-sessions",
    "permissionMode": "application",
    "readPermissions": ["User.Read.All"],
    "delegatedConsentUsers": [],
    "operatorsGroup": "",
    "grantToPrincipals": [],
    "owners": [],
    "protect": False,
    "cloud": "public",
    "authorityHost": "",
    "graphEndpoint": "",
    "graphScope": "",
}
STRUCTURED_KEYS: Final = ("certificates",)
DEFAULT_CERTIFICATES: Final = [{"name": "primary", "rsaBits": 2048, "validityDays": 365}]
GENERATED_SLOT_KEYS: Final = ("name", "rsaBits", "validityDays")
PROVIDED_SLOT_KEYS: Final = ("name", "pem", "pemFile")


@dataclass(frozen=True)
class GeneratedCertificate:
    """A slot whose RSA key and self-signed certificate the program generates (pulumi-tls)."""

    name: str
    rsa_bits: int = 2048
    validity_days: int = 365

    source: Literal["generated"] = field(default="generated", init=False)


@dataclass(frozen=True)
class ProvidedCertificate:
    """A slot holding a public certificate supplied by the operator; its key never enters state."""

    name: str
    pem: str = field(repr=False)
    sha1_thumbprint: str
    sha256_fingerprint: str
    not_before: datetime
    not_after: datetime

    source: Literal["provided"] = field(default="provided", init=False)


CertificateSlot = GeneratedCertificate | ProvidedCertificate


@dataclass(frozen=True)
class StackConfig:
    """The validated configuration of one stack (one tenant)."""

    tenant_id: str
    display_name: str
    permission_mode: PermissionMode
    read_permissions: tuple[str, ...]
    delegated_consent_users: tuple[str, ...]
    operators_group: str | None
    grant_to_principals: tuple[str, ...]
    certificates: tuple[CertificateSlot, ...]
    owners: tuple[str, ...]
    protect: bool
    cloud: Cloud
    #: Valid but risky settings, to show the deployer (``pulumi up`` prints them as warnings).
    warnings: tuple[str, ...] = ()

    @property
    def application(self) -> bool:
        """Whether the app holds its permissions as application permissions (app roles)."""
        return self.permission_mode in ("application", "both")

    @property
    def delegated(self) -> bool:
        """Whether the app holds its permissions as delegated permissions (scopes)."""
        return self.permission_mode in ("delegated", "both")

    @property
    def permissions(self) -> tuple[str, ...]:
        """The revoke permission followed by the configured read permissions."""
        return (REVOKE_PERMISSION.name, *self.read_permissions)

    @property
    def application_permissions(self) -> tuple[str, ...]:
        """Names granted as application permissions (empty in delegated mode)."""
        return self.permissions if self.application else ()

    @property
    def delegated_permissions(self) -> tuple[str, ...]:
        """Names granted as delegated permissions (empty in application mode)."""
        return self.permissions if self.delegated else ()


def certificate_common_name(display_name: str, slot: str) -> str:
    """The subject common name of a generated slot's certificate."""
    return f"{display_name} ({slot})"


def _key(name: str) -> str:
    return f"{NAMESPACE}:{name}"


def _show(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


class _Reader:
    """Parses raw config strings (as Pulumi hands them over) and collects every problem."""

    def __init__(self, raw: Mapping[str, str]) -> None:
        self.raw = raw
        self.problems: list[str] = []

    def fail(self, key: str, message: str) -> None:
        self.problems.append(f"{_key(key)} {message}")

    def value(self, key: str, default: Any) -> Any:
        if key not in self.raw or self.raw[key] is None:
            return default
        return self.raw[key]

    def string(self, key: str) -> str:
        value = self.value(key, DEFAULTS[key])
        if not isinstance(value, str):
            self.fail(key, f"must be a string (got {_show(value)})")
            return str(DEFAULTS[key])
        return value.strip()

    def structured(self, key: str, default: Any) -> Any:
        value = self.value(key, default)
        if isinstance(value, str):
            try:
                return json.loads(value)
            except json.JSONDecodeError:
                self.fail(key, f"must be a YAML list (got {_show(value)})")
                return default
        return value

    def boolean(self, key: str) -> bool:
        value = self.value(key, DEFAULTS[key])
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.strip().lower() in ("true", "false"):
            return value.strip().lower() == "true"
        self.fail(key, f"must be true or false (got {_show(value)})")
        return bool(DEFAULTS[key])

    def string_list(self, key: str) -> list[str]:
        value = self.structured(key, DEFAULTS[key])
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            self.fail(key, f"must be a list of strings (got {_show(value)})")
            return list(DEFAULTS[key])
        return [v.strip() for v in value]

    def object_ids(self, key: str, what: str) -> tuple[str, ...]:
        ids = self.string_list(key)
        for item in ids:
            if not _is_guid(item):
                self.fail(key, f"must list {what} object ids (GUIDs) (got {_show(item)})")
        duplicates = sorted({i.lower() for i in ids if [j.lower() for j in ids].count(i.lower()) > 1})
        if duplicates:
            self.fail(key, f"lists {', '.join(duplicates)} more than once")
        return tuple(i.lower() for i in ids if _is_guid(i))


def _is_guid(value: str) -> bool:
    try:
        uuid.UUID(value)
    except (ValueError, AttributeError, TypeError):
        return False
    return len(value) == 36


def _is_https_url(value: str) -> bool:
    return bool(re.match(r"^https://[^\s/]+(?:/[^\s]*)?$", value))


def load(
    raw: Mapping[str, Any],
    *,
    azuread: Mapping[str, Any],
    environ: Mapping[str, str] | None = None,
    base_dir: Path | None = None,
    now: Callable[[], datetime] = lambda: datetime.now(UTC),
) -> StackConfig:
    """Validate one stack's configuration.

    :param raw: the ``revoke-sessions:`` keys (without the namespace) as Pulumi provides them:
        strings, with lists and objects as JSON text (already-parsed values are accepted too).
    :param azuread: the ``azuread:`` provider keys (``tenantId``, ``environment``).
    :param environ: process environment, for ``ARM_ENVIRONMENT`` (the provider's fallback).
    :param base_dir: directory that relative ``pemFile`` paths are resolved against.
    :param now: clock used to refuse expired supplied certificates.
    :raises StackConfigError: listing every invalid key; nothing has been declared yet.
    """
    environ = {} if environ is None else environ
    base_dir = Path.cwd() if base_dir is None else base_dir
    r = _Reader(raw)

    known = set(DEFAULTS) | set(STRUCTURED_KEYS)
    for key in sorted(set(raw) - known):
        close = difflib.get_close_matches(key, known, n=1)
        hint = f"did you mean revoke-sessions:{close[0]}? " if close else ""
        r.fail(key, f"is not a known key; {hint}known keys: {', '.join(sorted(known))}")

    tenant_id = str(azuread.get("tenantId") or "").strip()
    if not tenant_id:
        r.problems.append(
            "azuread:tenantId is required in every stack: the tenant id (the directory id) this "
            "stack provisions, e.g. `pulumi config set azuread:tenantId <guid>`"
        )
    elif not _is_guid(tenant_id):
        r.problems.append(f"azuread:tenantId must be a tenant id (a GUID) (got {_show(tenant_id)})")

    display_name = r.string("displayName")
    if not display_name or len(display_name) > DISPLAY_NAME_MAX:
        r.fail("displayName", f"must be 1 to {DISPLAY_NAME_MAX} characters (got {_show(display_name)})")
    elif any(not c.isprintable() for c in display_name):
        r.fail(
            "displayName", f"must be one line of printable characters, no newlines or tabs (got {_show(display_name)})"
        )

    mode = r.string("permissionMode")
    if mode not in PERMISSION_MODES:
        r.fail("permissionMode", f"must be one of {', '.join(PERMISSION_MODES)} (got {_show(mode)})")
        mode = "application"

    read_permissions = r.string_list("readPermissions")
    for name in read_permissions:
        if name not in READ_PERMISSIONS:
            r.fail(
                "readPermissions",
                f"must list only {', '.join(READ_PERMISSIONS)} (got {_show(name)}); "
                f"{REVOKE_PERMISSION.name} is always granted",
            )
    if len(set(read_permissions)) != len(read_permissions):
        r.fail("readPermissions", f"lists a permission more than once (got {_show(read_permissions)})")
    # Keep a canonical order so the resources do not churn when the list is reordered.
    read = tuple(p for p in READ_PERMISSIONS if p in read_permissions)

    consent_users = r.object_ids("delegatedConsentUsers", "user")
    if consent_users and mode == "application":
        r.fail("delegatedConsentUsers", "only applies with permissionMode delegated or both")
    operators_group = r.string("operatorsGroup") or None
    if operators_group is not None:
        if not _is_guid(operators_group):
            r.fail("operatorsGroup", f"must be a group object id (a GUID) (got {_show(operators_group)})")
        elif mode == "application":
            r.fail("operatorsGroup", "only applies with permissionMode delegated or both (it gates sign-in)")
        operators_group = operators_group.lower()
    grant_to = r.object_ids("grantToPrincipals", "service principal")
    if grant_to and mode == "delegated":
        r.fail("grantToPrincipals", "receive application permissions: use permissionMode application or both")
    owners = r.object_ids("owners", "user or service principal")
    protect = r.boolean("protect")
    cloud = _cloud(r, azuread, environ)
    certificates = _certificates(r, base_dir, now())
    for slot in certificates:
        common_name = certificate_common_name(display_name, slot.name)
        if isinstance(slot, GeneratedCertificate) and len(common_name) > COMMON_NAME_MAX:
            room = COMMON_NAME_MAX - len(common_name) + len(display_name)
            r.fail(
                "displayName",
                f"is too long for certificate slot {slot.name!r}: the certificate's common name "
                f"{_show(common_name)} would be {len(common_name)} characters, over X.509's "
                f"{COMMON_NAME_MAX}; use at most {room} characters (or a shorter slot name)",
            )
    warnings: list[str] = []
    if mode in ("delegated", "both") and operators_group is None:
        warnings.append(
            f"{_key('operatorsGroup')} is not set: with permissionMode {mode}, every user in the tenant "
            "can sign in to the app and obtain the delegated scopes; set operatorsGroup to the group of "
            "operators (see docs/provisioning.md)"
        )

    if r.problems:
        raise StackConfigError(r.problems)
    return StackConfig(
        tenant_id=tenant_id.lower(),
        display_name=display_name,
        permission_mode=mode,  # type: ignore[arg-type]  # checked against PERMISSION_MODES
        read_permissions=read,
        delegated_consent_users=consent_users,
        operators_group=operators_group,
        grant_to_principals=grant_to,
        certificates=certificates,
        owners=owners,
        protect=protect,
        cloud=cloud,
        warnings=tuple(warnings),
    )


def _cloud(r: _Reader, azuread: Mapping[str, Any], environ: Mapping[str, str]) -> Cloud:
    name = r.string("cloud")
    endpoints = {k: r.string(k) for k in ("authorityHost", "graphEndpoint", "graphScope")}
    allowed = [*CLOUDS, "custom"]
    if name not in allowed:
        r.fail("cloud", f"must be one of {', '.join(allowed)} (got {_show(name)})")
        return CLOUDS["public"]
    if name != "custom":
        for key, value in endpoints.items():
            if value:
                r.fail(key, f"only applies with cloud custom (cloud is {name!r})")
        cloud = CLOUDS[name]
        environment = str(azuread.get("environment") or environ.get("ARM_ENVIRONMENT") or "").strip()
        source = "azuread:environment" if azuread.get("environment") else "ARM_ENVIRONMENT"
        if environment and environment.lower() not in cloud.azuread_environments:
            r.fail(
                "cloud",
                f"is {name!r} but the azuread provider's environment ({source}) is {environment!r}; "
                f"for this cloud it must be one of {', '.join(cloud.azuread_environments)}",
            )
        return cloud
    problems = len(r.problems)
    graph = endpoints["graphEndpoint"].rstrip("/")
    # The same rules revoke-ops applies to a bundle: https, no user info, no query, /v1.0.
    for problem in endpoint_problems("custom", graph, endpoints["authorityHost"]):
        r.problems.append(f"{NAMESPACE}:{problem} (with cloud custom)")
    if not (_is_https_url(endpoints["graphScope"]) and endpoints["graphScope"].endswith("/.default")):
        r.fail(
            "graphScope",
            "must be an https:// resource URI ending in /.default with cloud custom "
            f"(got {_show(endpoints['graphScope'])})",
        )
    if len(r.problems) > problems:
        return CLOUDS["public"]
    return Cloud("custom", endpoints["authorityHost"].rstrip("/"), graph, endpoints["graphScope"], ())


def _certificates(r: _Reader, base_dir: Path, now: datetime) -> tuple[CertificateSlot, ...]:
    value = r.structured("certificates", DEFAULT_CERTIFICATES)
    if not isinstance(value, list) or not value:
        r.fail("certificates", "must be a non-empty list of certificate slots")
        return ()
    slots: list[CertificateSlot] = []
    names: set[str] = set()
    for index, item in enumerate(value):
        where = f"certificates[{index}]"
        if not isinstance(item, dict):
            r.fail(where, "must be a mapping with name and either rsaBits/validityDays or pem/pemFile")
            continue
        name = item.get("name")
        if not isinstance(name, str) or not SLOT_NAME.match(name):
            r.fail(
                f"{where}.name",
                f"must be 1-32 lowercase letters, digits or dashes (got {_show(name)})",
            )
            continue
        if name in names:
            r.fail(f"{where}.name", f"{name!r} is used by more than one slot")
            continue
        names.add(name)
        provided = "pem" in item or "pemFile" in item
        allowed = PROVIDED_SLOT_KEYS if provided else GENERATED_SLOT_KEYS
        unknown = sorted(set(item) - set(allowed))
        if unknown:
            kind = "a supplied-certificate slot" if provided else "a generated slot"
            r.fail(where, f"has {', '.join(unknown)}, not allowed in {kind} (allowed: {', '.join(allowed)})")
            continue
        slot = _provided(r, where, item, base_dir, now) if provided else _generated(r, where, item)
        if slot is not None:
            slots.append(slot)
    return tuple(slots)


def _generated(r: _Reader, where: str, item: dict[str, Any]) -> GeneratedCertificate | None:
    bits = item.get("rsaBits", 2048)
    days = item.get("validityDays", 365)
    ok = True
    if isinstance(bits, bool) or not isinstance(bits, int) or bits not in RSA_BITS:
        r.fail(f"{where}.rsaBits", f"must be one of {', '.join(map(str, RSA_BITS))} (got {_show(bits)})")
        ok = False
    low, high = VALIDITY_DAYS
    if isinstance(days, bool) or not isinstance(days, int) or not low <= days <= high:
        r.fail(f"{where}.validityDays", f"must be a whole number of days from {low} to {high} (got {_show(days)})")
        ok = False
    return GeneratedCertificate(item["name"], bits, days) if ok else None


def _provided(
    r: _Reader, where: str, item: dict[str, Any], base_dir: Path, now: datetime
) -> ProvidedCertificate | None:
    if "pem" in item and "pemFile" in item:
        r.fail(where, "takes either pem or pemFile, not both")
        return None
    if "pemFile" in item:
        path_value = item["pemFile"]
        if not isinstance(path_value, str) or not path_value:
            r.fail(f"{where}.pemFile", f"must be a file path (got {_show(path_value)})")
            return None
        path = Path(path_value).expanduser()
        path = path if path.is_absolute() else base_dir / path
        try:
            data = path.read_bytes()
        except OSError as err:
            r.fail(f"{where}.pemFile", f"cannot be read: {path} ({err.strerror})")
            return None
        label = f"{where}.pemFile ({path})"
    else:
        pem = item["pem"]
        if not isinstance(pem, str):
            r.fail(f"{where}.pem", "must be PEM text")
            return None
        data = pem.encode()
        label = f"{where}.pem"
    if b"PRIVATE KEY" in data:
        r.problems.append(
            f"{_key(label)} contains a private key: supply only the public certificate, "
            "so the private key never enters Pulumi state (or use a generated slot)"
        )
        return None
    try:
        certs = x509.load_pem_x509_certificates(data)
    except ValueError:
        r.problems.append(
            f"{_key(label)} is not a PEM X.509 certificate ({len(data)} bytes; expected a BEGIN CERTIFICATE block)"
        )
        return None
    if len(certs) != 1:
        r.problems.append(f"{_key(label)} must hold exactly one certificate (found {len(certs)})")
        return None
    cert = certs[0]
    fingerprint = cert.fingerprint(hashes.SHA256()).hex()
    named = f"{_key(label)} (certificate SHA-256 {fingerprint})"
    key = cert.public_key()
    if not isinstance(key, rsa.RSAPublicKey):
        r.problems.append(
            f"{named} has a {type(key).__name__.removeprefix('_')} key; only RSA keys are allowed "
            "(azure-identity signs client assertions with RSA)"
        )
        return None
    if key.key_size < MIN_PROVIDED_RSA_BITS:
        r.problems.append(f"{named} has an RSA-{key.key_size} key; at least RSA-{MIN_PROVIDED_RSA_BITS} is required")
        return None
    not_after = cert.not_valid_after_utc
    if not_after <= now:
        r.problems.append(f"{named} expired on {not_after.isoformat()}; supply a current certificate")
        return None
    return ProvidedCertificate(
        name=item["name"],
        pem=cert.public_bytes(Encoding.PEM).decode(),
        sha1_thumbprint=cert.fingerprint(hashes.SHA1()).hex().upper(),  # noqa: S303  # Entra's thumbprint is SHA-1
        sha256_fingerprint=fingerprint,
        not_before=cert.not_valid_before_utc,
        not_after=not_after,
    )


def load_from_pulumi(base_dir: Path | None = None) -> StackConfig:
    """Read the running stack's configuration through Pulumi's config API and validate it.

    Unknown keys in the ``revoke-sessions:`` namespace (typos such as ``permisionMode``) are
    refused rather than silently ignored.

    :raises StackConfigError: listing every invalid key.
    """
    import os

    import pulumi
    from pulumi.runtime import config as runtime_config

    project = pulumi.Config(NAMESPACE)
    provider = pulumi.Config("azuread")
    present = {*runtime_config.CONFIG.get(), *(runtime_config.get_config_env() or {})}
    names = {k.split(":", 1)[1] for k in present if k.startswith(f"{NAMESPACE}:")}
    names |= set(DEFAULTS) | set(STRUCTURED_KEYS)
    raw = {name: project.get(name) for name in sorted(names)}
    raw = {k: v for k, v in raw.items() if v is not None}
    azuread = {"tenantId": provider.get("tenantId"), "environment": provider.get("environment")}
    config = load(raw, azuread=azuread, environ=os.environ, base_dir=base_dir)
    for warning in config.warnings:
        pulumi.log.warn(warning)
    return config
