"""Resource-unit and write costs of a request, from Microsoft Graph's published table.

Source: Microsoft Graph "service-specific throttling limits", identity and access service limits
(base request costs; "Any requests not listed have a base cost of 1"; writes on unlisted paths
cost 1 write; ``$select`` -1, ``$expand`` +1, ``$top`` below 20 -1; never below 1; a cost listed
for ``me/...`` also applies to ``users/{id | userPrincipalName}/...``).
"""

from __future__ import annotations

from dataclasses import dataclass

#: (method, path pattern) -> (base resource units, write cost); "{}" is any key
BASE_COSTS: dict[tuple[str, str], tuple[int, int]] = {
    ("GET", "applications"): (2, 0),
    ("GET", "applications/{}/extensionProperties"): (2, 0),
    ("GET", "contracts"): (3, 0),
    ("POST", "directoryObjects/getByIds"): (3, 0),
    ("GET", "domains/{}/domainNameReferences"): (4, 0),
    ("POST", "getObjectsById"): (3, 0),
    ("GET", "groups/{}/members"): (3, 0),
    ("GET", "groups/{}/transitiveMembers"): (5, 0),
    ("POST", "isMemberOf"): (4, 0),
    ("POST", "me/checkMemberGroups"): (4, 0),
    ("POST", "me/checkMemberObjects"): (4, 0),
    ("POST", "me/getMemberGroups"): (2, 0),
    ("POST", "me/getMemberObjects"): (2, 0),
    ("GET", "me/licenseDetails"): (2, 0),
    ("GET", "me/memberOf"): (2, 0),
    ("GET", "me/ownedObjects"): (2, 0),
    ("GET", "me/transitiveMemberOf"): (2, 0),
    ("GET", "oauth2PermissionGrants"): (2, 0),
    ("GET", "oauth2PermissionGrants/{}"): (2, 0),
    ("GET", "servicePrincipals/{}/appRoleAssignments"): (2, 0),
    ("GET", "subscribedSkus"): (3, 0),
    ("GET", "users"): (2, 0),
}
WRITES = frozenset({"POST", "PATCH", "PUT", "DELETE"})


@dataclass(frozen=True)
class Cost:
    resource_units: int
    writes: int


#: collections whose second segment is an object's key (``groups/{id}``), except these actions
KEYED = frozenset(
    {"applications", "directoryObjects", "domains", "groups", "oauth2PermissionGrants", "servicePrincipals", "users"}
)
ACTIONS = frozenset({"getByIds"})


def _pattern(parts: list[str]) -> str:
    """The table's form of a path: keys as ``{}``, ``users/{key}/...`` as ``me/...``, casts dropped."""
    if parts[:1] == ["users"] and len(parts) > 2:
        parts = ["me", *parts[2:]]
    parts = [p for p in parts if not p.startswith("microsoft.graph.")]
    if len(parts) > 1 and parts[0] in KEYED and parts[1] not in ACTIONS:
        parts = [parts[0], "{}", *parts[2:]]
    return "/".join(parts)


def request_cost(method: str, parts: list[str], query: dict[str, str]) -> Cost:
    """What one request costs the caller's resource-unit and write budgets."""
    base, writes = BASE_COSTS.get((method, _pattern(parts)), (1, 1 if method in WRITES else 0))
    units = base
    if "$select" in query:
        units -= 1
    if "$expand" in query:
        units += 1
    top = query.get("$top", "")
    if top.isdigit() and int(top) < 20:
        units -= 1
    return Cost(max(1, units), writes)
