"""The credentials bundle: the stack outputs that ``revoke-ops`` reads.

``pulumi stack output --json --show-secrets`` prints exactly this mapping; its JSON Schema is
committed as ``revoke_ops/bundle.schema.json`` (see :func:`revoke_ops.facts.bundle_schema`).
"""

from __future__ import annotations

from typing import Any

import pulumi

from provisioning.component import RevokerApp
from provisioning.config import StackConfig
from revoke_ops.facts import BUNDLE_SCHEMA_VERSION

__all__ = ["bundle_outputs"]


def bundle_outputs(cfg: StackConfig, app: RevokerApp) -> dict[str, pulumi.Input[Any]]:
    """Return the stack outputs, in the bundle schema's order, for ``pulumi.export``."""
    outputs: dict[str, pulumi.Input[Any]] = {
        "schemaVersion": BUNDLE_SCHEMA_VERSION,
        "tenantId": cfg.tenant_id,
        "clientId": app.client_id,
        "applicationObjectId": app.application_object_id,
        "servicePrincipalObjectId": app.service_principal_object_id,
        "cloud": cfg.cloud.name,
        "authorityHost": cfg.cloud.authority_host,
        "graphEndpoint": cfg.cloud.graph_endpoint,
        "graphScope": cfg.cloud.graph_scope,
        "permissionMode": cfg.permission_mode,
        "applicationPermissions": list(cfg.application_permissions),
        "delegatedPermissions": list(cfg.delegated_permissions),
        "certificates": app.certificates,
        "federatedCredentials": app.federated_credentials,
        # revoke-ops doctor warns when delegated sign-in is open to the whole tenant.
        "operatorsGroup": cfg.operators_group,
    }
    if app.certificate_pem is not None and app.private_key_pem is not None:
        outputs["certificatePem"] = app.certificate_pem
        outputs["privateKeyPem"] = pulumi.Output.secret(app.private_key_pem)
    return outputs
