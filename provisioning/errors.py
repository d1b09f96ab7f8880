"""Exceptions raised by the provisioning package."""

from __future__ import annotations

from revoke_ops.redact import redact


class ProvisioningError(Exception):
    """Root of every error the provisioning package raises on purpose."""


class StackConfigError(ProvisioningError):
    """The stack configuration is invalid; nothing has been declared or changed.

    ``problems`` holds one line per offending key, each naming the key, the value (never key or
    certificate material) and what is allowed.
    """

    def __init__(self, problems: list[str]) -> None:
        # values are shown through keys.show (never key material); redacted again in case one was not
        self.problems = [redact(p) for p in problems]
        if len(self.problems) == 1:
            text = self.problems[0]
        else:
            text = f"{len(self.problems)} problems in the stack configuration:\n" + "\n".join(
                f"  - {p}" for p in self.problems
            )
        super().__init__(text)
