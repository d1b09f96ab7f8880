"""Read and validate a credentials bundle (the JSON of ``pulumi stack output --json --show-secrets``).

A bundle decides where the Graph token and the client assertion are sent, so it is trusted only
when this user alone can write it and read it (owned by the user, mode 0600 — key or not), and
when its endpoints are exactly its cloud's (:func:`revoke_ops.facts.endpoint_problems`). Any other
endpoint needs ``cloud: custom`` and an explicit opt-in (``--allow-custom-cloud`` or
``REVOKE_OPS_ALLOW_CUSTOM_CLOUD=1``), and is announced with a warning naming the hosts.
"""

from __future__ import annotations

import json
import logging
import os
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jsonschema

from revoke_ops.errors import InputError
from revoke_ops.facts import BUNDLE_SCHEMA_VERSION, CLOUDS, bundle_schema, endpoint_problems
from revoke_ops.redact import redact

__all__ = [
    "ALLOW_CUSTOM_CLOUD_ENV",
    "Bundle",
    "CertificateInfo",
    "FederatedInfo",
    "custom_cloud_allowed",
    "load_bundle",
    "parse_bundle",
    "refuse_untrusted_file",
]

log = logging.getLogger(__name__)

#: Set to 1 to accept bundles whose cloud is ``custom`` (a sandbox), like ``--allow-custom-cloud``.
ALLOW_CUSTOM_CLOUD_ENV = "REVOKE_OPS_ALLOW_CUSTOM_CLOUD"
CUSTOM_CLOUD = "custom"
#: What `pulumi stack output --json` prints for a secret output without --show-secrets.
PULUMI_SECRET_PLACEHOLDER = "[secret]"  # noqa: S105  # a placeholder, not a password


@dataclass(frozen=True)
class CertificateInfo:
    """One certificate registered on the application."""

    slot: str
    source: str
    thumbprint: str
    thumbprint_sha256: str
    key_id: str
    not_after: str
    #: a Key Vault slot's certificate URL (its key never leaves the vault): --key-vault-certificate
    key_vault_certificate: str | None = None


@dataclass(frozen=True)
class FederatedInfo:
    """One federated credential of the application (public values: who may sign in as it)."""

    name: str
    issuer: str
    subject: str
    audience: str


@dataclass(frozen=True)
class Bundle:
    """The credentials one stack provisioned for one tenant."""

    tenant_id: str
    client_id: str
    application_object_id: str
    service_principal_object_id: str
    cloud: str
    authority_host: str
    graph_endpoint: str
    graph_scope: str
    permission_mode: str
    application_permissions: tuple[str, ...]
    delegated_permissions: tuple[str, ...]
    certificates: tuple[CertificateInfo, ...]
    #: the group whose direct members may sign in; None: anyone in the tenant (or not exported)
    operators_group: str | None = None
    #: whether the bundle says (older programs did not export operatorsGroup)
    operators_group_known: bool = False
    #: the app's federated credentials (empty in bundles from before them)
    federated_credentials: tuple[FederatedInfo, ...] = ()
    certificate_pem: str | None = field(default=None, repr=False)
    private_key_pem: str | None = field(default=None, repr=False)

    def _repr_pretty_(self, printer: Any, cycle: bool) -> None:
        # IPython-style pretty-printers (IPython, Hypothesis) list a dataclass's fields whatever
        # their repr setting; make them print repr(), which leaves the key and certificate out.
        printer.text(repr(self))


def custom_cloud_allowed(explicit: bool | None = None) -> bool:
    """Whether custom-cloud bundles are allowed: ``explicit`` if given, else the environment variable."""
    if explicit is not None:
        return explicit
    return os.environ.get(ALLOW_CUSTOM_CLOUD_ENV, "").strip() == "1"


def refuse_untrusted_file(path: Path, what: str) -> None:
    """Refuse a file that decides where secrets go unless this user alone controls it.

    It must be a regular file (symlinks are followed to it), owned by the current user, and
    neither group- nor world-accessible (``chmod 600``).

    :raises InputError: naming the file, what is wrong and the fix.
    """
    try:
        info = path.stat()
    except OSError as err:
        raise InputError(f"cannot read {what} {path}: {err.strerror}") from err
    if not stat.S_ISREG(info.st_mode):
        raise InputError(f"{what} {path} is not a regular file")
    if os.name != "posix":
        return
    if info.st_uid != os.getuid():
        raise InputError(
            f"{what} {path} is owned by another user (uid {info.st_uid}): it decides where your tokens are sent; "
            "use a copy you own (and `chmod 600` it)"
        )
    if info.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise InputError(
            f"{what} {path} is accessible to group or others (mode {stat.filemode(info.st_mode)}); it holds secrets "
            f"or decides where they are sent: run `chmod 600 {path}` and try again"
        )


def _check_endpoints(bundle: Bundle, source: str, allow_custom_cloud: bool | None) -> None:
    problems = endpoint_problems(bundle.cloud, bundle.graph_endpoint, bundle.authority_host)
    known = CLOUDS.get(bundle.cloud)
    if known is not None and bundle.graph_scope != known.graph_scope:
        problems.append(
            f"graphScope {bundle.graph_scope!r} is not Microsoft Graph's scope in cloud {bundle.cloud} "
            f"(expected {known.graph_scope})"
        )
    if problems:
        raise InputError("\n".join(f"{source}: {p}" for p in problems))
    if bundle.cloud != CUSTOM_CLOUD:
        return
    hosts = f"identity platform {bundle.authority_host}, Microsoft Graph {bundle.graph_endpoint}"
    if not custom_cloud_allowed(allow_custom_cloud):
        raise InputError(
            f"{source}: cloud 'custom' sends your tokens and client assertions to endpoints that are not Microsoft's "
            f"({hosts}). If you trust them (a sandbox), pass --allow-custom-cloud or set {ALLOW_CUSTOM_CLOUD_ENV}=1"
        )
    log.warning("%s: custom cloud: tokens and client assertions go to %s", source, hosts)


