"""The sandbox's HTTPS server (aiohttp) on 127.0.0.1, run on its own thread or as a command.

Size (~410 lines, at the ~400 guideline): one :class:`Sandbox` — its lifecycle (state directory,
TLS, thread and event loop, app registration for tests) and thin aiohttp handlers that hand each
request to :mod:`sandbox.identity` or :mod:`sandbox.graph`, where the behaviour lives.
"""

from __future__ import annotations

import asyncio
import html
import json
import math
import os
import random
import secrets
import stat
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from aiohttp import web
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from sandbox import control, federation
from sandbox.catalog import BY_NAME, GRAPH_SP_ID
from sandbox.certs import key_credential, make_tls, write_new
from sandbox.certs import make_client_certificate as make_client_certificate  # re-exported (tests, bench)
from sandbox.graph import Faults, Graph, GraphSettings, Request
from sandbox.identity import IdentityPlatform, IdentitySettings, TokenError
from sandbox.seed import seed
from sandbox.tenant import Application, ServicePrincipal, Tenant
from sandbox.throttle import Clock, ThrottleModel

SANDBOX_TENANT_ID = "5a1db0c5-0000-4000-8000-00000000beef"  # as committed in stacks/Pulumi.sandbox.yaml
GRAPH_RESOURCE = "https://graph.microsoft.com"
#: the least set `sandbox apply` works with (docs/pipelines.md, "Deployer permissions"): create the
#: application and manage only what it owns, read the directory (Graph's service principal, users),
#: grant application permissions (app role assignments) and delegated ones (permission grants)
DEPLOYER_ROLES = (
    "Application.ReadWrite.OwnedBy",
    "Directory.Read.All",
    "AppRoleAssignment.ReadWrite.All",
    "DelegatedPermissionGrant.ReadWrite.All",
)


@dataclass
class Latency:
    """Lognormal latency (modelled milliseconds) added to every Graph request; 0 = none."""

    median_ms: float = 0.0
    p99_ms: float = 0.0

    def sample(self, rng: random.Random) -> float:
        if self.median_ms <= 0:
            return 0.0
        sigma = max(0.0, math.log(max(self.p99_ms, self.median_ms) / self.median_ms) / 2.326)
        return rng.lognormvariate(math.log(self.median_ms), sigma) / 1000.0


@dataclass
class SandboxOptions:
    users: int = 2000
    groups: int = 20
    group_size: int = 300
    bulk_group: int = 0
    seed: int = 1
    time_scale: float = 1.0
    throttling: bool = True
    latency: Latency = field(default_factory=Latency)
    faults: Faults = field(default_factory=Faults)
    consent_delay: float = 0.0
    auto_approve_user: str | None = None
    port: int = 0
    p1_licence: bool = True  # Entra ID P1: group-based app assignment
    p2_licence: bool = True  # Entra ID P2: PIM (eligible role assignments)
    advanced_query_lag: float = 0.0  # modelled seconds before changes show in advanced queries


#: files the server writes that hold secrets, removed when it stops
PRIVATE_FILES = ("server.pem", "deployer.pem", "sandbox.json")


def private_dir(path: Path) -> Path:
    """The state directory: created 0700; an existing one must be ours and not writable by others."""
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    info = path.lstat()
    if stat.S_ISLNK(info.st_mode) or not stat.S_ISDIR(info.st_mode):
        raise RuntimeError(f"the sandbox's state directory {path} must be a directory, not a link")
    if info.st_uid != os.getuid() or info.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        raise RuntimeError(
            f"the sandbox's state directory {path} must be yours and not writable by others "
            f"(mode {stat.S_IMODE(info.st_mode):o}): keys and the control token are written there"
        )
    return path


