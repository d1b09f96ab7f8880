"""Applications and service principals, as the azuread provider creates, reads, updates and deletes them."""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Iterable
from datetime import datetime
from typing import Any

from sandbox import catalog
from sandbox.graph import query
from sandbox.graph.base import Caller, Context, GraphError, Request, Response, denied, not_found
from sandbox.graph.routing import Router
from sandbox.tenant import Application, ServicePrincipal, iso


def _listing(ctx: Context, request: Request, objects: Iterable[Any], context: str) -> Response:
    """An unpaged listing filtered by ``displayName``/``appId`` (what the azuread provider asks)."""
    predicate = query.filter_predicate(request, {"displayName", "appId"})
    found = [o.to_graph() for o in objects if predicate is None or predicate(o.to_graph())]
    return Response(200, {"@odata.context": ctx.context_url(context), "value": found})


def _list_apps(ctx: Context, request: Request, caller: Caller, _: list[str]) -> Response:
    return _listing(ctx, request, ctx.tenant.applications.values(), "applications")


def _caller_sp(ctx: Context, caller: Caller) -> str | None:
    sp = ctx.tenant.sp_for_app(caller.app_id)
    return sp.id if sp is not None else None


def may_manage(ctx: Context, caller: Caller, owners: list[str]) -> None:
    """Application.ReadWrite.All manages any application; Application.ReadWrite.OwnedBy the caller's own."""
    if caller.has(catalog.WRITE_APPS):
        return
    if caller.has(catalog.WRITE_OWNED_APPS) and caller.user is None and _caller_sp(ctx, caller) in owners:
        return
    raise denied()


def _create_app(ctx: Context, request: Request, caller: Caller, _: list[str]) -> Response:
    body = request.body or {}
    tenant = ctx.tenant
    app = Application(
        id=tenant.new_id(),
        app_id=tenant.new_id(),
        display_name=str(body.get("displayName") or ""),
        sign_in_audience=str(body.get("signInAudience") or "AzureADMyOrg"),
        is_fallback_public_client=bool(body.get("isFallbackPublicClient")),
        redirect_uris=list((body.get("publicClient") or {}).get("redirectUris") or []),
        required_resource_access=list(body.get("requiredResourceAccess") or []),
        tags=list(body.get("tags") or []),
        notes=body.get("notes"),
    )
    if not app.display_name:
        raise GraphError(400, "Request_BadRequest", "Property 'displayName' is required.")
    for kc in body.get("keyCredentials") or []:
        app.key_credentials.append(_key_credential(ctx, kc))
    owner = _caller_sp(ctx, caller) if caller.user is None else None
    if owner is not None and not caller.has(catalog.WRITE_APPS):
        app.owners.append(owner)  # created under Application.ReadWrite.OwnedBy: the caller owns it
    tenant.applications[app.id] = app
    return Response(201, app.to_graph())


def _key_credential(ctx: Context, kc: dict[str, Any]) -> dict[str, Any]:
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    try:
        # base64 of DER, or of PEM text as the azuread provider sends it (encoding "pem")
        data = base64.b64decode(kc["key"], validate=True)
        is_pem = data.lstrip().startswith(b"-----BEGIN")
        cert = x509.load_pem_x509_certificate(data) if is_pem else x509.load_der_x509_certificate(data)
        start, end = (datetime.fromisoformat(kc[k]) if kc.get(k) else None for k in ("startDateTime", "endDateTime"))
    except (KeyError, ValueError, TypeError):
        raise GraphError(400, "Request_BadRequest", "Invalid certificate: key value is invalid.") from None
    if end is not None and end > cert.not_valid_after_utc:
        raise GraphError(400, "Request_BadRequest", "Key credential end date is invalid.")
    der = cert.public_bytes(serialization.Encoding.DER)
    return {
        "keyId": kc.get("keyId") or ctx.tenant.new_id(),
        "type": "AsymmetricX509Cert",
        "usage": "Verify",
        "key": base64.b64encode(der).decode(),
        # Graph: defaults to the certificate's thumbprint when not in the payload
        "customKeyIdentifier": kc.get("customKeyIdentifier") or hashlib.sha1(der).hexdigest().upper(),  # noqa: S324
        "displayName": kc.get("displayName"),
        "startDateTime": iso(start or cert.not_valid_before_utc),
        "endDateTime": iso(end or cert.not_valid_after_utc),
    }