def parse_bundle(document: Any, source: str = "bundle", *, allow_custom_cloud: bool | None = None) -> Bundle:
    """Validate a parsed bundle against the committed schema and its cloud's endpoints; return it.

    :param allow_custom_cloud: accept ``cloud: custom`` (default: the environment variable
        ``REVOKE_OPS_ALLOW_CUSTOM_CLOUD=1``).
    :raises InputError: naming the offending field and what is allowed (never a secret value).
    """
    if isinstance(document, str):
        looks_secret = "PRIVATE KEY" in document or "BEGIN" in document
        raise InputError(
            f"{source}: a bundle is a JSON object of stack outputs, but this file holds a single JSON string"
            + (" (it looks like key material: its content is not shown)" if looks_secret else "")
            + ". Export the whole stack: `pulumi stack output --json --show-secrets > bundle.json`"
        )
    if isinstance(document, dict):
        hidden = sorted(k for k, v in document.items() if v == PULUMI_SECRET_PLACEHOLDER)
        if hidden:
            raise InputError(
                f"{source}: {', '.join(hidden)} hold Pulumi's placeholder {PULUMI_SECRET_PLACEHOLDER!r}: the bundle "
                "was "
                "exported without its secrets. Re-export it with `pulumi stack output --json --show-secrets > "
                "bundle.json` (and `chmod 600 bundle.json`)"
            )
    if isinstance(document, dict) and document.get("schemaVersion") not in (None, BUNDLE_SCHEMA_VERSION):
        raise InputError(
            f"{source}: schemaVersion {document.get('schemaVersion')!r} is not supported by this "
            f"revoke-ops (it reads version {BUNDLE_SCHEMA_VERSION}); upgrade revoke-ops or re-export the bundle"
        )
    validator = jsonschema.Draft202012Validator(bundle_schema())
    errors = sorted(validator.iter_errors(document), key=lambda e: list(e.absolute_path))
    if errors:
        lines = []
        for error in errors[:10]:
            where = "/".join(str(p) for p in error.absolute_path) or "(top level)"
            path = error.absolute_path
            # jsonschema's message quotes the offending value: keep it out for key material and for
            # the whole document (it names only keys for these validators), redact anything else.
            names_only = ("required", "additionalProperties", "dependentRequired")
            secret = (not path and error.validator not in names_only) or (
                bool(path) and path[0] in ("privateKeyPem", "certificatePem")
            )
            detail = error.message
            if secret:
                shape = f"is not of type {error.validator_value!r}" if error.validator == "type" else ""
                detail = shape or f"does not satisfy {error.validator}"
            lines.append(f"{source}: {where}: {redact(detail)}")
        if len(errors) > 10:
            lines.append(f"{source}: ... and {len(errors) - 10} more")
        raise InputError("\n".join(lines))
    certs = tuple(
        CertificateInfo(
            c["slot"],
            c["source"],
            c["thumbprint"],
            c["thumbprintSha256"],
            c["keyId"],
            c["notAfter"],
            c.get("keyVaultCertificate"),
        )
        for c in document["certificates"]
    )
    bundle = Bundle(
        tenant_id=document["tenantId"].lower(),
        client_id=document["clientId"].lower(),
        application_object_id=document["applicationObjectId"],
        service_principal_object_id=document["servicePrincipalObjectId"],
        cloud=document["cloud"],
        authority_host=document["authorityHost"],
        graph_endpoint=document["graphEndpoint"],
        graph_scope=document["graphScope"],
        permission_mode=document["permissionMode"],
        application_permissions=tuple(document["applicationPermissions"]),
        delegated_permissions=tuple(document["delegatedPermissions"]),
        certificates=certs,
        operators_group=(document.get("operatorsGroup") or "").lower() or None,
        operators_group_known="operatorsGroup" in document,
        federated_credentials=tuple(
            FederatedInfo(f["name"], f["issuer"], f["subject"], f["audience"])
            for f in document.get("federatedCredentials", [])
        ),
        certificate_pem=document.get("certificatePem"),
        private_key_pem=document.get("privateKeyPem"),
    )
    _check_endpoints(bundle, source, allow_custom_cloud)
    return bundle


def load_bundle(path: Path, *, allow_custom_cloud: bool | None = None) -> Bundle:
    """Read a bundle file: owned by this user and 0600, UTF-8 JSON, valid, endpoints its cloud's.

    :param allow_custom_cloud: accept ``cloud: custom`` (default: ``REVOKE_OPS_ALLOW_CUSTOM_CLOUD=1``).
    :raises InputError: unreadable file, not UTF-8, invalid JSON, schema violations, loose
        permissions or another owner, endpoints that are not the cloud's.
    """
    refuse_untrusted_file(path, "the credentials bundle")
    try:
        data = path.read_bytes()
    except OSError as err:
        raise InputError(f"cannot read the credentials bundle {path}: {err.strerror}") from err
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        raise InputError(
            f"{path} is not UTF-8 text (invalid byte at offset {err.start}): a bundle is the JSON that "
            "`pulumi stack output --json --show-secrets` prints; re-export it"
        ) from None
    try:
        document = json.loads(text)
    except json.JSONDecodeError as err:
        raise InputError(f"{path} is not JSON (line {err.lineno}, column {err.colno}): {err.msg}") from None
    return parse_bundle(document, str(path), allow_custom_cloud=allow_custom_cloud)
