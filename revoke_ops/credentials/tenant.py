"""One place that decides the tenant, the client id and the endpoints, for every kind of credential.

A bundle is authoritative: it names its tenant, application and cloud, so ``--tenant-id`` or
``--cloud`` beside it is a conflict, refused (an operator who typed them expects them to count).
Without a bundle: the options, then azure-identity's environment variables (``AZURE_TENANT_ID``,
``AZURE_CLIENT_ID``, ``AZURE_AUTHORITY_HOST``), then the public cloud.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from revoke_ops.errors import InputError
from revoke_ops.facts import CLOUDS

if TYPE_CHECKING:
    from revoke_ops.bundle import Bundle

__all__ = ["Where", "resolve_where"]


@dataclass(frozen=True, kw_only=True)
class Where:
    """The tenant and application to sign in to, and where tokens and requests go."""

    tenant_id: str | None
    client_id: str | None
    authority_host: str
    graph_endpoint: str
    graph_scope: str


def _authority_cloud(value: str, cloud: str | None) -> str:
    """The national cloud whose authority host is ``value`` (AZURE_AUTHORITY_HOST)."""
    url = value if "://" in value else f"https://{value}"
    parts = urlsplit(url)
    host = parts.hostname or ""
    matching = [name for name, c in CLOUDS.items() if urlsplit(c.authority_host).hostname == host]
    if parts.scheme != "https" or parts.username or parts.port not in (None, 443) or not matching:
        raise InputError(
            f"AZURE_AUTHORITY_HOST {value!r} is not the authority host of a Microsoft cloud "
            f"({', '.join(sorted({c.authority_host for c in CLOUDS.values()}))}); for any other endpoint use a "
            "bundle with cloud 'custom'"
        )
    if cloud is not None:
        if cloud not in matching:
            raise InputError(
                f"--cloud {cloud} conflicts with AZURE_AUTHORITY_HOST {value!r} (the authority of "
                f"{' / '.join(matching)}): give one, or make them agree"
            )
        return cloud
    if len(matching) > 1:
        raise InputError(
            f"AZURE_AUTHORITY_HOST {value!r} serves {' and '.join(matching)}: pass --cloud to say which Graph to use"
        )
    return matching[0]


def resolve_where(
    *,
    bundle: Bundle | None,
    tenant_id: str | None = None,
    client_id: str | None = None,
    cloud: str | None = None,
    client_id_may_differ: bool = False,
    environ: Mapping[str, str] | None = None,
) -> Where:
    """Decide tenant, client and endpoints.

    :param client_id_may_differ: the credential's own client id may differ from the bundle's
        application (a managed identity or a federated workload identity signs in as itself).
    :raises InputError: an option that conflicts with the bundle, an unknown cloud, an
        ``AZURE_AUTHORITY_HOST`` that is not a Microsoft cloud's or disagrees with ``--cloud``.
    """
    env = os.environ if environ is None else environ
    if bundle is not None:
        conflicts = []
        if tenant_id is not None and tenant_id.lower() != bundle.tenant_id:
            conflicts.append(f"--tenant-id {tenant_id} (the bundle's tenantId is {bundle.tenant_id})")
        elif tenant_id is not None:
            conflicts.append("--tenant-id (the bundle already names the tenant)")
        if cloud is not None:
            conflicts.append(f"--cloud {cloud} (the bundle's cloud is {bundle.cloud})")
        if client_id is not None and not client_id_may_differ:
            conflicts.append(f"--client-id {client_id} (the bundle's clientId is {bundle.client_id})")
        if conflicts:
            raise InputError(
                "these options conflict with --credentials (the bundle decides tenant, application and cloud): "
                + "; ".join(conflicts)
                + ". Drop them, or drop the bundle"
            )
        return Where(
            tenant_id=bundle.tenant_id,
            client_id=client_id if client_id_may_differ and client_id else bundle.client_id,
            authority_host=bundle.authority_host,
            graph_endpoint=bundle.graph_endpoint,
            graph_scope=bundle.graph_scope,
        )
    if cloud is not None and cloud not in CLOUDS:
        raise InputError(f"--cloud must be one of {', '.join(CLOUDS)} (got {cloud!r}); use a bundle for a custom cloud")
    authority_env = env.get("AZURE_AUTHORITY_HOST")
    name = _authority_cloud(authority_env, cloud) if authority_env else (cloud or "public")
    known = CLOUDS[name]
    return Where(
        tenant_id=tenant_id or env.get("AZURE_TENANT_ID") or None,
        client_id=client_id or env.get("AZURE_CLIENT_ID") or None,
        authority_host=known.authority_host,
        graph_endpoint=known.graph_endpoint,
        graph_scope=known.graph_scope,
    )
