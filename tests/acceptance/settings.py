"""What the acceptance suite reads from the environment, and the checks it applies (pure functions).

The variables are the azuread provider's own (``ARM_*``, what ``pulumi up`` signs in with), Pulumi's
passphrase, and ``REVOKE_ACC_*`` for the test tenant's disposable user and options.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta

from revoke_ops.facts import CLOUDS

#: The switch: nothing runs against a tenant unless it is set to 1.
SWITCH = "REVOKE_ACC"

#: Every variable the suite reads, with what it means (README "Acceptance tests" repeats this).
VARIABLES: dict[str, str] = {
    "REVOKE_ACC": "1 to run the acceptance suite against a real test tenant",
    "ARM_TENANT_ID": "the test tenant's id (directory id)",
    "ARM_CLIENT_ID": "the deployer app's client id (the azuread provider signs in with it)",
    "ARM_CLIENT_CERTIFICATE_PATH": "deployer credential, one of: a PKCS#12 file (+ ARM_CLIENT_CERTIFICATE_PASSWORD)",
    "ARM_CLIENT_SECRET": "deployer credential, one of: a client secret",
    "ARM_USE_OIDC": "deployer credential, one of: true, with ARM_OIDC_TOKEN, ARM_OIDC_TOKEN_FILE_PATH or a CI token",
    "PULUMI_CONFIG_PASSPHRASE": "encrypts the throwaway stack's secrets (its private key) in the temporary state",
    "REVOKE_ACC_USER_ID": "object id of a disposable test user whose sessions may be revoked",
    "REVOKE_ACC_USER_UPN": "that user's userPrincipalName",
    "REVOKE_ACC_GROUP_ID": "optional: a group holding only disposable users, the test user among them",
    "REVOKE_ACC_CLOUD": "optional: public (default), usgovernment, usgovernmentdod or china",
    "REVOKE_ACC_DEVICE_CODE": "optional: 1 to sign in as the test user with device code and run `revoke-ops me`",
    "REVOKE_ACC_CONTAIN": "optional: 1 to `contain` the (cloud-only) test user too: disabled, revoked, then undone",
    "REVOKE_ACC_SYNCED_USER_ID": (
        "optional: object id of a disposable user synchronised from on-premises AD (hybrid tenant): "
        "`contain` must revoke it and report `on-premises synced` (its account is not changed)"
    ),
    "REVOKE_ACC_CONSENT_WAIT": "optional: seconds `doctor --wait` waits for consent to replicate (default 900)",
    "REVOKE_ACC_SETTLE": "optional: seconds to wait for signInSessionsValidFromDateTime to move (default 300)",
}

#: Values that must never be shown, even inside a failing command's output.
SECRET_VARIABLES = (
    "ARM_CLIENT_SECRET",
    "ARM_CLIENT_CERTIFICATE_PASSWORD",
    "ARM_OIDC_TOKEN",
    "PULUMI_CONFIG_PASSPHRASE",
)

#: The client's clock may be ahead of Graph's by this much when comparing timestamps.
SKEW = timedelta(seconds=120)

GUID = re.compile(r"^[0-9a-fA-F]{8}-([0-9a-fA-F]{4}-){3}[0-9a-fA-F]{12}$")


class AcceptanceError(Exception):
    """A step failed (or the settings are wrong); the message names the step and what was seen."""


def skip_reason(environ: Mapping[str, str]) -> str | None:
    """Why the suite does not run here, naming what to set; ``None`` when it is switched on."""
    if environ.get(SWITCH) == "1":
        return None
    needed = "REVOKE_ACC=1, ARM_TENANT_ID, ARM_CLIENT_ID, one deployer credential (ARM_CLIENT_CERTIFICATE_PATH, "
    needed += "ARM_CLIENT_SECRET or ARM_USE_OIDC=true), PULUMI_CONFIG_PASSPHRASE, REVOKE_ACC_USER_ID and "
    needed += "REVOKE_ACC_USER_UPN"
    return f"acceptance tests against a real tenant not run: set {needed} (README, 'Acceptance tests')"


@dataclass(frozen=True)
class Settings:
    """The test tenant, as the operator described it in the environment."""

    tenant_id: str
    deployer_client_id: str
    deployer_credential: str  # certificate | secret | oidc
    user_id: str
    user_upn: str
    group_id: str | None = None
    cloud: str = "public"
    device_code: bool = False
    contain: bool = False
    synced_user_id: str | None = None
    consent_wait: float = 900.0
    settle: float = 300.0

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> Settings:
        """Read and check every variable; one error lists every problem.

        :raises AcceptanceError: naming each missing or invalid variable and what is allowed.
        """
        problems: list[str] = []

        def get(name: str) -> str:
            value = environ.get(name, "").strip()
            if not value:
                problems.append(f"{name} is not set ({VARIABLES[name]})")
            return value

        def guid(name: str, required: bool = True) -> str:
            value = get(name) if required else environ.get(name, "").strip()
            if value and not GUID.match(value):
                problems.append(f"{name} must be a GUID (got {value!r})")
            return value

        def seconds(name: str, default: float) -> float:
            text = environ.get(name, "").strip()
            if not text:
                return default
            try:
                value = float(text)
            except ValueError:
                value = -1.0
            if value <= 0:
                problems.append(f"{name} must be a positive number of seconds (got {text!r})")
            return value

        tenant = guid("ARM_TENANT_ID")
        client = guid("ARM_CLIENT_ID")
        kinds = [
            kind
            for kind, present in (
                ("certificate", bool(environ.get("ARM_CLIENT_CERTIFICATE_PATH"))),
                ("secret", bool(environ.get("ARM_CLIENT_SECRET"))),
                ("oidc", environ.get("ARM_USE_OIDC", "").lower() == "true"),
            )
            if present
        ]
        if len(kinds) != 1:
            problems.append(
                "set exactly one deployer credential: ARM_CLIENT_CERTIFICATE_PATH, ARM_CLIENT_SECRET or "
                f"ARM_USE_OIDC=true (found {', '.join(kinds) or 'none'})"
            )
        get("PULUMI_CONFIG_PASSPHRASE")
        user_id = guid("REVOKE_ACC_USER_ID")
        upn = get("REVOKE_ACC_USER_UPN")
        if upn and "@" not in upn:
            problems.append(f"REVOKE_ACC_USER_UPN must be a userPrincipalName like user@domain (got {upn!r})")
        group = guid("REVOKE_ACC_GROUP_ID", required=False)
        cloud = environ.get("REVOKE_ACC_CLOUD", "").strip() or "public"
        if cloud not in CLOUDS:
            problems.append(f"REVOKE_ACC_CLOUD must be one of {', '.join(CLOUDS)} (got {cloud!r})")
        device = environ.get("REVOKE_ACC_DEVICE_CODE", "").strip()
        if device not in ("", "0", "1"):
            problems.append(f"REVOKE_ACC_DEVICE_CODE must be 1 or 0 (got {device!r})")
        contain = environ.get("REVOKE_ACC_CONTAIN", "").strip()
        if contain not in ("", "0", "1"):
            problems.append(f"REVOKE_ACC_CONTAIN must be 1 or 0 (got {contain!r})")
        synced = guid("REVOKE_ACC_SYNCED_USER_ID", required=False)
        if synced and user_id and synced.lower() == user_id.lower():
            problems.append("REVOKE_ACC_SYNCED_USER_ID must name another user than REVOKE_ACC_USER_ID (a synced one)")
        consent_wait = seconds("REVOKE_ACC_CONSENT_WAIT", 900.0)
        settle = seconds("REVOKE_ACC_SETTLE", 300.0)
        if problems:
            raise AcceptanceError("acceptance settings: " + "; ".join(problems))
        return cls(
            tenant_id=tenant,
            deployer_client_id=client,
            deployer_credential=kinds[0],
            user_id=user_id,
            user_upn=upn,
            group_id=group or None,
            cloud=cloud,
            device_code=device == "1",
            contain=contain == "1",
            synced_user_id=synced or None,
            consent_wait=consent_wait,
            settle=settle,
        )


def wants_containment(settings: Settings) -> bool:
    """Whether the throwaway stack needs containmentPermissions (a `contain` step will run)."""
    return settings.contain or settings.synced_user_id is not None


def valid_from_moved(before: datetime | None, after: datetime | None, sent_at: datetime) -> bool:
    """Whether a revocation sent at ``sent_at`` shows in ``signInSessionsValidFromDateTime``.

    The value must be readable, later than it was before, and not older than the moment the request
    was sent (less :data:`SKEW` for the client's clock).
    """
    if after is None:
        return False
    if before is not None and after <= before:
        return False
    return after >= sent_at.replace(microsecond=0) - SKEW


def redact(text: str, environ: Mapping[str, str]) -> str:
    """``text`` with every secret variable's value replaced by its name."""
    for name in SECRET_VARIABLES:
        value = environ.get(name)
        if value and len(value) >= 4:
            text = text.replace(value, f"<{name}>")
    return text
