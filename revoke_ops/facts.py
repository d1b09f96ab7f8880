"""Small shared facts: Microsoft Graph well-known ids, national clouds, the bundle schema, and the
few helpers both sides must compute identically (certificate thumbprints, RFC 3339 times, the
endpoint rules for a cloud).

This module is deliberately light (standard library only). ``provisioning`` (the Pulumi side),
``revoke_ops`` (the operator side) and ``sandbox`` all read it, so the three agree on ids,
endpoints and the credentials-bundle contract without importing each other's heavy dependencies.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from functools import cache
from importlib import resources
from typing import Any, Final, Literal
from urllib.parse import SplitResult, urlsplit

__all__ = [
    "BUNDLE_SCHEMA_VERSION",
    "CLOUDS",
    "CONTAINMENT_PERMISSIONS",
    "DISABLE_PERMISSION",
    "GRAPH_APP_ID",
    "READ_PERMISSIONS",
    "REVOKE_PERMISSION",
    "TOKEN_EXCHANGE_AUDIENCE",
    "Cloud",
    "GraphPermission",
    "KeyVaultCertificateRef",
    "bundle_schema",
    "endpoint_problems",
    "parse_key_vault_certificate",
    "parse_rfc3339",
    "permission",
    "rfc3339",
    "thumbprint",
    "utc_seconds",
]

#: Application (client) id of Microsoft Graph, the same in every tenant and cloud.
GRAPH_APP_ID: Final = "00000003-0000-0000-c000-000000000000"

#: The audience Entra accepts in federated credentials' tokens (Graph federatedIdentityCredential docs).
TOKEN_EXCHANGE_AUDIENCE: Final = "api://AzureADTokenExchange"  # noqa: S105  # an audience, not a secret

#: Version of the credentials bundle (the stack outputs). Bump on any incompatible change.
BUNDLE_SCHEMA_VERSION: Final = 1


@dataclass(frozen=True)
class GraphPermission:
    """A Microsoft Graph permission as both an app role (application) and a scope (delegated)."""

    name: str
    role_id: str | None
    scope_id: str | None
    used_for: str


REVOKE_PERMISSION: Final = GraphPermission(
    name="User.RevokeSessions.All",
    role_id="77f3a031-c388-4f99-b373-dc68676a979e",
    # Beware: f6a3db3e-... is Member.Read.Hidden, mislabelled in some public scripts.
    scope_id="fc30e98b-8810-4501-81f5-c20a3196387b",
    used_for="revoke users' sign-in sessions",
)

#: The read permissions a stack may add beside the revoke permission (``readPermissions``).
READ_PERMISSIONS: Final[dict[str, GraphPermission]] = {
    p.name: p
    for p in (
        GraphPermission(
            name="User.Read.All",
            role_id="df021288-bdef-4463-88db-98f22de89214",
            scope_id="a154be20-db9c-4678-8ab7-66f6cc099a59",
            used_for=(
                "match targets and exclusions by id and UPN, recognise external users, "
                "verify revocations, whole-tenant runs"
            ),
        ),
        GraphPermission(
            name="GroupMember.Read.All",
            role_id="98830695-27a2-44f7-8c18-0c3ebc9698f6",
            scope_id="bc024368-1153-4739-b217-4326f2e966d0",
            used_for="group targets",
        ),
        GraphPermission(
            name="RoleManagement.Read.Directory",
            role_id="483bed4a-2ad3-4361-a73b-c83ccdbdc53c",
            scope_id="741c54c3-0c1e-44a1-818b-3f97ab4e8c83",
            used_for="revoke privileged users (directory role holders) first",
        ),
        GraphPermission(
            name="AuditLog.Read.All",
            role_id="b0afded3-3588-46d8-8b3d-9842eff778da",
            scope_id="e4c9e354-4dc5-45b8-9e7c-e1393b0b1a20",
            used_for=(
                "revoke users with recent sign-in activity first (read access to the tenant's sign-in and "
                "audit logs; needs Microsoft Entra ID P1/P2)"
            ),
        ),
    )
}


#: Block sign-in (``accountEnabled``). Microsoft Graph "Update user": updating accountEnabled takes
#: User.EnableDisableAccount.All together with User.Read.All as the least-privileged combination;
#: ids as in Microsoft's permissions reference (application 3011c876-..., delegated f92e74e7-...).
DISABLE_PERMISSION: Final = GraphPermission(
    name="User.EnableDisableAccount.All",
    role_id="3011c876-62b7-4ada-afa2-506cbbecc68c",
    scope_id="f92e74e7-2563-467f-9dd0-902688cb5863",
    used_for="block sign-in (accountEnabled false) before revoking: `revoke-ops contain`",
)

#: What a stack may opt in to for containment (``containmentPermissions``): the pair Graph documents.
CONTAINMENT_PERMISSIONS: Final[dict[str, GraphPermission]] = {
    DISABLE_PERMISSION.name: DISABLE_PERMISSION,
    "User.Read.All": READ_PERMISSIONS["User.Read.All"],
}


def permission(name: str) -> GraphPermission:
    """Return the known Graph permission called ``name`` (revoke, read or containment permission).

    :raises KeyError: for a permission this project does not use.
    """
    if name == REVOKE_PERMISSION.name:
        return REVOKE_PERMISSION
    if name == DISABLE_PERMISSION.name:
        return DISABLE_PERMISSION
    return READ_PERMISSIONS[name]


@dataclass(frozen=True)
class Cloud:
    """Where a tenant's identity platform and Microsoft Graph live."""

    name: str
    authority_host: str
    graph_endpoint: str
    graph_scope: str
    #: Names the azuread provider's ``environment`` setting accepts for this cloud.
    azuread_environments: tuple[str, ...]


