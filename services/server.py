"""Builds the aiohttp application that runs Dockyard's services in one process."""

from __future__ import annotations

from collections.abc import Iterable

from aiohttp import web

from services.auth import app as auth_app
from services.core.config import Config
from services.core.http import error_middleware, json_response
from services.core.metrics import Metrics
from services.core.priority import Priority
from services.core.web import (
    CONFIG,
    CONSUMERS,
    HEALTH,
    METRICS,
    PRIORITY,
    HealthChecks,
    consumers_ctx,
    shared_resources_ctx,
)
from services.ingest import app as ingest_app

__all__ = ["SERVICES", "build_app"]

SERVICES = {"auth": auth_app.setup, "ingest": ingest_app.setup}

# Envelopes larger than the webhook limit are refused by the handler with a 413 that names the
# limit; aiohttp's own cap only has to be above it.
_HEADROOM = 64 * 1024


def build_app(config: Config, services: Iterable[str] = SERVICES) -> web.Application:
    app = web.Application(
        middlewares=[error_middleware],
        client_max_size=config.webhook.max_body_bytes + _HEADROOM,
    )
    app[CONFIG] = config
    app[METRICS] = Metrics()
    app[HEALTH] = HealthChecks()
    app[CONSUMERS] = []
    app[PRIORITY] = Priority()
    app.cleanup_ctx.append(shared_resources_ctx)
    for name in services:
        SERVICES[name](app)
    app.cleanup_ctx.append(consumers_ctx)
    app.router.add_get("/metrics", _metrics)
    app.router.add_get("/api/v1/health", _health)
    return app


async def _metrics(request: web.Request) -> web.Response:
    return web.Response(
        body=request.app[METRICS].render(),
        headers={"Content-Type": "text/plain; version=0.0.4; charset=utf-8"},
    )


async def _health(request: web.Request) -> web.Response:
    checks = {}
    for name, check in request.app[HEALTH].checks.items():
        try:
            await check()
        except Exception as exc:  # noqa: BLE001 - any failure is reported, none is fatal
            checks[name] = {"ok": False, "error": type(exc).__name__}
        else:
            checks[name] = {"ok": True}
    healthy = all(c["ok"] for c in checks.values())
    return json_response({"status": "ok" if healthy else "degraded", "checks": checks},
                         200 if healthy else 503)
