"""What every process answers about itself, for probes and monitoring.

- ``GET /api/v1/health/live``: liveness. The process runs and its event loop answers; it
  touches nothing else, so a dependency that is down never gets a healthy process restarted,
  and anyone may ask.
- ``GET /api/v1/health``: readiness, with each dependency's check (event log, stores,
  registry, directory); 503 when one fails. Results are cached (``HealthChecks.run``).
- ``GET /metrics``: Prometheus.

On the main listener readiness and metrics need an administrator's credentials or
``Authorization: Bearer <[metrics] token>``: they name the dependencies and their failures,
and every probe of them would otherwise be a way to make Dockyard bind to the directory.
``[metrics] listen`` adds a listener that serves all three to whoever reaches it and nothing
else, for Prometheus and the kubelet on an address the public network does not reach.
"""

from __future__ import annotations

import hmac
import logging
from collections.abc import AsyncIterator, Awaitable, Callable

from aiohttp import web

from services.auth.access import require_admin
from services.core.http import error_middleware, json_response
from services.core.web import CONFIG, HEALTH, METRICS

__all__ = ["setup"]

log = logging.getLogger("dockyard.server")

Handler = Callable[[web.Request], Awaitable[web.Response]]


def setup(app: web.Application) -> None:
    """The three routes on ``app``, and the separate listener when one is configured."""
    app.router.add_get("/api/v1/health/live", live)
    app.router.add_get("/api/v1/health", _monitors_only(ready))
    app.router.add_get("/metrics", _monitors_only(metrics))
    app.cleanup_ctx.append(_listener_ctx)


async def live(_: web.Request) -> web.Response:
    return json_response({"status": "ok"})


async def ready(request: web.Request) -> web.Response:
    results = await request.app[HEALTH].run()
    checks = {name: {"ok": True} if result.ok else {"ok": False, "error": result.error}
              for name, result in results.items()}
    healthy = all(result.ok for result in results.values())
    return json_response({"status": "ok" if healthy else "degraded", "checks": checks},
                         200 if healthy else 503)


async def metrics(request: web.Request) -> web.Response:
    return web.Response(
        body=request.app[METRICS].render(),
        headers={"Content-Type": "text/plain; version=0.0.4; charset=utf-8"},
    )


def _monitors_only(handler: Handler) -> Handler:
    async def guarded(request: web.Request) -> web.Response:
        if not _shows_metrics_token(request):
            await require_admin(request)  # 401 without credentials, 403 for non-admins
        return await handler(request)

    return guarded


def _shows_metrics_token(request: web.Request) -> bool:
    token = request.app[CONFIG].metrics.token.get_secret_value()
    if not token:
        return False
    # aiohttp decodes header bytes that are not UTF-8 as lone surrogates; encode them back.
    given = request.headers.get("Authorization", "").encode("utf-8", "surrogateescape")
    return hmac.compare_digest(given, f"Bearer {token}".encode())


async def _listener_ctx(app: web.Application) -> AsyncIterator[None]:
    settings = app[CONFIG].metrics
    if not settings.listen:
        yield
        return
    listener = web.Application(middlewares=[error_middleware])
    listener[METRICS] = app[METRICS]
    listener[HEALTH] = app[HEALTH]
    listener.router.add_get("/api/v1/health/live", live)
    listener.router.add_get("/api/v1/health", ready)
    listener.router.add_get("/metrics", metrics)
    runner = web.AppRunner(listener, access_log=None)  # scrapes and probes, every few seconds
    await runner.setup()
    try:
        await web.TCPSite(runner, settings.host, settings.port).start()
        log.info("metrics listener", extra={"listen": settings.listen})
        yield
    finally:
        await runner.cleanup()