CLOUDS: Final[dict[str, Cloud]] = {
    c.name: c
    for c in (
        Cloud(
            "public",
            "https://login.microsoftonline.com",
            "https://graph.microsoft.com/v1.0",
            "https://graph.microsoft.com/.default",
            ("global", "public"),
        ),
        Cloud(
            "usgovernment",
            "https://login.microsoftonline.us",
            "https://graph.microsoft.us/v1.0",
            "https://graph.microsoft.us/.default",
            ("usgovernmentl4", "usgovernment"),
        ),
        Cloud(
            "usgovernmentdod",
            "https://login.microsoftonline.us",
            "https://dod-graph.microsoft.us/v1.0",
            "https://dod-graph.microsoft.us/.default",
            ("usgovernmentl5", "dod"),
        ),
        Cloud(
            "china",
            "https://login.chinacloudapi.cn",
            "https://microsoftgraph.chinacloudapi.cn/v1.0",
            "https://microsoftgraph.chinacloudapi.cn/.default",
            ("china",),
        ),
    )
}


@cache
def bundle_schema() -> dict[str, Any]:
    """Return the committed JSON Schema of the credentials bundle (the stack outputs)."""
    text = resources.files(__package__).joinpath("bundle.schema.json").read_text("utf-8")
    schema: dict[str, Any] = json.loads(text)
    return schema


# --- certificate thumbprints ---------------------------------------------------------------------

_PEM_CERTIFICATE = re.compile(rb"-----BEGIN CERTIFICATE-----\s*(.+?)\s*-----END CERTIFICATE-----", re.DOTALL)


def thumbprint(certificate: str | bytes, algorithm: Literal["sha1", "sha256"] = "sha1") -> str:
    """Return a certificate's thumbprint as upper-case hex.

    SHA-1 is what Entra calls the thumbprint (a key credential's ``customKeyIdentifier``, the
    ``x5t`` of a client assertion); SHA-256 is the ``x5t#S256`` form the bundle also records.

    :param certificate: DER bytes, or PEM text/bytes (the first ``CERTIFICATE`` block is used).
    :raises ValueError: when PEM input holds no readable certificate block.
    """
    data = certificate.encode("ascii", "replace") if isinstance(certificate, str) else certificate
    if b"-----BEGIN" in data:
        match = _PEM_CERTIFICATE.search(data)
        if match is None:
            raise ValueError("no BEGIN CERTIFICATE block in the PEM text")
        try:
            data = base64.b64decode(b"".join(match.group(1).split()), validate=True)
        except binascii.Error as err:
            raise ValueError("the BEGIN CERTIFICATE block is not valid base64") from err
    return hashlib.new(algorithm, data).hexdigest().upper()