def _app_item(ctx: Context, request: Request, caller: Caller, args: list[str]) -> Response:
    aid, body = args[0], request.body or {}
    app = ctx.tenant.applications.get(aid.lower())
    if app is None:
        raise not_found(aid)
    if request.method == "GET":
        return Response(200, app.to_graph())
    may_manage(ctx, caller, app.owners)
    if request.method == "DELETE":
        del ctx.tenant.applications[app.id]
        sp = ctx.tenant.sp_for_app(app.app_id)
        if sp is not None:
            delete_sp(ctx, sp)
        return Response(204)
    if "keyCredentials" in body:
        existing = {kc["keyId"]: kc for kc in app.key_credentials}
        credentials = []
        for kc in body["keyCredentials"]:
            if kc.get("key") is None and kc.get("keyId") in existing:
                credentials.append(existing[kc["keyId"]])  # unchanged: Graph never returns key values
            else:
                credentials.append(_key_credential(ctx, kc))
        app.key_credentials = credentials
    for key, attr in (("displayName", "display_name"), ("isFallbackPublicClient", "is_fallback_public_client")):
        if key in body:
            setattr(app, attr, body[key])
    return Response(204)


def _list_sps(ctx: Context, request: Request, caller: Caller, _: list[str]) -> Response:
    return _listing(ctx, request, ctx.tenant.service_principals.values(), "servicePrincipals")


def _create_sp(ctx: Context, request: Request, caller: Caller, _: list[str]) -> Response:
    body = request.body or {}
    tenant = ctx.tenant
    app = tenant.app_by_app_id(str(body.get("appId", "")))
    if app is None:
        raise GraphError(
            400,
            "Request_BadRequest",
            f"The appId '{body.get('appId')}' of the service principal does not reference a valid application object.",
        )
    may_manage(ctx, caller, app.owners)
    if tenant.sp_for_app(app.app_id) is not None:
        raise GraphError(409, "Request_MultipleObjectsWithSameKeyValue", "The service principal already exists.")
    sp = ServicePrincipal(
        id=tenant.new_id(),
        app_id=app.app_id,
        display_name=app.display_name,
        app_role_assignment_required=bool(body.get("appRoleAssignmentRequired")),
        tags=list(body.get("tags") or []),
        owners=list(app.owners),
    )
    tenant.service_principals[sp.id] = sp
    return Response(201, sp.to_graph())


def delete_sp(ctx: Context, sp: ServicePrincipal) -> None:
    tenant = ctx.tenant
    del tenant.service_principals[sp.id]
    for aid in [a.id for a in tenant.assignments.values() if sp.id in (a.principal_id, a.resource_id)]:
        del tenant.assignments[aid]
    for gid in [g.id for g in tenant.grants.values() if g.client_id == sp.id]:
        del tenant.grants[gid]


def _sp_item(ctx: Context, request: Request, caller: Caller, args: list[str]) -> Response:
    sid = args[0]
    sp = ctx.tenant.service_principals.get(sid.lower())
    if sp is None:
        raise not_found(sid)
    if request.method == "GET":
        return Response(200, sp.to_graph())
    if sp.id == catalog.GRAPH_SP_ID:
        raise GraphError(403, "Authorization_RequestDenied", "Microsoft Graph's service principal cannot be deleted.")
    may_manage(ctx, caller, sp.owners)
    delete_sp(ctx, sp)
    return Response(204)


def _add_owner(ctx: Context, request: Request, caller: Caller, args: list[str]) -> Response:
    """owners/$ref: Application.ReadWrite.OwnedBy (on its own objects) or .All, and Directory.Read.All."""
    collection, object_id = args
    tenant = ctx.tenant
    target = (tenant.applications if collection == "applications" else tenant.service_principals).get(object_id.lower())
    if target is None:
        raise not_found(object_id)
    if not caller.has(catalog.READ_DIRECTORY_FOR_APPS - {"Application.Read.All", "Application.ReadWrite.All"}):
        raise denied()
    may_manage(ctx, caller, target.owners)
    owner = str((request.body or {}).get("@odata.id", "")).rstrip("/").rsplit("/", 1)[-1].lower()
    if owner not in tenant.service_principals and owner not in tenant.users_by_id:
        raise not_found(owner)
    if owner not in target.owners:  # adding a present owner again is accepted here (assumption)
        target.owners.append(owner)
    return Response(204)


def register(router: Router) -> None:
    router.add("GET", "applications", _list_apps, catalog.READ_APPS)
    router.add("POST", "applications", _create_app, catalog.WRITE_APPS | catalog.WRITE_OWNED_APPS)
    router.add("GET", "applications/{}", _app_item, catalog.READ_APPS)
    router.add("PATCH DELETE", "applications/{}", _app_item, catalog.WRITE_APPS | catalog.WRITE_OWNED_APPS)
    router.add(
        "POST",
        "applications|servicePrincipals/{}/owners/$ref",
        _add_owner,
        catalog.WRITE_APPS | catalog.WRITE_OWNED_APPS,
    )
    router.add("GET", "servicePrincipals", _list_sps, catalog.READ_APPS)
    router.add("POST", "servicePrincipals", _create_sp, catalog.WRITE_APPS | catalog.WRITE_OWNED_APPS)
    router.add("GET", "servicePrincipals/{}", _sp_item, catalog.READ_APPS)
    router.add("DELETE", "servicePrincipals/{}", _sp_item, catalog.WRITE_APPS | catalog.WRITE_OWNED_APPS)
