"""Credentials for Microsoft Graph, from azure-identity only, one module per kind.

- :mod:`.certificate`: app-only with a certificate (the bundle's key, ``--certificate``, or the
  azure-identity environment variables);
- :mod:`.platform`: azure-identity's managed identity, workload identity and Azure Pipelines
  credentials;
- :mod:`.federated`: GitHub Actions' OIDC token as the client assertion (a federated credential);
- :mod:`.keyvault`: a non-exportable Key Vault certificate; the vault signs each client assertion;
- :mod:`.delegated`: an operator signs in (device code or an interactive browser), once per command;
  :mod:`.device_code` keeps a device code across a transient failure so a retry does not ask again;
- :mod:`.tenant`: the one place that decides tenant, client id and endpoints for all of them;
- :mod:`.identity`: the typed :class:`Identity` they all produce, and error translation.

azure-core's network logging (``logging_enable``) writes client assertions and tokens: it is never
switched on here, not even under ``--debug``.
"""

from __future__ import annotations

from revoke_ops.credentials.certificate import bundle_certificate_problems, certificate_identity, key_and_certificate
from revoke_ops.credentials.delegated import DELEGATED_METHODS, delegated_identity
from revoke_ops.credentials.federated import github_actions_identity
from revoke_ops.credentials.identity import (
    CredentialKind,
    Identity,
    ca_bundle,
    certificate_days_left,
    explain_auth_error,
    token_claims,
)
from revoke_ops.credentials.keyvault import key_vault_identity
from revoke_ops.credentials.platform import PLATFORM_KINDS, platform_identity
from revoke_ops.credentials.tenant import Where, resolve_where
from revoke_ops.errors import TransientAuthError

__all__ = [
    "DELEGATED_METHODS",
    "PLATFORM_KINDS",
    "CredentialKind",
    "Identity",
    "TransientAuthError",
    "Where",
    "bundle_certificate_problems",
    "ca_bundle",
    "certificate_days_left",
    "certificate_identity",
    "delegated_identity",
    "explain_auth_error",
    "github_actions_identity",
    "key_and_certificate",
    "key_vault_identity",
    "platform_identity",
    "resolve_where",
    "token_claims",
]
