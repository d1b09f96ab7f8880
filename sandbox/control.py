"""The sandbox's control endpoint (``/_control/``): state, revocations, account changes, settings, device-code approval.

Every call needs ``Authorization: Bearer <controlToken>`` (the token is in sandbox.json, 0600): without
it any local user could flip faults, switch throttling off or approve a device code as anyone.
"""

from __future__ import annotations

import hmac
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from aiohttp import web

from sandbox import activity

if TYPE_CHECKING:
    from sandbox.server import Sandbox

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def guard(token: str, where: str = "sandbox.json") -> Any:
    """Middleware refusing /_control/ calls without the bearer token (401); ``where`` names the file holding it."""

    @web.middleware
    async def check(request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.path.startswith("/_control/"):
            header = request.headers.get("Authorization", "")
            given = header[7:] if header[:7].lower() == "bearer " else ""
            if not hmac.compare_digest(given.encode(), token.encode()):
                return web.json_response(
                    {"error": f"the control endpoint needs 'Authorization: Bearer <controlToken>' (see {where})"},
                    status=401,
                )
        return await handler(request)

    return check


def add_routes(app: web.Application, sandbox: Sandbox) -> None:
    async def state(request: web.Request) -> web.Response:
        return web.json_response(
            {
                "requests": sandbox.graph.request_count,
                "statusCounts": {str(k): v for k, v in sandbox.graph.status_counts.items()},
                "throttled": sandbox.throttle.throttled_count,
                "revocations": len(sandbox.tenant.revocations),
                "users": len(sandbox.tenant.users),
            }
        )

    async def revocations(request: web.Request) -> web.Response:
        return web.json_response([r.to_json() for r in sandbox.tenant.revocations])

    async def account_changes(request: web.Request) -> web.Response:
        return web.json_response([c.to_json() for c in sandbox.tenant.account_changes])

    async def settings(request: web.Request) -> web.Response:
        body = await request.json()
        try:
            if "faults" in body:
                sandbox.graph.faults.update(body["faults"])
            if "consentDelay" in body:
                sandbox.identity.settings.consent_delay = float(body["consentDelay"])
            if "autoApproveUser" in body:
                sandbox.identity.settings.auto_approve_user = body["autoApproveUser"]
            if "advancedQueryLag" in body:
                sandbox.graph.context.settings.advanced_query_lag = float(body["advancedQueryLag"])
            if "p1Licence" in body:  # P2 includes P1: without P1, no P2 either
                sandbox.tenant.premium = bool(body["p1Licence"])
            if "p2Licence" in body:
                sandbox.tenant.p2_licence = bool(body["p2Licence"])
            if "activityRefusals" in body:  # sandbox.activity.SHAPES: 400 to those signInActivity queries
                activity.refuse(sandbox.tenant, body["activityRefusals"])
            if "throttling" in body:
                sandbox.throttle.enabled = bool(body["throttling"])
            if "latency" in body:
                sandbox.latency.median_ms = float(body["latency"].get("medianMs", 0))
                sandbox.latency.p99_ms = float(body["latency"].get("p99Ms", 0))
        except (KeyError, TypeError, ValueError) as err:
            return web.json_response({"error": f"invalid setting: {err}"}, status=400)
        return web.json_response({"ok": True})

    async def devicecode(request: web.Request) -> web.Response:
        body = await request.json()
        try:
            sandbox.identity.approve_device(body["userCode"], body["user"], deny=bool(body.get("deny")))
        except KeyError as err:
            return web.json_response({"error": str(err)}, status=404)
        return web.json_response({"ok": True})

    app.router.add_get("/_control/state", state)
    app.router.add_get("/_control/revocations", revocations)
    app.router.add_get("/_control/account-changes", account_changes)
    app.router.add_post("/_control/settings", settings)
    app.router.add_post("/_control/devicecode", devicecode)