# --- RFC 3339 times ------------------------------------------------------------------------------

# RFC 3339 section 5.6 date-time, with the 0-9 fractional digits Go's time.MarshalText writes.
_RFC3339 = re.compile(
    r"^(\d{4})-(\d{2})-(\d{2})[Tt](\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,9}))?(?:([Zz])|([+-])(\d{2}):(\d{2}))$"
)


def parse_rfc3339(value: str) -> datetime:
    """Parse an RFC 3339 date-time (any offset, 0 to 9 fractional digits) into an aware datetime.

    Digits beyond microseconds are truncated, as Go's ``Format`` truncates.

    :raises ValueError: naming the value when it is not an RFC 3339 date-time.
    """
    match = _RFC3339.match(value) if isinstance(value, str) else None
    if match is None:
        raise ValueError(f"{value!r} is not an RFC 3339 date-time (e.g. 2027-11-26T16:13:00Z)")
    year, month, day, hour, minute, second, fraction, zulu, sign, off_h, off_m = match.groups()
    try:
        if zulu:
            tz: timezone = UTC
        else:
            offset = timedelta(hours=int(off_h), minutes=int(off_m))
            tz = timezone(offset if sign == "+" else -offset)
        micro = int((fraction or "").ljust(6, "0")[:6])
        return datetime(int(year), int(month), int(day), int(hour), int(minute), int(second), micro, tzinfo=tz)
    except ValueError as err:
        raise ValueError(f"{value!r} is not a valid RFC 3339 date-time ({err})") from err


def rfc3339(moment: datetime, *, fraction: bool = False) -> str:
    """Format an aware datetime in UTC: ``YYYY-MM-DDTHH:MM:SSZ`` (or with microseconds).

    :raises ValueError: for a naive datetime (its zone would be a guess).
    """
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError(f"{moment!r} has no time zone")
    utc = moment.astimezone(UTC)
    return utc.strftime("%Y-%m-%dT%H:%M:%S.%fZ" if fraction else "%Y-%m-%dT%H:%M:%SZ")


def utc_seconds(value: str) -> str:
    """Normalise any RFC 3339 time to UTC whole seconds, ``YYYY-MM-DDTHH:MM:SSZ``.

    This is the form the azuread provider reads key credential dates back in
    (``Format(time.RFC3339)`` of Graph's UTC value) and the form the bundle's ``notAfter`` takes;
    pulumi-tls returns ``validity_end_time`` as Go's ``MarshalText`` writes it (local offset, up to
    nine fractional digits). Fractional seconds are truncated, as Go's ``Format`` does.

    :raises ValueError: naming the value when it is not an RFC 3339 date-time.
    """
    return rfc3339(parse_rfc3339(value))


# --- endpoints of a cloud ------------------------------------------------------------------------

_HOSTNAME = re.compile(
    r"^(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)*[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?$"
)


def _check_url(key: str, value: str, cloud: str, expected: str | None, problems: list[str]) -> SplitResult | None:
    """Append ``value``'s problems as ``key``; return its parts when it could be parsed at all."""
    shown = repr(value) if len(value) <= 100 else repr(value[:97] + "...")
    if not value or any(c.isspace() or ord(c) < 0x21 or c == "\\" for c in value):
        problems.append(f"{key} must be an https:// URL without spaces or backslashes (got {shown})")
        return None
    try:
        parts = urlsplit(value)
        port = parts.port
    except ValueError as err:
        problems.append(f"{key} is not a valid URL: {err} (got {shown})")
        return None
    if parts.scheme.lower() != "https":
        problems.append(f"{key} must use https:// (got {shown})")
    if "@" in parts.netloc:
        problems.append(f"{key} must not carry a user name or password before the host (got {shown})")
    host = (parts.hostname or "").lower()
    if not host or not (_HOSTNAME.match(host) or (":" in host and parts.netloc.startswith("["))):
        problems.append(f"{key} must name a host (got {shown})")
    if parts.query or parts.fragment or value.endswith(("?", "#")):
        problems.append(f"{key} must not have a query or fragment (got {shown})")
    if expected is not None:
        if host != expected:
            problems.append(
                f"{key} must be on {expected} for cloud {cloud} (got {shown}); other hosts need cloud custom"
            )
        if port not in (None, 443):
            problems.append(f"{key} must use the default https port on a Microsoft cloud (got {shown})")
    return parts


