"""Read and validate ALL stack configuration once, before any resource is declared.

The keys, their types, defaults and single-value rules are a table (:mod:`provisioning.keys`);
certificate slots are read by :mod:`provisioning.slots`; this module applies the table, the rules
that involve several keys, and builds the :class:`StackConfig`. The loader owns the defaults
(Pulumi.yaml ``config:`` defaults are not applied under the mock runtime; a test keeps both in
step). Every invalid value is reported in one :class:`~provisioning.errors.StackConfigError`
whose lines name the key, the value and what is allowed. Certificate and key material is never
echoed: a certificate is named by its SHA-256 fingerprint.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final, Literal

from provisioning.errors import StackConfigError
from provisioning.federated import FederatedCredential, read_federated
from provisioning.keys import DEFAULTS, KEYS, NAMESPACE, Reader, is_guid, qualified, show
from provisioning.slots import (
    COMMON_NAME_MAX,
    CertificateSlot,
    GeneratedCertificate,
    ProvidedCertificate,
    certificate_common_name,
    read_slots,
)
from revoke_ops.facts import (
    CLOUDS,
    CONTAINMENT_PERMISSIONS,
    READ_PERMISSIONS,
    REVOKE_PERMISSION,
    Cloud,
    endpoint_problems,
)

__all__ = [
    "DEFAULTS",
    "DEFAULT_CERTIFICATES",
    "NAMESPACE",
    "CertificateSlot",
    "FederatedCredential",
    "GeneratedCertificate",
    "ProvidedCertificate",
    "StackConfig",
    "certificate_common_name",
    "load",
    "load_from_pulumi",
]

PermissionMode = Literal["application", "delegated", "both"]
#: The default slots: one generated RSA-2048 certificate for 365 days.
DEFAULT_CERTIFICATES: Final = next(k.default for k in KEYS if k.name == "certificates")


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
    #: Workloads that sign in as the app with their own platform's token (no secret anywhere).
    federated_credentials: tuple[FederatedCredential, ...] = ()
    #: Opt-in permissions for `revoke-ops contain` (block sign-in), granted like the read permissions.
    containment_permissions: tuple[str, ...] = ()
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
        """The revoke permission, the configured read permissions, then the containment ones (each once)."""
        extra = tuple(p for p in self.containment_permissions if p not in self.read_permissions)
        return (REVOKE_PERMISSION.name, *self.read_permissions, *extra)

    @property
    def application_permissions(self) -> tuple[str, ...]:
        """Names granted as application permissions (empty in delegated mode)."""
        return self.permissions if self.application else ()

    @property
    def delegated_permissions(self) -> tuple[str, ...]:
        """Names granted as delegated permissions (empty in application mode)."""
        return self.permissions if self.delegated else ()


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
    r = Reader(raw)
    known = {k.name for k in KEYS}
    for key in sorted(set(raw) - known):
        close = difflib.get_close_matches(key, known, n=1)
        hint = f"did you mean {qualified(close[0])}? " if close else ""
        r.fail(key, f"is not a known key; {hint}known keys: {', '.join(sorted(known))}")
    tenant_id = _tenant_id(r, azuread)
    v = {k.name: k.read(r) for k in KEYS}

    mode = v["permissionMode"]
    delegated = mode in ("delegated", "both")
    if v["delegatedConsentUsers"] and not delegated:
        r.fail("delegatedConsentUsers", "only applies with permissionMode delegated or both")
    operators_group = v["operatorsGroup"].lower() or None
    if operators_group is not None and is_guid(operators_group) and mode == "application":
        r.fail("operatorsGroup", "only applies with permissionMode delegated or both (it gates sign-in)")
    if v["grantToPrincipals"] and mode == "delegated":
        r.fail("grantToPrincipals", "receive application permissions: use permissionMode application or both")
    cloud = _cloud(r, v, azuread, {} if environ is None else environ)
    certificates = read_slots(r, v["certificates"], Path.cwd() if base_dir is None else base_dir, now())
    federated = read_federated(r, v["federatedCredentials"], tenant_id.lower(), cloud.authority_host)
    no_certificates = isinstance(v["certificates"], list) and not v["certificates"]
    if no_certificates and not v["federatedCredentials"] and mode != "delegated":
        r.fail(
            "certificates",
            "is empty and no federatedCredentials are set: with application permissions the app needs a way "
            "to sign in; keep a certificate slot or add a federated credential",
        )
    display_name = v["displayName"]
    for slot in certificates:
        common_name = certificate_common_name(display_name, slot.name)
        if isinstance(slot, GeneratedCertificate) and len(common_name) > COMMON_NAME_MAX:
            room = COMMON_NAME_MAX - len(common_name) + len(display_name)
            r.fail(
                "displayName",
                f"is too long for certificate slot {slot.name!r}: the certificate's common name "
                f"{show(common_name)} would be {len(common_name)} characters, over X.509's "
                f"{COMMON_NAME_MAX}; use at most {room} characters (or a shorter slot name)",
            )
    warnings: list[str] = []
    # Consent limited to named users (delegatedConsentUsers) already keeps everyone else out:
    # User.RevokeSessions.All needs admin consent, which no one else has then.
    if delegated and operators_group is None and not v["delegatedConsentUsers"]:
        warnings.append(
            f"{qualified('operatorsGroup')} is not set: with permissionMode {mode}, every user in the tenant "
            "can sign in to the app and obtain the delegated scopes (admin consent covers all principals); "
            "set operatorsGroup to the group of operators (see docs/provisioning.md)"
        )

    if r.problems:
        raise StackConfigError(r.problems)
    return StackConfig(
        tenant_id=tenant_id.lower(),
        display_name=display_name,
        permission_mode=mode,
        # A canonical order, so the resources do not churn when the list is reordered.
        read_permissions=tuple(p for p in READ_PERMISSIONS if p in v["readPermissions"]),
        containment_permissions=_containment(v["containmentPermissions"]),
        delegated_consent_users=_ids(v["delegatedConsentUsers"]),
        operators_group=operators_group,
        grant_to_principals=_ids(v["grantToPrincipals"]),
        certificates=certificates,
        federated_credentials=federated,
        owners=_ids(v["owners"]),
        protect=v["protect"],
        cloud=cloud,
        warnings=tuple(warnings),
    )


def _containment(values: list[str]) -> tuple[str, ...]:
    """The containment permissions in canonical order; User.EnableDisableAccount.All brings User.Read.All.

    Graph's least-privileged way to update accountEnabled is the pair: without a user read
    permission the PATCH is refused, so listing the write permission alone grants both.
    """
    wanted = set(values)
    if "User.EnableDisableAccount.All" in wanted:
        wanted.add("User.Read.All")
    return tuple(p for p in CONTAINMENT_PERMISSIONS if p in wanted)


def _ids(values: list[str]) -> tuple[str, ...]:
    return tuple(i.lower() for i in values)


def _tenant_id(r: Reader, azuread: Mapping[str, Any]) -> str:
    tenant_id = str(azuread.get("tenantId") or "").strip()
    if not tenant_id:
        r.problems.append(
            "azuread:tenantId is required in every stack: the tenant id (the directory id) this "
            "stack provisions, e.g. `pulumi config set azuread:tenantId <guid>`"
        )
    elif not is_guid(tenant_id):
        r.problems.append(f"azuread:tenantId must be a tenant id (a GUID) (got {show(tenant_id)})")
    return tenant_id


def _cloud(r: Reader, v: Mapping[str, Any], azuread: Mapping[str, Any], environ: Mapping[str, str]) -> Cloud:
    name = v["cloud"]
    endpoints = {k: v[k] for k in ("authorityHost", "graphEndpoint", "graphScope")}
    if name not in CLOUDS and name != "custom":
        return CLOUDS["public"]  # already reported by the key's check
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
    scope = endpoints["graphScope"]
    if not (re.match(r"^https://[^\s/@]+(?:/\S*)?$", scope) and scope.endswith("/.default")):
        r.fail(
            "graphScope", f"must be an https:// resource URI ending in /.default with cloud custom (got {show(scope)})"
        )
    if len(r.problems) > problems:
        return CLOUDS["public"]
    return Cloud("custom", endpoints["authorityHost"].rstrip("/"), graph, scope, ())


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
    names |= {k.name for k in KEYS}
    raw = {name: project.get(name) for name in sorted(names)}
    raw = {k: v for k, v in raw.items() if v is not None}
    azuread = {"tenantId": provider.get("tenantId"), "environment": provider.get("environment")}
    config = load(raw, azuread=azuread, environ=os.environ, base_dir=base_dir)
    for warning in config.warnings:
        pulumi.log.warn(warning)
    return config
