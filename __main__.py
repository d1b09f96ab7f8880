"""revoke-sessions: register the session-revoker application in this stack's tenant.

Wiring only: load and validate the stack config, build the component, export the bundle.
"""

import pulumi

from provisioning.component import RevokerApp, RevokerAppArgs
from provisioning.config import load_from_pulumi
from provisioning.errors import StackConfigError
from provisioning.outputs import bundle_outputs

try:
    config = load_from_pulumi()
except StackConfigError as err:
    # One clear message naming each offending key, without a Python traceback.
    raise pulumi.RunError(str(err)) from None
app = RevokerApp("revoker", RevokerAppArgs(config))
for key, value in bundle_outputs(config, app).items():
    pulumi.export(key, value)
