"""The Microsoft Graph v1.0 slice: requests are dispatched here from HTTP and from ``$batch``."""

from __future__ import annotations

import base64
import hashlib
import json
import random
import re
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, ClassVar
from urllib.parse import quote, urlencode

import jwt

from sandbox import catalog
from sandbox.identity import IdentityPlatform
from sandbox.odata import UnsupportedQueryError, parse_filter
from sandbox.tenant import (
    Application,
    AppRoleAssignment,
    PermissionGrant,
    Revocation,
    ServicePrincipal,
    Tenant,
    User,
    iso,
)
from sandbox.throttle import ThrottleModel

MAX_BATCH = 20
MAX_TOP = 999
DEFAULT_TOP = 100


@dataclass
class Request:
    method: str
    path: str  # below /v1.0, starting with "/"
    query: dict[str, str]
    headers: dict[str, str]  # lower-case names
    body: Any = None
    in_batch: bool = False


@dataclass
class Response:
    status: int
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class Caller:
    app_id: str
    permissions: frozenset[str]
    user: User | None

    @property
    def delegated(self) -> bool:
        return self.user is not None

    def has(self, allowed: frozenset[str]) -> bool:
        return bool(self.permissions & allowed)


@dataclass
class Faults:
    """Injected faults, as fractions of Graph requests (set at start or via the control endpoint)."""

    error_5xx: float = 0.0  # 503 Service Unavailable, top-level and per batch item
    item_429: float = 0.0  # 429 for individual batch items, with Retry-After
    batch_429: float = 0.0  # 429 for a whole $batch request (nothing in it handled), with Retry-After
    retry_after: int = 1  # the Retry-After of injected 429s
    reset: float = 0.0  # connection reset before answering (HTTP level)
    stall: float = 0.0  # answer only after stall_seconds (HTTP level)
    stall_seconds: float = 0.0  # modelled
    malformed: float = 0.0  # an unreadable answer with status 200 (HTTP level), of malformed_kind:
    # truncated JSON | html (wrong content type) | huge (8 MB, no payload) | proxy (407 + HTML, after the
    # request was handled: an unexpected status that is not Graph's)
    malformed_kind: str = "truncated"

    def update(self, values: dict[str, Any]) -> None:
        for key, value in values.items():
            if not hasattr(self, key):
                raise KeyError(key)
            setattr(self, key, type(getattr(self, key))(value))


