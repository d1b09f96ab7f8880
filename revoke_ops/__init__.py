"""revoke_ops: revoke Microsoft Entra users' sign-in sessions with the provisioned credentials.

The operations toolkit (credentials, targets, the revocation engine, journal, verify, the
``revoke-ops`` command) is built in later increments; today the package carries the shared facts
(:mod:`revoke_ops.facts`) and the credentials-bundle schema the Pulumi program writes.
"""

__version__ = "0.1.0"

__all__ = ["__version__"]
