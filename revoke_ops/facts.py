"""Small shared facts: Microsoft Graph well-known ids, national clouds, the bundle schema.

This module is deliberately light (standard library only). ``provisioning`` (the Pulumi side),
``revoke_ops`` (the operator side) and ``sandbox`` all read it, so the three agree on ids,
endpoints and the credentials-bundle contract without importing each other's heavy dependencies.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any, Final
from urllib.parse import urlsplit

__all__ = [
    "BUNDLE_SCHEMA_VERSION",
    "CLOUDS",
    "CUSTOM_CLOUD",
    "GRAPH_APP_ID",
    "READ_PERMISSIONS",
    "REVOKE_PERMISSION",
    "Cloud",
    "GraphPermission",
    "bundle_schema",
    "endpoint_problems",
    "permission",
]

#: Application (client) id of Microsoft Graph, the same in every tenant and cloud.
GRAPH_APP_ID: Final = "00000003-0000-0000-c000-000000000000"

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
    )
}


def permission(name: str) -> GraphPermission:
    """Return the known Graph permission called ``name`` (revoke or read permission).

    :raises KeyError: for a permission this project does not use.
    """
    if name == REVOKE_PERMISSION.name:
        return REVOKE_PERMISSION
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


#: The cloud name for endpoints that are not a Microsoft national cloud (a sandbox, an emulator).
CUSTOM_CLOUD: Final = "custom"


def _url_problems(what: str, url: str) -> list[str]:
    """Problems of an endpoint URL whatever the cloud: https only, no userinfo, query or fragment."""
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018  # raises ValueError for a port that is not a number
    except ValueError:
        return [f"{what} {url!r} is not a valid URL"]
    problems = []
    if parts.scheme != "https":
        problems.append(f"{what} {url!r} must use https (got {parts.scheme or 'no scheme'!r})")
    if parts.username is not None or parts.password is not None or "@" in parts.netloc:
        # https://login.microsoftonline.com@127.0.0.1 sends the request to 127.0.0.1.
        problems.append(f"{what} {url!r} must not hold user information ('...@host'): the host is after the '@'")
    if parts.query or parts.fragment or url.rstrip().endswith(("?", "#")):
        problems.append(f"{what} {url!r} must not have a query or fragment")
    if not parts.hostname:
        problems.append(f"{what} {url!r} has no host")
    return problems


def _same_endpoint(url: str, expected: str) -> bool:
    """Whether ``url`` is ``expected``: same host, default port (443 or none), same path."""
    parts, want = urlsplit(url), urlsplit(expected)
    return (
        parts.scheme == "https"
        and parts.hostname == want.hostname
        and parts.port in (None, 443)
        and parts.path.rstrip("/") == want.path.rstrip("/")
    )


def endpoint_problems(cloud: str, graph_endpoint: str, authority_host: str) -> list[str]:
    """What is wrong with a cloud's endpoints, as sentences naming the value and what is allowed.

    For a Microsoft national cloud (:data:`CLOUDS`) both hosts must be exactly that cloud's (an
    explicit ``:443`` is tolerated, any other port is not). ``custom`` accepts other https hosts
    (a sandbox, an emulator): callers must still require an explicit opt-in for it, since a custom
    endpoint receives the Graph token or the client assertion. URLs with user information
    (``https://login.microsoftonline.com@127.0.0.1``), a query or fragment, or a scheme other than
    https are refused for every cloud. An empty list means the endpoints are acceptable.
    """
    problems = _url_problems("graphEndpoint", graph_endpoint) + _url_problems("authorityHost", authority_host)
    if cloud == CUSTOM_CLOUD:
        return problems
    known = CLOUDS.get(cloud)
    if known is None:
        return [*problems, f"cloud {cloud!r} is not one of {', '.join([*CLOUDS, CUSTOM_CLOUD])}"]
    if problems:
        return problems
    if not _same_endpoint(graph_endpoint, known.graph_endpoint):
        problems.append(
            f"graphEndpoint {graph_endpoint!r} is not Microsoft Graph of cloud {cloud} (expected "
            f"{known.graph_endpoint}); any other endpoint needs cloud {CUSTOM_CLOUD!r} and an explicit opt-in"
        )
    if not _same_endpoint(authority_host, known.authority_host):
        problems.append(
            f"authorityHost {authority_host!r} is not the identity platform of cloud {cloud} (expected "
            f"{known.authority_host}); any other host needs cloud {CUSTOM_CLOUD!r} and an explicit opt-in"
        )
    return problems


@cache
def bundle_schema() -> dict[str, Any]:
    """Return the committed JSON Schema of the credentials bundle (the stack outputs)."""
    text = resources.files(__package__).joinpath("bundle.schema.json").read_text("utf-8")
    schema: dict[str, Any] = json.loads(text)
    return schema