class GraphError(Exception):
    def __init__(self, status: int, code: str, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message
        self.headers = headers or {}


def _not_found(key: str) -> GraphError:
    return GraphError(
        404,
        "Request_ResourceNotFound",
        f"Resource '{key}' does not exist or one of its queried reference-property objects are not present.",
    )


def _denied() -> GraphError:
    return GraphError(403, "Authorization_RequestDenied", "Insufficient privileges to complete the operation.")


class _UserView:
    """Lets $filter predicates read a User's Graph properties without building a dict per user."""

    __slots__ = ("user",)
    FIELDS: ClassVar[dict[str, str]] = {
        "id": "id",
        "userPrincipalName": "user_principal_name",
        "displayName": "display_name",
        "mail": "mail",
        "userType": "user_type",
        "accountEnabled": "account_enabled",
        "department": "department",
    }

    def __init__(self, user: User) -> None:
        self.user = user

    def get(self, name: str) -> Any:
        attr = self.FIELDS.get(name)
        return getattr(self.user, attr) if attr else None


class Graph:
    def __init__(
        self,
        tenant: Tenant,
        identity: IdentityPlatform,
        throttle: ThrottleModel,
        base_url: str,
        faults: Faults | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self.tenant = tenant
        self.identity = identity
        self.throttle = throttle
        self.base = f"{base_url}/v1.0"
        self.faults = faults or Faults()
        self.rng = rng or random.Random(7)
        self.request_count = 0
        self.status_counts: dict[int, int] = {}

    # -- entry points ------------------------------------------------------------------------
    def handle(self, request: Request, authorization: str | None) -> Response:
        """Authenticate, throttle and dispatch one request (a top-level one or a batch item)."""
        request_id = str(uuid.uuid4())
        client_request_id = request.headers.get("client-request-id")
        try:
            caller = self._authenticate(authorization)
            if request.path == "/$batch" and request.method == "POST" and not request.in_batch:
                response = self._batch(request, authorization)
            else:
                response = self._admit_and_dispatch(request, caller, request_id)
        except GraphError as err:
            response = Response(
                err.status,
                {
                    "error": {
                        "code": err.code,
                        "message": err.message,
                        "innerError": {
                            "date": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S"),
                            "request-id": request_id,
                            "client-request-id": client_request_id or request_id,
                        },
                    }
                },
                dict(err.headers),
            )
        response.headers.setdefault("request-id", request_id)
        response.headers.setdefault("client-request-id", client_request_id or request_id)
        if response.body is not None:
            response.headers.setdefault("Content-Type", "application/json;odata.metadata=minimal;charset=utf-8")
        self.request_count += 1
        self.status_counts[response.status] = self.status_counts.get(response.status, 0) + 1
        return response

    def _authenticate(self, authorization: str | None) -> Caller:
        if not authorization or not authorization.lower().startswith("bearer "):
            raise GraphError(401, "InvalidAuthenticationToken", "Access token is empty.")
        try:
            claims = self.identity.verify_access_token(authorization.split(" ", 1)[1])
        except jwt.ExpiredSignatureError:
            raise GraphError(
                401, "InvalidAuthenticationToken", "Lifetime validation failed, the token is expired."
            ) from None
        except jwt.PyJWTError:
            raise GraphError(
                401, "InvalidAuthenticationToken", "Access token validation failure. Invalid audience."
            ) from None
        if claims.get("idtyp") == "user":
            user = self.tenant.users_by_id.get(claims["oid"])
            if user is None:
                raise GraphError(401, "InvalidAuthenticationToken", "The signed-in user no longer exists.")
            return Caller(claims["appid"], frozenset(claims.get("scp", "").split()), user)
        return Caller(claims["appid"], frozenset(claims.get("roles", [])), None)

    def _admit_and_dispatch(self, request: Request, caller: Caller, request_id: str) -> Response:
        write = request.method in ("POST", "PATCH", "DELETE", "PUT") and not request.path.endswith("/checkMemberGroups")
        collection = request.method == "GET" and request.path.rstrip("/").split("/")[-1] in (
            "users",
            "members",
            "transitiveMembers",
            "microsoft.graph.user",
            "roleAssignments",
        )
        cost = 2.0 if collection else 1.0
        if "$select" in request.query:
            cost = max(1.0, cost - 1)
        if self._inject(self.faults.error_5xx):
            raise GraphError(
                503,
                "serviceNotAvailable",
                "The service is temporarily unavailable. Please retry.",
                {"Retry-After": "1"},
            )
        if request.in_batch and self._inject(self.faults.item_429):
            raise self._injected_429("Too many requests (injected).")
        throttled = self.throttle.admit(caller.app_id, self.tenant.tenant_id, write=write, cost=cost)
        if throttled is not None:
            raise GraphError(
                429,
                "TooManyRequests",
                "Too many requests. Please retry after the time in the Retry-After header.",
                {
                    "Retry-After": str(self.throttle.retry_after_header(throttled)),
                    "x-ms-throttle-scope": throttled.scope,
                    "x-ms-throttle-information": "ResourceUnitLimitExceeded"
                    if "ReadWrite" in throttled.scope
                    else "WriteLimitExceeded",
                },
            )
        response = self._dispatch(request, caller, request_id)
        percentage = self.throttle.limit_percentage(caller.app_id, self.tenant.tenant_id, write)
        if percentage is not None:
            response.headers["x-ms-throttle-limit-percentage"] = str(percentage)
        return response

    def _inject(self, probability: float) -> bool:
        return bool(probability) and self.rng.random() < probability

    def _injected_429(self, message: str) -> GraphError:
        headers = {"Retry-After": str(self.faults.retry_after), "x-ms-throttle-scope": "Injected"}
        return GraphError(429, "TooManyRequests", message, headers)

    def _batch(self, request: Request, authorization: str | None) -> Response:
        body = request.body if isinstance(request.body, dict) else {}
        items = body.get("requests")
        if not isinstance(items, list):
            raise GraphError(400, "BadRequest", "Invalid batch payload format.")
        if len(items) > MAX_BATCH:
            raise GraphError(400, "BadRequest", f"Number of batch requests exceeds the limit of {MAX_BATCH}.")
        ids = [str(item.get("id")) for item in items]
        if len(set(ids)) != len(ids):
            raise GraphError(400, "BadRequest", "Batch request contains duplicate ids.")
        if self._inject(self.faults.batch_429):
            raise self._injected_429("Too many requests (injected, whole batch).")
        responses = []
        for item in items:
            url = str(item.get("url", ""))
            path, _, query = url.partition("?")
            headers = {k.lower(): str(v) for k, v in (item.get("headers") or {}).items()}
            sub = Request(
                method=str(item.get("method", "GET")).upper(),
                path="/" + path.lstrip("/"),
                query=_parse_query(query),
                headers={**request.headers, **headers},
                body=item.get("body"),
                in_batch=True,
            )
            result = self.handle(sub, authorization)
            responses.append(
                {"id": str(item.get("id")), "status": result.status, "headers": result.headers, "body": result.body}
            )
        return Response(200, {"responses": responses})

    # -- routing -----------------------------------------------------------------------------
    def _dispatch(self, request: Request, caller: Caller, request_id: str) -> Response:
        parts = [p for p in request.path.split("/") if p]
        method = request.method
        q = request.query
        match parts:
            case ["users", key, "revokeSignInSessions"] if method == "POST":
                return self._revoke(self._user_or_404(key, caller, for_write=True), caller, request, request_id)
            case ["me", "revokeSignInSessions"] if method == "POST":
                return self._revoke(self._me(caller), caller, request, request_id)
            case ["me"] if method == "GET":
                return Response(200, self._user_json(self._me(caller), q))
            case ["users"] if method == "GET":
                self._require(caller, catalog.READ_USERS)
                return self._list_users(request)
            case ["users", key] if method == "GET":
                self._require(caller, catalog.READ_USERS)
                return Response(200, self._user_json(self._user_or_404(key, caller), q))
            case ["groups", gid] if method == "GET":
                self._require(caller, catalog.READ_MEMBERS)
                group = self.tenant.groups.get(gid.lower())
                if group is None:
                    raise _not_found(gid)
                return Response(200, group.to_graph())
            case ["groups", gid, ("members" | "transitiveMembers") as rel, *cast] if method == "GET":
                self._require(caller, catalog.READ_MEMBERS)
                return self._members(request, caller, gid, rel, cast)
            case ["users" | "directoryObjects", key, "checkMemberGroups"] if method == "POST":
                self._require(caller, catalog.READ_MEMBERS)
                user = self._user_or_404(key, caller)
                wanted = [str(g).lower() for g in (request.body or {}).get("groupIds", [])]
                if len(wanted) > 20:
                    raise GraphError(400, "Request_BadRequest", "At most 20 groupIds may be checked at once.")
                value = [g for g in wanted if g in self.tenant.groups and user.id in self.tenant.transitive_members(g)]
                return Response(
                    200, {"@odata.context": f"{self.base}/$metadata#Collection(Edm.String)", "value": value}
                )
            case ["directoryRoles"] if method == "GET":
                self._require(caller, catalog.READ_ROLES)
                roles = [
                    {"id": self.tenant.role_object_ids[r.name], "displayName": r.name, "roleTemplateId": r.template_id}
                    for r in catalog.DIRECTORY_ROLES
                ]
                return Response(200, {"@odata.context": f"{self.base}/$metadata#directoryRoles", "value": roles})
            case ["directoryRoles", rid, "members"] if method == "GET":
                self._require(caller, catalog.READ_ROLES)
                return self._role_members(request, caller, rid)
            case ["roleManagement", "directory", "roleAssignments"] if method == "GET":
                self._require(caller, catalog.READ_ROLES)
                return self._role_assignments(request)
            case ["applications"] if method == "GET":
                self._require(caller, catalog.READ_APPS)
                return self._list_apps(request)
            case ["applications"] if method == "POST":
                self._require(caller, catalog.WRITE_APPS)
                return self._create_app(request.body or {})
            case ["applications", aid] if method in ("GET", "PATCH", "DELETE"):
                self._require(caller, catalog.READ_APPS if method == "GET" else catalog.WRITE_APPS)
                return self._app_item(method, aid, request.body or {})
            case ["applications" | "servicePrincipals", _oid, "owners", "$ref"] if method == "POST":
                self._require(caller, catalog.WRITE_APPS)
                return Response(204)
            case ["servicePrincipals"] if method == "GET":
                self._require(caller, catalog.READ_APPS)
                return self._list_sps(request)
            case ["servicePrincipals"] if method == "POST":
                self._require(caller, catalog.WRITE_APPS)
                return self._create_sp(request.body or {})
            case ["servicePrincipals", sid] if method in ("GET", "DELETE"):
                self._require(caller, catalog.READ_APPS if method == "GET" else catalog.WRITE_APPS)
                return self._sp_item(method, sid)
            case ["servicePrincipals", sid, "appRoleAssignedTo"] if method == "POST":
                self._require(caller, catalog.WRITE_ASSIGNMENTS)
                return self._assign(sid, request.body or {})
            case ["servicePrincipals", sid, "appRoleAssignedTo", aid] if method == "DELETE":
                self._require(caller, catalog.WRITE_ASSIGNMENTS)
                if self.tenant.assignments.pop(aid, None) is None:
                    raise _not_found(aid)
                return Response(204)
            case ["oauth2PermissionGrants"] if method == "POST":
                self._require(caller, catalog.WRITE_GRANTS)
                return self._grant(request.body or {})
            case ["oauth2PermissionGrants", gid] if method == "DELETE":
                self._require(caller, catalog.WRITE_GRANTS)
                if self.tenant.grants.pop(gid, None) is None:
                    raise _not_found(gid)
                return Response(204)
        raise GraphError(400, "BadRequest", f"Resource not found for the segment '{parts[0] if parts else ''}'.")

    def _require(self, caller: Caller, allowed: frozenset[str]) -> None:
        if not caller.has(allowed):
            raise _denied()

    def _me(self, caller: Caller) -> User:
        if caller.user is None:
            raise GraphError(400, "BadRequest", "/me request is only valid with delegated authentication flow.")
        return caller.user

    def _user_or_404(self, key: str, caller: Caller, for_write: bool = False) -> User:
        user = self.tenant.user(key)
        if user is None:
            if for_write and not caller.has(catalog.REVOKE):
                raise _denied()
            raise _not_found(key)
        return user

    def _revoke(self, target: User, caller: Caller, request: Request, request_id: str) -> Response:
        if not caller.has(catalog.REVOKE):
            raise _denied()
        if caller.user is not None and not caller.user.may_revoke(target):
            raise _denied()
        now = datetime.now(UTC).replace(microsecond=0)
        target.sessions_valid_from = now
        self.tenant.revocations.append(
            Revocation(
                user_id=target.id,
                user_principal_name=target.user_principal_name,
                by_app=caller.app_id,
                by_user=caller.user.id if caller.user else None,
                at=iso(now),
                request_id=request_id,
                client_request_id=request.headers.get("client-request-id"),
            )
        )
        return Response(200, {"@odata.context": f"{self.base}/$metadata#Edm.Boolean", "value": True})

    # -- reads ---------------------------------------------------------------------------------
    def _user_json(self, user: User, query: dict[str, str]) -> dict[str, Any]:
        select = _select(query)
        return {"@odata.context": f"{self.base}/$metadata#users/$entity", **user.to_graph(select)}

    def _page(
        self,
        request: Request,
        items: Iterable[tuple[int, dict[str, Any]]],
        context: str,
        total: Callable[[], int] | None = None,
    ) -> Response:
        top = _top(request.query)
        page: list[dict[str, Any]] = []
        next_position: int | None = None
        for position, item in items:
            if len(page) == top:
                next_position = position
                break
            page.append(item)
        body: dict[str, Any] = {"@odata.context": f"{self.base}/$metadata#{context}"}
        if request.query.get("$count", "").lower() == "true":
            if request.headers.get("consistencylevel", "").lower() != "eventual":
                raise GraphError(
                    400,
                    "Request_BadRequest",
                    "$count is not currently supported without the header 'ConsistencyLevel: eventual'.",
                )
            if total is not None:
                body["@odata.count"] = total()
        body["value"] = page
        if next_position is not None:
            query = {k: v for k, v in request.query.items() if k != "$skiptoken"}
            query["$skiptoken"] = _token(next_position)
            body["@odata.nextLink"] = f"{self.base}{request.path}?{urlencode(query, quote_via=quote, safe='$,()')}"
        return Response(200, body)

    def _list_users(self, request: Request) -> Response:
        predicate = _filter(request.query)
        select = _select(request.query)
        start = _skip(request.query)
        users = self.tenant.users
        keys = _in_keys(request.query.get("$filter", ""))
        if keys is not None:
            # Like Graph's own indexes: `id in (...)` / `userPrincipalName in (...)` look users up by
            # key instead of scanning the directory (the predicate still decides).
            found = {u.id: u for u in (self.tenant.user(k) for k in keys) if u is not None}
            users = [found[i] for i in sorted(found)]

        def matches() -> Iterable[tuple[int, dict[str, Any]]]:
            for position in range(start, len(users)):
                user = users[position]
                if predicate is None or predicate(_UserView(user)):
                    yield (
                        position,
                        {"@odata.type": "#microsoft.graph.user", **user.to_graph(select)}
                        if not select
                        else user.to_graph(select),
                    )

        def total() -> int:
            return sum(1 for u in users if predicate is None or predicate(_UserView(u)))

        return self._page(request, matches(), "users", total)

    def _member_json(self, object_id: str, caller: Caller, select: list[str] | None) -> dict[str, Any] | None:
        user = self.tenant.users_by_id.get(object_id)
        if user is not None:
            if not caller.has(catalog.READ_USERS):
                # Without a permission to read users, Graph returns members with limited information.
                return {"@odata.type": "#microsoft.graph.user", "id": user.id}
            return {"@odata.type": "#microsoft.graph.user", **user.to_graph(select)}
        group = self.tenant.groups.get(object_id)
        if group is not None:
            return {"@odata.type": "#microsoft.graph.group", **group.to_graph()}
        return None

    def _members(self, request: Request, caller: Caller, gid: str, rel: str, cast: list[str]) -> Response:
        group = self.tenant.groups.get(gid.lower())
        if group is None:
            raise _not_found(gid)
        if cast and cast != ["microsoft.graph.user"]:
            raise GraphError(400, "BadRequest", f"Resource not found for the segment '{cast[0]}'.")
        ids = self.tenant.transitive_members(group.id) if rel == "transitiveMembers" else group.members
        users_only = bool(cast)
        select = _select(request.query)
        start = _skip(request.query)

        def items() -> Iterable[tuple[int, dict[str, Any]]]:
            for position in range(start, len(ids)):
                if users_only and ids[position] not in self.tenant.users_by_id:
                    continue
                item = self._member_json(ids[position], caller, select)
                if item is not None:
                    yield position, item

        return self._page(request, items(), "directoryObjects", lambda: len(ids))

    def _role_members(self, request: Request, caller: Caller, rid: str) -> Response:
        role = next((n for n, oid in self.tenant.role_object_ids.items() if oid == rid.lower()), None)
        if role is None:
            template = catalog.ROLES_BY_TEMPLATE.get(rid.lower())
            role = template.name if template else None
        if role is None:
            raise _not_found(rid)
        holders = [u.id for r, u in self.tenant.role_holders() if r == role]
        start = _skip(request.query)
        select = _select(request.query)

        def items() -> Iterable[tuple[int, dict[str, Any]]]:
            for position in range(start, len(holders)):
                item = self._member_json(holders[position], caller, select)
                if item is not None:
                    yield position, item

        return self._page(request, items(), "directoryObjects")

    def _role_assignments(self, request: Request) -> Response:
        wanted_role = wanted_principal = None
        text = request.query.get("$filter")
        if text:
            field_name, _, value = text.partition(" eq ")
            value = value.strip().strip("'")
            if field_name.strip() == "roleDefinitionId":
                wanted_role = value.lower()
            elif field_name.strip() == "principalId":
                wanted_principal = value.lower()
            else:
                raise GraphError(400, "Request_UnsupportedQuery", f"Unsupported filter on roleAssignments: '{text}'.")
        rows = []
        for role_name, user in self.tenant.role_holders():
            template = catalog.ROLES_BY_NAME[role_name].template_id
            if wanted_role and wanted_role != template:
                continue
            if wanted_principal and wanted_principal != user.id:
                continue
            rows.append(
                {
                    "id": f"{template}_{user.id}",
                    "principalId": user.id,
                    "roleDefinitionId": template,
                    "directoryScopeId": "/",
                }
            )
        start = _skip(request.query)
        return self._page(
            request, ((i, rows[i]) for i in range(start, len(rows))), "roleManagement/directory/roleAssignments"
        )

    # -- applications (what the azuread provider manages) --------------------------------------
    def _list_apps(self, request: Request) -> Response:
        predicate = _filter(request.query, {"displayName", "appId"})
        apps = [a.to_graph() for a in self.tenant.applications.values() if predicate is None or predicate(a.to_graph())]
        return Response(200, {"@odata.context": f"{self.base}/$metadata#applications", "value": apps})

    def _create_app(self, body: dict[str, Any]) -> Response:
        app = Application(
            id=self.tenant.new_id(),
            app_id=self.tenant.new_id(),
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
            app.key_credentials.append(self._key_credential(kc))
        self.tenant.applications[app.id] = app
        return Response(201, app.to_graph())

    def _key_credential(self, kc: dict[str, Any]) -> dict[str, Any]:
        from cryptography import x509
        from cryptography.hazmat.primitives import serialization

        try:
            # base64 of DER, or of PEM text as the azuread provider sends it (encoding "pem")
            data = base64.b64decode(kc["key"], validate=True)
            is_pem = data.lstrip().startswith(b"-----BEGIN")
            cert = x509.load_pem_x509_certificate(data) if is_pem else x509.load_der_x509_certificate(data)
            start, end = (
                datetime.fromisoformat(kc[k]) if kc.get(k) else None for k in ("startDateTime", "endDateTime")
            )
        except (KeyError, ValueError, TypeError):
            raise GraphError(400, "Request_BadRequest", "Invalid certificate: key value is invalid.") from None
        if end is not None and end > cert.not_valid_after_utc:
            raise GraphError(400, "Request_BadRequest", "Key credential end date is invalid.")
        der = cert.public_bytes(serialization.Encoding.DER)
        return {
            "keyId": kc.get("keyId") or self.tenant.new_id(),
            "type": "AsymmetricX509Cert",
            "usage": "Verify",
            "key": base64.b64encode(der).decode(),
            # Graph: defaults to the certificate's thumbprint when not in the payload
            "customKeyIdentifier": kc.get("customKeyIdentifier") or hashlib.sha1(der).hexdigest().upper(),  # noqa: S324
            "displayName": kc.get("displayName"),
            "startDateTime": iso(start or cert.not_valid_before_utc),
            "endDateTime": iso(end or cert.not_valid_after_utc),
        }

    def _app_item(self, method: str, aid: str, body: dict[str, Any]) -> Response:
        app = self.tenant.applications.get(aid.lower())
        if app is None:
            raise _not_found(aid)
        if method == "GET":
            return Response(200, app.to_graph())
        if method == "DELETE":
            del self.tenant.applications[app.id]
            sp = self.tenant.sp_for_app(app.app_id)
            if sp is not None:
                self._delete_sp(sp)
            return Response(204)
        if "keyCredentials" in body:
            existing = {kc["keyId"]: kc for kc in app.key_credentials}
            credentials = []
            for kc in body["keyCredentials"]:
                if kc.get("key") is None and kc.get("keyId") in existing:
                    credentials.append(existing[kc["keyId"]])  # unchanged: Graph never returns key values
                else:
                    credentials.append(self._key_credential(kc))
            app.key_credentials = credentials
        for key, attr in (("displayName", "display_name"), ("isFallbackPublicClient", "is_fallback_public_client")):
            if key in body:
                setattr(app, attr, body[key])
        return Response(204)

    def _list_sps(self, request: Request) -> Response:
        predicate = _filter(request.query, {"appId", "displayName"})
        sps = [
            s.to_graph()
            for s in self.tenant.service_principals.values()
            if predicate is None or predicate(s.to_graph())
        ]
        return Response(200, {"@odata.context": f"{self.base}/$metadata#servicePrincipals", "value": sps})

    def _create_sp(self, body: dict[str, Any]) -> Response:
        app = self.tenant.app_by_app_id(str(body.get("appId", "")))
        if app is None:
            raise GraphError(
                400,
                "Request_BadRequest",
                f"The appId '{body.get('appId')}' of the service principal "
                "does not reference a valid application object.",
            )
        if self.tenant.sp_for_app(app.app_id) is not None:
            raise GraphError(409, "Request_MultipleObjectsWithSameKeyValue", "The service principal already exists.")
        sp = ServicePrincipal(
            id=self.tenant.new_id(),
            app_id=app.app_id,
            display_name=app.display_name,
            app_role_assignment_required=bool(body.get("appRoleAssignmentRequired")),
            tags=list(body.get("tags") or []),
        )
        self.tenant.service_principals[sp.id] = sp
        return Response(201, sp.to_graph())

    def _delete_sp(self, sp: ServicePrincipal) -> None:
        del self.tenant.service_principals[sp.id]
        for aid in [a.id for a in self.tenant.assignments.values() if sp.id in (a.principal_id, a.resource_id)]:
            del self.tenant.assignments[aid]
        for gid in [g.id for g in self.tenant.grants.values() if g.client_id == sp.id]:
            del self.tenant.grants[gid]

    def _sp_item(self, method: str, sid: str) -> Response:
        sp = self.tenant.service_principals.get(sid.lower())
        if sp is None:
            raise _not_found(sid)
        if method == "GET":
            return Response(200, sp.to_graph())
        if sp.id == catalog.GRAPH_SP_ID:
            raise GraphError(
                403, "Authorization_RequestDenied", "Microsoft Graph's service principal cannot be deleted."
            )
        self._delete_sp(sp)
        return Response(204)

    def _assign(self, resource_id: str, body: dict[str, Any]) -> Response:
        resource = self.tenant.service_principals.get(resource_id.lower())
        if resource is None:
            raise _not_found(resource_id)
        principal = str(body.get("principalId", "")).lower()
        role_id = str(body.get("appRoleId", "")).lower()
        if principal in self.tenant.service_principals:
            kind = "ServicePrincipal"
        elif principal in self.tenant.groups:
            kind = "Group"
        elif principal in self.tenant.users_by_id:
            kind = "User"
        else:
            raise _not_found(principal)
        valid_roles = {r["id"] for r in resource.app_roles} | {"00000000-0000-0000-0000-000000000000"}
        if role_id not in valid_roles:
            raise GraphError(400, "Request_BadRequest", "Permission being assigned was not found on application.")
        assignment = AppRoleAssignment(
            self.tenant.new_id(), principal, kind, resource.id, role_id, self.identity.clock.now()
        )
        self.tenant.assignments[assignment.id] = assignment
        return Response(201, assignment.to_graph())

    def _grant(self, body: dict[str, Any]) -> Response:
        client = str(body.get("clientId", "")).lower()
        resource = str(body.get("resourceId", "")).lower()
        if client not in self.tenant.service_principals or resource not in self.tenant.service_principals:
            raise GraphError(400, "Request_BadRequest", "clientId and resourceId must be service principal object ids.")
        consent = body.get("consentType")
        principal = body.get("principalId")
        if consent not in ("AllPrincipals", "Principal") or (consent == "Principal") != bool(principal):
            raise GraphError(
                400, "Request_BadRequest", "consentType must be AllPrincipals, or Principal with principalId."
            )
        scopes = str(body.get("scope", "")).split()
        known = {s["value"] for s in self.tenant.service_principals[resource].oauth2_permission_scopes}
        unknown = [s for s in scopes if s not in known]
        if unknown:
            raise GraphError(400, "Request_BadRequest", f"Invalid scope values: {' '.join(unknown)}.")
        grant = PermissionGrant(
            self.tenant.new_id(), client, consent, principal, resource, " ".join(scopes), self.identity.clock.now()
        )
        self.tenant.grants[grant.id] = grant
        return Response(201, grant.to_graph())


_IN_FILTER = re.compile(r"(?:^|\(|and\s+\()\s*(?:id|userPrincipalName)\s+in\s+\(([^()]*)\)\)?\s*$", re.IGNORECASE)


def _in_keys(text: str) -> list[str] | None:
    """The keys of a filter ending in ``id in (...)`` or ``userPrincipalName in (...)``, else None."""
    match = _IN_FILTER.search(text)
    if not match or " or " in text.lower():
        return None
    return [v.strip().strip("'").replace("''", "'") for v in match.group(1).split(",") if v.strip()]


def _parse_query(text: str) -> dict[str, str]:
    from urllib.parse import parse_qsl

    return dict(parse_qsl(text, keep_blank_values=True))


def _select(query: dict[str, str]) -> list[str] | None:
    text = query.get("$select")
    return [s.strip() for s in text.split(",") if s.strip()] if text else None


def _filter(query: dict[str, str], fields: set[str] | None = None) -> Callable[[Any], bool] | None:
    text = query.get("$filter")
    if not text:
        return None
    try:
        return parse_filter(text, fields)
    except UnsupportedQueryError as err:
        raise GraphError(400, "Request_UnsupportedQuery", str(err)) from None


def _top(query: dict[str, str]) -> int:
    text = query.get("$top")
    if text is None:
        return DEFAULT_TOP
    if not text.isdigit() or not 1 <= int(text) <= MAX_TOP:
        raise GraphError(
            400,
            "Request_BadRequest",
            f"Invalid page size specified: '{text}'. Must be between 1 and {MAX_TOP} inclusive.",
        )
    return int(text)


def _token(position: int) -> str:
    return base64.urlsafe_b64encode(json.dumps({"p": position}).encode()).decode().rstrip("=")


def _skip(query: dict[str, str]) -> int:
    token = query.get("$skiptoken")
    if not token:
        return 0
    try:
        return int(json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))["p"])
    except (ValueError, KeyError, TypeError):
        raise GraphError(
            400, "Request_BadRequest", "The specified page token value has expired or is invalid."
        ) from None
