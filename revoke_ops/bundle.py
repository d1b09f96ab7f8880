"""Read and validate a credentials bundle (the JSON of ``pulumi stack output --json --show-secrets``)."""

from __future__ import annotations

import json
import os
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jsonschema

from revoke_ops.errors import InputError
from revoke_ops.facts import BUNDLE_SCHEMA_VERSION, bundle_schema

__all__ = ["Bundle", "CertificateInfo", "load_bundle", "parse_bundle", "refuse_loose_permissions"]


@dataclass(frozen=True)
class CertificateInfo:
    """One certificate registered on the application."""

    slot: str
    source: str
    thumbprint: str
    thumbprint_sha256: str
    key_id: str
    not_after: str


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
    certificate_pem: str | None = field(default=None, repr=False)
    private_key_pem: str | None = field(default=None, repr=False)

    def _repr_pretty_(self, printer: Any, cycle: bool) -> None:
        # IPython-style pretty-printers (IPython, Hypothesis) list a dataclass's fields whatever
        # their repr setting; make them print repr(), which leaves the key and certificate out.
        printer.text(repr(self))


def refuse_loose_permissions(path: Path, what: str) -> None:
    """Refuse a secret-bearing file that group or others can read.

    :raises InputError: naming the file and the fix (``chmod 600``).
    """
    if os.name != "posix":
        return
    mode = path.stat().st_mode
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise InputError(
            f"{what} {path} is readable by group or others (mode {stat.filemode(mode)}); "
            f"it holds secrets: run `chmod 600 {path}` and try again"
        )


def parse_bundle(document: Any, source: str = "bundle") -> Bundle:
    """Validate a parsed bundle against the committed schema and return it.

    :raises InputError: naming the offending field and what is allowed (never its secret value).
    """
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
            secret = bool(error.absolute_path) and error.absolute_path[0] in ("privateKeyPem", "certificatePem")
            # jsonschema's message quotes the offending value: keep it out for key material.
            detail = f"does not satisfy {error.validator}" if secret else error.message
            lines.append(f"{source}: {where}: {detail}")
        raise InputError("\n".join(lines))
    certs = tuple(
        CertificateInfo(c["slot"], c["source"], c["thumbprint"], c["thumbprintSha256"], c["keyId"], c["notAfter"])
        for c in document["certificates"]
    )
    return Bundle(
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
        certificate_pem=document.get("certificatePem"),
        private_key_pem=document.get("privateKeyPem"),
    )


def load_bundle(path: Path) -> Bundle:
    """Read a bundle file, refusing one that others can read when it holds a private key.

    :raises InputError: unreadable file, invalid JSON, schema violations, loose permissions.
    """
    try:
        text = path.read_text("utf-8-sig")
    except OSError as err:
        raise InputError(f"cannot read the credentials bundle {path}: {err.strerror}") from err
    try:
        document = json.loads(text)
    except json.JSONDecodeError as err:
        raise InputError(f"{path} is not JSON (line {err.lineno}, column {err.colno}): {err.msg}") from None
    bundle = parse_bundle(document, str(path))
    if bundle.private_key_pem is not None:
        refuse_loose_permissions(path, "the credentials bundle")
    return bundle
