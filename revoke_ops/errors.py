"""Exceptions of revoke_ops: one root, a subclass only where a caller acts differently."""

from __future__ import annotations


class RevokeOpsError(Exception):
    """Root of every error revoke_ops raises on purpose."""


class InputError(RevokeOpsError):
    """Local input (a file, an option, a bundle) is invalid; nothing in the tenant has changed."""
