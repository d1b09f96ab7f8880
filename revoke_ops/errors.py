"""Exceptions of revoke_ops: one root, a subclass only where a caller acts differently."""

from __future__ import annotations


class RevokeOpsError(Exception):
    """Root of every error revoke_ops raises on purpose."""


class InputError(RevokeOpsError):
    """Local input (a file, an option, a bundle) is invalid; nothing in the tenant has changed."""


class ServiceError(RevokeOpsError):
    """Microsoft Graph kept failing (5xx, throttling, unreadable answers) before anything was changed.

    ``code`` keeps the service's own error code when there was one.
    """

    def __init__(self, message: str, code: str | None = None) -> None:
        super().__init__(message)
        self.code = code


class AuthError(RevokeOpsError):
    """No usable token, or the whole run lacks a permission; nothing in the tenant has changed.

    ``code`` keeps the service's own code (``AADSTS700027``, ``Authorization_RequestDenied``...).
    """

    def __init__(self, message: str, code: str | None = None) -> None:
        super().__init__(message)
        self.code = code


class MissingPermissionError(AuthError):
    """A requested feature needs a Graph permission the token does not carry."""

    def __init__(self, feature: str, permission: str, have: list[str]) -> None:
        held = ", ".join(have) or "none"
        super().__init__(
            f"{feature} needs the Microsoft Graph permission {permission}, which this token does not carry "
            f"(it has: {held}). Add {permission} to the stack's readPermissions (revoke-sessions:readPermissions) "
            "and run `pulumi up`; consent can take a few minutes to reach new tokens.",
            code="MissingPermission",
        )
        self.feature = feature
        self.permission = permission


class TransientAuthError(ServiceError):
    """The identity platform failed transiently (429/5xx, AADSTS90033, network): retry later.

    Nothing is wrong with the credentials; a run may pause and retry (as for throttling).
    ``code`` is the AADSTS code, ``HTTP<status>`` or ``NetworkError``.
    """