def endpoint_problems(cloud: str, graph_endpoint: str, authority_host: str) -> list[str]:
    """Check a cloud's Graph endpoint and authority host before any token is sent to them.

    For ``public``, ``usgovernment``, ``usgovernmentdod`` and ``china`` the hosts must be exactly
    that cloud's (from :data:`CLOUDS`) on the default port; any other host is allowed only with
    cloud ``custom`` (callers decide whether custom clouds are allowed at all). Every URL must be
    ``https://`` without user info, query or fragment; the Graph endpoint's path is ``/v1.0`` and
    the authority host has no path.

    :returns: one message per problem, naming the key (``graphEndpoint``/``authorityHost``), the
        value and what is allowed; empty when the endpoints are acceptable.
    """
    known = CLOUDS.get(cloud)
    if known is None and cloud != "custom":
        return [f"cloud must be one of {', '.join([*CLOUDS, 'custom'])} (got {cloud!r})"]
    problems: list[str] = []
    graph_host = urlsplit(known.graph_endpoint).hostname if known else None
    authority = urlsplit(known.authority_host).hostname if known else None
    graph = _check_url("graphEndpoint", graph_endpoint, cloud, graph_host, problems)
    if graph is not None and graph.path.rstrip("/") != "/v1.0":
        problems.append(f"graphEndpoint must end in /v1.0 (got {graph_endpoint!r})")
    parts = _check_url("authorityHost", authority_host, cloud, authority, problems)
    if parts is not None and parts.path.strip("/"):
        problems.append(f"authorityHost must be https://host without a path (got {authority_host!r})")
    return problems


#: Key Vault's DNS suffixes per cloud (public, US Government, China) and Managed HSM's.
KEY_VAULT_SUFFIXES: Final = (".vault.azure.net", ".vault.usgovcloudapi.net", ".vault.azure.cn", ".managedhsm.azure.net")
_KEY_VAULT_PATH = re.compile(r"^/certificates/(?P<name>[0-9A-Za-z-]{1,127})(?:/(?P<version>[0-9A-Za-z]{32}))?/?$")


@dataclass(frozen=True)
class KeyVaultCertificateRef:
    """A Key Vault certificate URL, ``https://VAULT.vault.azure.net/certificates/NAME[/VERSION]``."""

    vault_url: str
    name: str
    version: str | None
    #: a loopback test vault (the sandbox's), where the SDK's challenge-resource check is relaxed
    loopback: bool


def parse_key_vault_certificate(url: str) -> KeyVaultCertificateRef:
    """Check a Key Vault certificate URL (shared by the stack loader and revoke-ops).

    :raises ValueError: not https, not a Key Vault host (nor loopback), not ``/certificates/NAME[/VERSION]``;
        the message says what is allowed.
    """
    from ipaddress import ip_address

    parts = urlsplit(url)
    host = (parts.hostname or "").lower()
    try:
        loopback = ip_address(host).is_loopback
    except ValueError:
        loopback = host == "localhost"
    match = _KEY_VAULT_PATH.match(parts.path)
    if parts.scheme != "https" or parts.query or parts.fragment or parts.username or match is None:
        raise ValueError(f"must look like https://VAULT.vault.azure.net/certificates/NAME[/VERSION] (got {url!r})")
    if not (loopback or host.endswith(KEY_VAULT_SUFFIXES)):
        raise ValueError(f"{host!r} is not a Key Vault host (one of *{', *'.join(KEY_VAULT_SUFFIXES)})")
    return KeyVaultCertificateRef(f"https://{parts.netloc}", match["name"], match["version"], loopback)
