"""Exceptions of revoke_ops: one root, a subclass only where a caller acts differently."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit


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
    """The identity platform failed for now (5xx, AADSTS90033 and the like, network): retry later.

    A ``ServiceError``: when it persists before anything changed the run exits 4 (service), and
    mid-run the engine pauses and retries before it gives up with the summary and a resume hint.
    """


class TransportError(RevokeOpsError):
    """A request may not have reached Graph (connection error, timeout): safe to retry."""


class UnreadableResponseError(RevokeOpsError):
    """Graph answered, but the answer could not be read (or is not the shape asked for): it may have happened."""


class GraphRequestError(RevokeOpsError):
    """A read answered with an error status; ``response`` is the :class:`revoke_ops.graph.GraphResponse`.

    ``status`` and ``code`` keep what Graph said (``Request_ResourceNotFound``, ...).
    """

    def __init__(self, response: Any, url: str) -> None:
        self.response = response
        self.status: int = response.status
        self.code: str | None = response.error_code
        path = urlsplit(url).path
        super().__init__(f"GET {path} answered {self.status} {self.code or ''}: {response.error_message}".strip())


#: Process exit codes by error class (the CLI's ``ExitCode`` values): usage 2, auth 3, service 4,
#: anything else 1 (not everything revoked).
EXIT_USAGE, EXIT_AUTH, EXIT_SERVICE, EXIT_OTHER = 2, 3, 4, 1


def exit_code_for(err: BaseException) -> int:
    """The exit code for an error that ended a command (one mapping for the CLI and result objects)."""
    if isinstance(err, InputError):
        return EXIT_USAGE
    if isinstance(err, ServiceError):  # before AuthError: a transient token failure is the service's
        return EXIT_SERVICE
    if isinstance(err, AuthError):
        return EXIT_AUTH
    if isinstance(err, (TransportError, UnreadableResponseError, GraphRequestError)):
        return EXIT_SERVICE
    return EXIT_OTHER
