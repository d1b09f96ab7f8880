"""An application's federatedIdentityCredentials, under Microsoft Graph's documented rules.

``/applications/{id}/federatedIdentityCredentials`` (list, create) and ``.../{id or name}`` (get,
update, delete), as the azuread provider's ``ApplicationFederatedIdentityCredential`` calls them.
Graph's rules (federatedIdentityCredential resource type): ``name`` at most 120 URL-friendly
characters, an alternate key, immutable; ``issuer`` (an https URL here, as Entra requires) and
``subject`` at most 600 characters, their combination unique within the app; ``audiences`` exactly
one value of at most 600 characters; at most 20 federated credentials per application.
"""

from __future__ import annotations

import re
from typing import Any

from sandbox import catalog
from sandbox.graph.applications import may_manage
from sandbox.graph.base import Caller, Context, GraphError, Request, Response, not_found
from sandbox.graph.routing import Router
from sandbox.tenant import Application

MAX_PER_APP = 20
NAME_MAX = 120
VALUE_MAX = 600
#: URL-friendly: RFC 3986 unreserved characters.
NAME = re.compile(r"^[A-Za-z0-9._~-]+$")


def _app(ctx: Context, aid: str) -> Application:
    app = ctx.tenant.applications.get(aid.lower())
    if app is None:
        raise not_found(aid)
    return app


def _bad(message: str) -> GraphError:
    return GraphError(400, "Request_BadRequest", message)


def _validated(app: Application, body: dict[str, Any], existing: dict[str, Any] | None) -> dict[str, Any]:
    merged = {**(existing or {}), **{k: v for k, v in body.items() if k != "@odata.type"}}
    unknown = sorted(set(merged) - {"id", "name", "issuer", "subject", "audiences", "description"})
    if unknown:
        raise _bad(f"Property '{unknown[0]}' does not exist on type 'microsoft.graph.federatedIdentityCredential'.")
    if existing is not None and "name" in body and body["name"] != existing["name"]:
        raise _bad("Property 'name' is read-only and cannot be changed after the credential is created.")
    name = merged.get("name")
    if not isinstance(name, str) or not name or len(name) > NAME_MAX or not NAME.match(name):
        raise _bad(f"Property 'name' must be 1 to {NAME_MAX} URL-friendly characters (letters, digits, - . _ ~).")
    for key in ("issuer", "subject"):
        value = merged.get(key)
        if not isinstance(value, str) or not value:
            raise _bad(f"Property '{key}' is required.")
        if len(value) > VALUE_MAX:
            raise _bad(f"Property '{key}' exceeds the maximum length of {VALUE_MAX}.")
    if not re.match(r"^https://[^\s/]+", merged["issuer"]):
        raise _bad("Property 'issuer' must be an https URL.")
    audiences = merged.get("audiences")
    if not isinstance(audiences, list) or len(audiences) != 1:
        raise _bad("Property 'audiences' must contain exactly one value.")
    if not isinstance(audiences[0], str) or not audiences[0] or len(audiences[0]) > VALUE_MAX:
        raise _bad(f"Property 'audiences' must hold a non-empty value of at most {VALUE_MAX} characters.")
    description = merged.get("description")
    if description is not None and (not isinstance(description, str) or len(description) > VALUE_MAX):
        raise _bad(f"Property 'description' exceeds the maximum length of {VALUE_MAX}.")
    for other in app.federated_credentials:
        if existing is not None and other["id"] == existing["id"]:
            continue
        if other["name"] == name:
            raise GraphError(
                409, "Request_MultipleObjectsWithSameKeyValue", f"A federated credential named '{name}' exists."
            )
        if (other["issuer"], other["subject"]) == (merged["issuer"], merged["subject"]):
            raise GraphError(
                409,
                "Request_MultipleObjectsWithSameKeyValue",
                f"The combination of issuer and subject is already used by federated credential '{other['name']}'.",
            )
    return {
        "id": merged.get("id"),
        "name": name,
        "issuer": merged["issuer"],
        "subject": merged["subject"],
        "audiences": list(audiences),
        "description": description,
    }


def _graph(ctx: Context, app: Application, fic: dict[str, Any]) -> dict[str, Any]:
    return {"@odata.context": ctx.context_url(f"applications('{app.id}')/federatedIdentityCredentials/$entity")} | fic


def _collection(ctx: Context, request: Request, caller: Caller, args: list[str]) -> Response:
    app = _app(ctx, args[0])
    if request.method != "GET":
        may_manage(ctx, caller, app.owners)  # Application.ReadWrite.OwnedBy: only its own applications
    if request.method == "GET":
        context = ctx.context_url(f"applications('{app.id}')/federatedIdentityCredentials")
        return Response(200, {"@odata.context": context, "value": [dict(f) for f in app.federated_credentials]})
    if len(app.federated_credentials) >= MAX_PER_APP:
        raise _bad(f"An application can have at most {MAX_PER_APP} federated identity credentials.")
    fic = _validated(app, dict(request.body or {}), None)
    fic["id"] = ctx.tenant.new_id()
    app.federated_credentials.append(fic)
    return Response(201, _graph(ctx, app, fic))


def _find(app: Application, key: str) -> dict[str, Any]:
    for fic in app.federated_credentials:
        if fic["id"] == key.lower():
            return fic
    raise not_found(key)


def _item(ctx: Context, request: Request, caller: Caller, args: list[str]) -> Response:
    app = _app(ctx, args[0])
    fic = _find(app, args[1])
    if request.method == "GET":
        return Response(200, _graph(ctx, app, fic))
    may_manage(ctx, caller, app.owners)
    if request.method == "DELETE":
        app.federated_credentials.remove(fic)
        return Response(204)
    fic.update(_validated(app, dict(request.body or {}), fic))
    return Response(204)


def register(router: Router) -> None:
    router.add("GET", "applications/{}/federatedIdentityCredentials", _collection, catalog.READ_APPS)
    writers = catalog.WRITE_APPS | catalog.WRITE_OWNED_APPS  # OwnedBy is Graph's least privileged
    router.add("POST", "applications/{}/federatedIdentityCredentials", _collection, writers)
    router.add("GET", "applications/{}/federatedIdentityCredentials/{}", _item, catalog.READ_APPS)
    router.add("PATCH DELETE", "applications/{}/federatedIdentityCredentials/{}", _item, writers)
