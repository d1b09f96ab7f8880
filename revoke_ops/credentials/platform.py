"""azure-identity's own credentials for automation: managed identity, workload identity, Azure Pipelines.

No certificate and no secret on disk: the platform vouches for the caller. The client id of a
managed or workload identity is its own (not necessarily the revoker app's), so ``--client-id`` or
``AZURE_CLIENT_ID`` may differ from the bundle's; tenant and endpoints still come from one place
(:func:`revoke_ops.credentials.tenant.resolve_where`).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from revoke_ops.credentials.identity import CredentialKind, Identity, RenewableCredential, ca_bundle
from revoke_ops.credentials.tenant import resolve_where
from revoke_ops.errors import InputError

if TYPE_CHECKING:
    from revoke_ops.bundle import Bundle

__all__ = ["PLATFORM_KINDS", "platform_identity"]

PLATFORM_KINDS = (CredentialKind.MANAGED_IDENTITY, CredentialKind.WORKLOAD_IDENTITY, CredentialKind.AZURE_PIPELINES)


def platform_identity(
    kind: CredentialKind | str,
    *,
    bundle: Bundle | None = None,
    cloud: str | None = None,
    client_id: str | None = None,
    tenant_id: str | None = None,
    environ: Mapping[str, str] | None = None,
) -> Identity:
    """An identity the platform vouches for.

    :param kind: managed-identity, workload-identity or azure-pipelines.
    :raises InputError: an unknown kind, a missing variable the platform should have set (named),
        options that conflict with the bundle.
    """
    from azure.identity import aio

    chosen = next((k for k in PLATFORM_KINDS if k.value == kind), None)
    if chosen is None:
        raise InputError(f"--credential must be one of {', '.join(k.value for k in PLATFORM_KINDS)} (got {kind!r})")
    env = os.environ if environ is None else environ
    where = resolve_where(
        bundle=bundle, tenant_id=tenant_id, client_id=client_id, cloud=cloud, client_id_may_differ=True, environ=env
    )
    # The platform's client id is the identity's own: the option, else the platform's variable.
    own_client = client_id or env.get("AZURE_CLIENT_ID") or None
    tenant = where.tenant_id or env.get("AZURE_TENANT_ID") or ""
    verify = ca_bundle()
    extra: dict[str, Any] = {"connection_verify": verify} if verify else {}
    make: Callable[[], Any]
    if chosen is CredentialKind.MANAGED_IDENTITY:
        if own_client:
            mi_client = own_client

            def make() -> Any:
                return aio.ManagedIdentityCredential(client_id=mi_client, **extra)

        else:

            def make() -> Any:
                return aio.ManagedIdentityCredential(**extra)

        description = f"managed identity {own_client or '(system-assigned)'}"
    elif chosen is CredentialKind.WORKLOAD_IDENTITY:
        token_file = env.get("AZURE_FEDERATED_TOKEN_FILE")
        if not (tenant and own_client and token_file):
            raise InputError(
                "--credential workload-identity needs AZURE_TENANT_ID, AZURE_CLIENT_ID and AZURE_FEDERATED_TOKEN_FILE "
                "(set by the Kubernetes workload identity webhook)"
            )
        wi = (tenant, own_client, token_file)

        def make() -> Any:
            return aio.WorkloadIdentityCredential(
                tenant_id=wi[0], client_id=wi[1], token_file_path=wi[2], authority=where.authority_host, **extra
            )

        description = f"workload identity {own_client}"
    else:
        connection = env.get("AZURESUBSCRIPTION_SERVICE_CONNECTION_ID")
        own_client = client_id or env.get("AZURESUBSCRIPTION_CLIENT_ID") or None
        tenant = tenant or env.get("AZURESUBSCRIPTION_TENANT_ID", "")
        system_token = env.get("SYSTEM_ACCESSTOKEN")
        if not (tenant and own_client and connection and system_token):
            raise InputError(
                "--credential azure-pipelines needs AZURESUBSCRIPTION_TENANT_ID, AZURESUBSCRIPTION_CLIENT_ID, "
                "AZURESUBSCRIPTION_SERVICE_CONNECTION_ID and SYSTEM_ACCESSTOKEN (an AzureCLI@2 task with a "
                "workload-identity service connection sets them)"
            )
        ap = (tenant, own_client, connection, system_token)

        def make() -> Any:
            return aio.AzurePipelinesCredential(
                tenant_id=ap[0],
                client_id=ap[1],
                service_connection_id=ap[2],
                system_access_token=ap[3],
                authority=where.authority_host,
                **extra,
            )

        description = f"Azure Pipelines service connection {connection}"
    if not tenant:
        raise InputError(
            f"--credential {chosen} needs the tenant id: pass --credentials BUNDLE.json or set AZURE_TENANT_ID"
        )
    credential = RenewableCredential(make)
    # The identity signs in as itself: its own client id (None: the system-assigned managed identity).
    return Identity.signed_in(
        replace(where, tenant_id=tenant, client_id=own_client),
        credential,
        kind=chosen,
        bundle=bundle,
        description=description,
    )
