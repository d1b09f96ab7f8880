"""The Pulumi side of revoke-sessions: stack config, the revoker app component, its mocks.

Never imports msgraph (see DESIGN.md, "doors between the rooms").
"""

from provisioning.errors import ProvisioningError, StackConfigError

__all__ = ["ProvisioningError", "StackConfigError"]
