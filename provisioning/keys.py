"""The ``revoke-sessions:`` configuration keys as one declarative table: name, type, default, check.

``KEYS`` is the single source: the loader reads each key through it, ``DEFAULTS`` derives from it,
and a test holds Pulumi.yaml's ``config:`` block (type and default of every key) equal to it.
Rules that involve more than one key (e.g. ``operatorsGroup`` only with delegated sign-in) live
in :mod:`provisioning.config`; a key's own rule lives here, in its ``check``.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final, Literal

from revoke_ops.facts import CLOUDS, CONTAINMENT_PERMISSIONS, READ_PERMISSIONS, REVOKE_PERMISSION
from revoke_ops.redact import redact

__all__ = [
    "DEFAULTS",
    "KEYS",
    "NAMESPACE",
    "PERMISSION_MODES",
    "Key",
    "Reader",
    "is_guid",
    "qualified",
    "show",
]

NAMESPACE: Final = "revoke-sessions"
PERMISSION_MODES: Final = ("application", "delegated", "both")
DISPLAY_NAME_MAX: Final = 120

#: What a check returns: the problems of one value, each worded to follow the key's name.
Problems = list[str]


def qualified(name: str) -> str:
    """``revoke-sessions:<name>``, as a deployer writes the key."""
    return f"{NAMESPACE}:{name}"


#: What an error message says instead of a value that looks like a key, a certificate or a token.
KEY_MATERIAL = "(a value that looks like key material: not shown)"


def show(value: object) -> str:
    """A value for an error message, cut to 80 characters; never key material (issue 10 #6).

    A PEM block, a token or a key-like base64 run pasted under the wrong key is not quoted: a
    validation message ends up in ``pulumi up`` output and CI logs.
    """
    if redact(str(value)) != str(value):
        return KEY_MATERIAL
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def is_guid(value: object) -> bool:
    """Whether ``value`` is a GUID in its 36-character form (as Entra shows object ids)."""
    try:
        uuid.UUID(str(value))
    except (ValueError, AttributeError, TypeError):
        return False
    return isinstance(value, str) and len(value) == 36


class Reader:
    """Parses raw config values (as Pulumi hands them over: strings, JSON text) and collects problems."""

    def __init__(self, raw: Mapping[str, Any]) -> None:
        self.raw = raw
        self.problems: list[str] = []

    def fail(self, key: str, message: str) -> None:
        """Record a problem with ``key`` (``message`` follows the key's name)."""
        self.problems.append(f"{qualified(key)} {message}")

    def value(self, key: str, default: Any) -> Any:
        """The raw value of ``key``, or ``default`` when it is not set."""
        if key not in self.raw or self.raw[key] is None:
            return default
        return self.raw[key]

    def structured(self, key: str, default: Any) -> Any:
        """A list or object value, parsed from JSON text when Pulumi hands it over as text."""
        value = self.value(key, default)
        if isinstance(value, str):
            try:
                return json.loads(value)
            except json.JSONDecodeError:
                self.fail(key, f"must be a YAML list (got {show(value)})")
                return default
        return value

    def string(self, key: str, default: str) -> str:
        value = self.value(key, default)
        if not isinstance(value, str):
            self.fail(key, f"must be a string (got {show(value)})")
            return default
        return value.strip()

    def boolean(self, key: str, default: bool) -> bool:
        value = self.value(key, default)
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.strip().lower() in ("true", "false"):
            return value.strip().lower() == "true"
        self.fail(key, f"must be true or false (got {show(value)})")
        return default

    def string_list(self, key: str, default: list[str]) -> list[str]:
        value = self.structured(key, default)
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            self.fail(key, f"must be a list of strings (got {show(value)})")
            return list(default)
        return [v.strip() for v in value]


# --- checks of one value ---------------------------------------------------------------------


def _one_of(allowed: tuple[str, ...]) -> Callable[[Any], Problems]:
    def check(value: Any) -> Problems:
        return [] if value in allowed else [f"must be one of {', '.join(allowed)} (got {show(value)})"]

    return check


def _display_name(value: str) -> Problems:
    if not value or len(value) > DISPLAY_NAME_MAX:
        return [f"must be 1 to {DISPLAY_NAME_MAX} characters (got {show(value)})"]
    if not value.isprintable():
        return [f"must be one line of printable characters, no newlines or tabs (got {show(value)})"]
    return []


def _read_permissions(value: list[str]) -> Problems:
    problems = [
        f"must list only {', '.join(READ_PERMISSIONS)} (got {show(name)}); {REVOKE_PERMISSION.name} is always granted"
        for name in value
        if name not in READ_PERMISSIONS
    ]
    if len(set(value)) != len(value):
        problems.append(f"lists a permission more than once (got {show(value)})")
    return problems


def _containment_permissions(value: list[str]) -> Problems:
    problems = [
        f"must list only {', '.join(CONTAINMENT_PERMISSIONS)} (got {show(name)}); they let `revoke-ops contain` "
        "block sign-in (Graph's least-privileged pair for accountEnabled)"
        for name in value
        if name not in CONTAINMENT_PERMISSIONS
    ]
    if len(set(value)) != len(value):
        problems.append(f"lists a permission more than once (got {show(value)})")
    return problems


def _object_ids(what: str) -> Callable[[list[str]], Problems]:
    def check(value: list[str]) -> Problems:
        problems = [f"must list {what} object ids (GUIDs) (got {show(item)})" for item in value if not is_guid(item)]
        lowered = [i.lower() for i in value]
        duplicates = sorted({i for i in lowered if lowered.count(i) > 1})
        if duplicates:
            problems.append(f"lists {', '.join(duplicates)} more than once")
        return problems

    return check


def _group_id(value: str) -> Problems:
    return [] if not value or is_guid(value) else [f"must be a group object id (a GUID) (got {show(value)})"]


# --- the table -------------------------------------------------------------------------------

KeyType = Literal["string", "boolean", "array", "structured"]


@dataclass(frozen=True)
class Key:
    """One configuration key.

    :param type: as Pulumi.yaml declares it; ``structured`` (a list of objects) cannot be declared
        in Pulumi's type system and is documented there in a comment instead.
    :param check: the value's own rules; returns one message per problem.
    """

    name: str
    type: KeyType
    default: Any
    check: Callable[[Any], Problems] | None = None

    def read(self, reader: Reader) -> Any:
        """Read this key's value (or its default), recording its problems on ``reader``."""
        if self.type == "string":
            value: Any = reader.string(self.name, self.default)
        elif self.type == "boolean":
            value = reader.boolean(self.name, self.default)
        elif self.type == "array":
            value = reader.string_list(self.name, self.default)
        else:
            value = reader.structured(self.name, self.default)
        for problem in self.check(value) if self.check is not None else ():
            reader.fail(self.name, problem)
        return value


KEYS: Final[tuple[Key, ...]] = (
    Key("displayName", "string", "revoke-sessions", _display_name),
    Key("permissionMode", "string", "application", _one_of(PERMISSION_MODES)),
    Key("readPermissions", "array", ["User.Read.All"], _read_permissions),
    Key("containmentPermissions", "array", [], _containment_permissions),
    Key("delegatedConsentUsers", "array", [], _object_ids("user")),
    Key("operatorsGroup", "string", "", _group_id),
    Key("grantToPrincipals", "array", [], _object_ids("service principal")),
    Key("owners", "array", [], _object_ids("user or service principal")),
    Key("protect", "boolean", False),
    Key("cloud", "string", "public", _one_of((*CLOUDS, "custom"))),
    # Checked together with `cloud` (provisioning.config): they apply only to cloud custom.
    Key("authorityHost", "string", ""),
    Key("graphEndpoint", "string", ""),
    Key("graphScope", "string", ""),
    # Its slots are read by provisioning.slots.
    Key("certificates", "structured", [{"name": "primary", "rsaBits": 2048, "validityDays": 365}]),
    # Read by provisioning.federated.
    Key("federatedCredentials", "structured", []),
)

#: The default of every key Pulumi.yaml declares (all but the structured ones), as it declares it.
DEFAULTS: Final[dict[str, Any]] = {k.name: k.default for k in KEYS if k.type != "structured"}
