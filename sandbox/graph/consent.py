"""Admin consent: app role assignments (application permissions) and delegated permission grants."""

from __future__ import annotations

from sandbox import catalog
from sandbox.graph.base import Caller, Context, GraphError, Request, Response, denied, not_found
from sandbox.graph.routing import Router
from sandbox.tenant import AppRoleAssignment, PermissionGrant

DEFAULT_ACCESS = "00000000-0000-0000-0000-000000000000"  # the app role id of "default access"


def _assign(ctx: Context, request: Request, caller: Caller, args: list[str]) -> Response:
    resource_id, body, tenant = args[0], request.body or {}, ctx.tenant
    # "AppRoleAssignment.ReadWrite.All and Application.Read.All" (or Directory.Read.All), as Graph lists it
    if not caller.has(catalog.READ_DIRECTORY_FOR_APPS):
        raise denied()
    resource = tenant.service_principals.get(resource_id.lower())
    if resource is None:
        raise not_found(resource_id)
    principal = str(body.get("principalId", "")).lower()
    role_id = str(body.get("appRoleId", "")).lower()
    if principal in tenant.service_principals:
        kind = "ServicePrincipal"
    elif principal in tenant.groups:
        kind = "Group"
    elif principal in tenant.users_by_id:
        kind = "User"
    else:
        raise not_found(principal)
    valid_roles = {r["id"] for r in resource.app_roles} | {DEFAULT_ACCESS}
    if role_id not in valid_roles:
        raise GraphError(400, "Request_BadRequest", "Permission being assigned was not found on application.")
    if any(
        (a.principal_id, a.resource_id, a.app_role_id) == (principal, resource.id, role_id)
        for a in tenant.assignments.values()
    ):
        # Graph's answer to a second identical assignment (a 400, not a 409).
        raise GraphError(400, "Request_BadRequest", "Permission being assigned already exists on the object.")
    assignment = AppRoleAssignment(tenant.new_id(), principal, kind, resource.id, role_id, ctx.identity.clock.now())
    tenant.assignments[assignment.id] = assignment
    return Response(201, assignment.to_graph())


def _unassign(ctx: Context, request: Request, caller: Caller, args: list[str]) -> Response:
    if ctx.tenant.assignments.pop(args[1], None) is None:
        raise not_found(args[1])
    return Response(204)


def _grant(ctx: Context, request: Request, caller: Caller, _: list[str]) -> Response:
    body, tenant = request.body or {}, ctx.tenant
    client = str(body.get("clientId", "")).lower()
    resource = str(body.get("resourceId", "")).lower()
    if client not in tenant.service_principals or resource not in tenant.service_principals:
        raise GraphError(400, "Request_BadRequest", "clientId and resourceId must be service principal object ids.")
    consent = body.get("consentType")
    principal = body.get("principalId")
    if consent not in ("AllPrincipals", "Principal") or (consent == "Principal") != bool(principal):
        raise GraphError(400, "Request_BadRequest", "consentType must be AllPrincipals, or Principal with principalId.")
    scopes = str(body.get("scope", "")).split()
    known = {s["value"] for s in tenant.service_principals[resource].oauth2_permission_scopes}
    unknown = [s for s in scopes if s not in known]
    if unknown:
        raise GraphError(400, "Request_BadRequest", f"Invalid scope values: {' '.join(unknown)}.")
    if any(
        (g.client_id, g.resource_id, g.consent_type, (g.principal_id or "").lower())
        == (client, resource, consent, str(principal or "").lower())
        for g in tenant.grants.values()
    ):
        # One grant per client, resource and principal (or AllPrincipals): a second is refused, which is
        # what a create-before-delete replacement runs into (terraform-provider-azuread#690).
        raise GraphError(409, "Request_MultipleObjectsWithSameKeyValue", "Permission entry already exists.")
    grant = PermissionGrant(
        tenant.new_id(), client, consent, principal, resource, " ".join(scopes), ctx.identity.clock.now()
    )
    tenant.grants[grant.id] = grant
    return Response(201, grant.to_graph())


def _revoke_grant(ctx: Context, request: Request, caller: Caller, args: list[str]) -> Response:
    if ctx.tenant.grants.pop(args[0], None) is None:
        raise not_found(args[0])
    return Response(204)


def register(router: Router) -> None:
    router.add("POST", "servicePrincipals/{}/appRoleAssignedTo", _assign, catalog.WRITE_ASSIGNMENTS)
    router.add("DELETE", "servicePrincipals/{}/appRoleAssignedTo/{}", _unassign, catalog.WRITE_ASSIGNMENTS)
    router.add("POST", "oauth2PermissionGrants", _grant, catalog.WRITE_GRANTS)
    router.add("DELETE", "oauth2PermissionGrants/{}", _revoke_grant, catalog.WRITE_GRANTS)
