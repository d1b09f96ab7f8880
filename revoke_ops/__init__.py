"""revoke_ops: revoke Microsoft Entra users' sign-in sessions with the provisioned credentials.

The Python API behaves like the ``revoke-ops`` command::

    import asyncio
    from revoke_ops import RevokeRequest, certificate_identity, load_bundle, revoke

    identity = certificate_identity(bundle=load_bundle(Path("bundle.json")))
    result = asyncio.run(revoke(identity, RevokeRequest(group="<group id>", exclude=["breakglass@contoso.com"])))
    print(result.summary.counts, result.journal, result.exit_code)

Heavy dependencies (msgraph-sdk, azure-identity) load on first use, so ``revoke_ops.facts`` stays
light for the provisioning side.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_EXPORTS = {
    "Bundle": "revoke_ops.bundle",
    "load_bundle": "revoke_ops.bundle",
    "Identity": "revoke_ops.credentials",
    "certificate_identity": "revoke_ops.credentials",
    "delegated_identity": "revoke_ops.credentials",
    "platform_identity": "revoke_ops.credentials",
    "CredentialKind": "revoke_ops.credentials",
    "TransientAuthError": "revoke_ops.errors",
    "harden_process": "revoke_ops.hardening",
    "revoke_me": "revoke_ops.me",
    "MeResult": "revoke_ops.me",
    "EngineOptions": "revoke_ops.engine",
    "Summary": "revoke_ops.engine",
    "OUTCOMES": "revoke_ops.engine",
    "RevokeOpsError": "revoke_ops.errors",
    "InputError": "revoke_ops.errors",
    "AuthError": "revoke_ops.errors",
    "MissingPermissionError": "revoke_ops.errors",
    "RevokeRequest": "revoke_ops.run",
    "RunResult": "revoke_ops.run",
    "revoke": "revoke_ops.run",
    "ContainRequest": "revoke_ops.contain",
    "ContainResult": "revoke_ops.contain",
    "contain": "revoke_ops.contain",
    "undo_contain": "revoke_ops.undo",
    "UndoResult": "revoke_ops.undo",
    "verify": "revoke_ops.verify",
    "VerifyResult": "revoke_ops.verify",
    "doctor": "revoke_ops.doctor",
    "DoctorReport": "revoke_ops.doctor",
}

__all__ = ["__version__", *sorted(_EXPORTS)]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'revoke_ops' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value