class Sandbox:
    """One emulated tenant and its HTTPS server. Use as a context manager (serves on a thread)."""

    def __init__(self, state_dir: Path, options: SandboxOptions | None = None) -> None:
        self.state_dir = private_dir(Path(state_dir))
        #: the control endpoint's bearer secret (only in sandbox.json, 0600): without it, any local
        #: user could flip faults or approve device codes
        self.control_token = secrets.token_urlsafe(32)
        self.options = options or SandboxOptions()
        self.rng = random.Random(self.options.seed + 1)
        self.clock = Clock(self.options.time_scale)
        self.tenant = seed(
            Tenant(SANDBOX_TENANT_ID, self.options.seed),
            self.options.users,
            self.options.groups,
            self.options.group_size,
            self.options.bulk_group,
        )
        self.tenant.p1_licence = self.options.p1_licence
        self.tenant.p2_licence = self.options.p2_licence and self.options.p1_licence  # P2 includes P1
        self.throttle = ThrottleModel(self.clock, len(self.tenant.users), enabled=self.options.throttling)
        self.latency = self.options.latency
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._runner: web.AppRunner | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self.info: dict[str, Any] = {}

    # -- setup -------------------------------------------------------------------------------
    def _build(self, base_url: str) -> web.Application:
        self.identity = IdentityPlatform(
            self.tenant,
            self.clock,
            base_url,
            GRAPH_RESOURCE,
            IdentitySettings(self.options.consent_delay, self.options.auto_approve_user),
        )
        self.identity.federation = self.federation = federation.Federation(base_url)
        self.graph = Graph(
            self.tenant,
            self.identity,
            self.throttle,
            base_url,
            self.options.faults,
            self.rng,
            GraphSettings(advanced_query_lag=self.options.advanced_query_lag),
        )
        app = web.Application(client_max_size=16 * 1024 * 1024, middlewares=[control.guard(self.control_token)])
        tenant_paths = "/{tenant}"
        app.router.add_get(tenant_paths + "/v2.0/.well-known/openid-configuration", self._discovery)
        app.router.add_get(tenant_paths + "/discovery/v2.0/keys", self._jwks)
        app.router.add_post(tenant_paths + "/oauth2/v2.0/token", self._token)
        app.router.add_post(tenant_paths + "/oauth2/v2.0/devicecode", self._devicecode)
        app.router.add_get(tenant_paths + "/oauth2/v2.0/authorize", self._authorize)
        app.router.add_route("*", "/v1.0/{path:.*}", self._graph)
        control.add_routes(app, self)
        federation.add_routes(app, self.federation)
        return app

    def _seed_deployer(self) -> dict[str, str]:
        """The identity `python -m sandbox apply` deploys with (like a pipeline's deployer app)."""
        cert, key = make_client_certificate("sandbox deployer")
        app = self.register_app("sandbox-deployer", cert, app_roles=DEPLOYER_ROLES)
        path = self.state_dir / "deployer.pem"
        write_new(
            path,
            key.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
            )
            + cert.public_bytes(serialization.Encoding.PEM),
        )
        return {"clientId": app.app_id, "certificatePath": str(path)}

    def register_app(
        self,
        name: str,
        cert: x509.Certificate | None = None,
        *,
        app_roles: tuple[str, ...] | list[str] = (),
        scopes: tuple[str, ...] | list[str] = (),
        public_client: bool = False,
        assignment_required: bool = False,
    ) -> Application:
        """Register an app with a service principal and admin consent, directly (test set-up)."""
        tenant = self.tenant
        app = Application(
            tenant.new_id(),
            tenant.new_id(),
            name,
            is_fallback_public_client=public_client,
            redirect_uris=["http://localhost"] if public_client else [],
        )
        if cert is not None:
            app.key_credentials.append({**key_credential(cert), "keyId": tenant.new_id()})
        tenant.applications[app.id] = app
        sp = ServicePrincipal(tenant.new_id(), app.app_id, name, app_role_assignment_required=assignment_required)
        tenant.service_principals[sp.id] = sp
        tenant.grant_app_roles(sp.id, list(app_roles), created=self.clock.now())
        if scopes:
            from sandbox.tenant import PermissionGrant

            for scope in scopes:
                assert BY_NAME[scope].scope_id
            gid = tenant.new_id()
            tenant.grants[gid] = PermissionGrant(
                gid, sp.id, "AllPrincipals", None, GRAPH_SP_ID, " ".join(scopes), self.clock.now()
            )
        return app

    # -- lifecycle ------------------------------------------------------------------------------
    def __enter__(self) -> Sandbox:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> dict[str, Any]:
        """Start serving on a background thread; return the connection info (also in sandbox.json)."""
        self._thread = threading.Thread(target=self._serve_thread, name="sandbox", daemon=True)
        self._thread.start()
        self._ready.wait(60)
        if self._error is not None:
            raise RuntimeError(f"the sandbox failed to start: {self._error}") from self._error
        return self.info

    def _serve_thread(self) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        asyncio.set_event_loop(loop)
        try:
            loop.run_until_complete(self._start_async())
        except BaseException as err:  # noqa: BLE001  # reported to the starting thread
            self._error = err
            self._ready.set()
            return
        self._ready.set()
        loop.run_forever()
        loop.run_until_complete(self._stop_async())
        loop.close()

    async def _start_async(self) -> None:
        ca_path, context = make_tls(self.state_dir)
        # Bind first to learn the port: every URL the sandbox hands out carries it.
        import socket

        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", self.options.port))
        port = sock.getsockname()[1]
        base_url = f"https://127.0.0.1:{port}"
        app = self._build(base_url)
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await self._runner.setup()
        site = web.SockSite(self._runner, sock, ssl_context=context)
        await site.start()
        deployer = self._seed_deployer()
        samples = [
            self.tenant.user(f"{alias}@contoso-sandbox.onmicrosoft.com")
            for alias in ("breakglass1", "admin.global", "admin.helpdesk", "operator")
        ]
        samples += [u for u in self.tenant.users if not u.user_principal_name.startswith("pim.")][-3:]
        self.info = {
            "tenantId": self.tenant.tenant_id,
            "authorityHost": base_url,
            "graphEndpoint": f"{base_url}/v1.0",
            "graphScope": f"{GRAPH_RESOURCE}/.default",
            "caBundle": str(ca_path),
            "controlEndpoint": f"{base_url}/_control",
            "sampleUsers": [{"id": u.id, "userPrincipalName": u.user_principal_name} for u in samples if u],
            "groups": {
                g.display_name: g.id for g in self.tenant.groups.values() if not g.display_name.startswith("team-")
            },
            "deployer": deployer,
            "timeScale": self.options.time_scale,
            "controlToken": self.control_token,
        }
        write_new(self.state_dir / "sandbox.json", json.dumps(self.info, indent=2).encode())

    async def _stop_async(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    def stop(self) -> None:
        """Stop serving; remove the server's and the deployer's keys and sandbox.json (its control token)."""
        if self._loop is not None and self._thread is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(30)
            self._loop = None
        for name in PRIVATE_FILES:
            (self.state_dir / name).unlink(missing_ok=True)

    def call(self, func: Any, *args: Any, **kwargs: Any) -> Any:
        """Run ``func(*args, **kwargs)`` on the server's loop (safe access to tenant state from tests)."""
        assert self._loop is not None

        async def run() -> Any:
            return func(*args, **kwargs)

        return asyncio.run_coroutine_threadsafe(run(), self._loop).result(30)

    # -- handlers --------------------------------------------------------------------------------
    def _check_tenant(self, request: web.Request) -> web.Response | None:
        tenant = request.match_info["tenant"]
        if tenant.lower() not in (self.tenant.tenant_id, "organizations", "common"):
            err = TokenError(
                "invalid_tenant",
                90002,
                f"Tenant '{tenant}' not found. Check to make sure you have the "
                "correct tenant ID and are signing into the correct cloud.",
            )
            return web.json_response(err.body(), status=400)
        return None

    async def _discovery(self, request: web.Request) -> web.Response:
        return self._check_tenant(request) or web.json_response(self.identity.discovery())

    async def _jwks(self, request: web.Request) -> web.Response:
        return web.json_response(self.identity.jwks())

    async def _token(self, request: web.Request) -> web.Response:
        refused = self._check_tenant(request)
        if refused:
            return refused
        form = {k: str(v) for k, v in (await request.post()).items()}
        token_url = f"{self.identity.base_url}{request.path}"
        try:
            return web.json_response(self.identity.token(form, token_url))
        except TokenError as err:
            return web.json_response(err.body(), status=err.status)

    async def _devicecode(self, request: web.Request) -> web.Response:
        refused = self._check_tenant(request)
        if refused:
            return refused
        form = {k: str(v) for k, v in (await request.post()).items()}
        try:
            return web.json_response(self.identity.start_device_flow(form))
        except TokenError as err:
            return web.json_response(err.body(), status=err.status)

    async def _authorize(self, request: web.Request) -> web.Response:
        refused = self._check_tenant(request)
        if refused:
            return refused
        try:
            redirect, params = self.identity.authorize(dict(request.query))
        except TokenError as err:
            return web.json_response(err.body(), status=err.status)
        if request.query.get("response_mode") == "form_post":
            inputs = "".join(
                f'<input type="hidden" name="{html.escape(k)}" value="{html.escape(v)}"/>' for k, v in params.items()
            )
            page = (
                f'<html><body onload="document.forms[0].submit()"><form method="POST" action="{html.escape(redirect)}">'
                f"{inputs}</form></body></html>"
            )
            return web.Response(text=page, content_type="text/html")
        raise web.HTTPFound(f"{redirect}{'&' if '?' in redirect else '?'}{urlencode(params)}")

    async def _graph(self, request: web.Request) -> web.StreamResponse:
        # The request arrives whole before the modelled latency: a client that dies while waiting
        # for the answer does not take back the change (Graph completes it all the same).
        raw = await request.read()
        delay = self.latency.sample(self.rng)
        faults = self.graph.faults
        if faults.stall and self.rng.random() < faults.stall:
            delay += faults.stall_seconds
        if delay:
            await asyncio.sleep(self.clock.real(delay))
        if faults.reset and self.rng.random() < faults.reset:
            if request.transport is not None:
                request.transport.abort()
            return web.Response(status=500)
        body: Any = None
        if raw:
            try:
                body = json.loads(raw)
            except json.JSONDecodeError:
                return web.json_response({"error": {"code": "BadRequest", "message": "Invalid JSON body."}}, status=400)
        graph_request = Request(
            method=request.method,
            path="/" + request.match_info["path"],
            query=dict(request.query),
            headers={k.lower(): v for k, v in request.headers.items()},
            body=body,
            raw_path=request.rel_url.raw_path.removeprefix("/v1.0"),
        )
        response = self.graph.handle(graph_request, request.headers.get("Authorization"))
        if faults.malformed and response.status == 200 and self.rng.random() < faults.malformed:
            headers = {k: v for k, v in response.headers.items() if k.lower() != "content-type"}
            if faults.malformed_kind == "html":
                return web.Response(
                    status=200, text="<html><body>Bad gateway</body></html>", content_type="text/html", headers=headers
                )
            if faults.malformed_kind == "proxy":  # an unexpected status, not from Graph (a proxy answered)
                return web.Response(
                    status=407, text="<html>Proxy authentication required</html>", content_type="text/html"
                )
            if faults.malformed_kind == "huge":
                filler = json.dumps({"padding": "x" * (8 * 1024 * 1024)})
                return web.Response(status=200, text=filler, content_type="application/json", headers=headers)
            text = json.dumps(response.body)
            return web.Response(status=200, text=text[: max(1, len(text) // 2)], headers=response.headers)
        if response.body is None:
            return web.Response(status=response.status, headers=response.headers)
        return web.Response(status=response.status, text=json.dumps(response.body), headers=response.headers)
