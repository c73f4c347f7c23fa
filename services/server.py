"""Builds the aiohttp application that runs Dockyard's services in one process."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable

from aiohttp import web

from services import operations
from services.auth import app as auth_app
from services.core.config import Config
from services.core.http import error_middleware
from services.core.metrics import Metrics
from services.core.priority import Priority
from services.core.web import (
    CONFIG,
    CONSUMERS,
    HEALTH,
    JOBS,
    METRICS,
    PRIORITY,
    HealthChecks,
    consumers_ctx,
    shared_resources_ctx,
)
from services.ingest import app as ingest_app
from services.portal import app as portal_app
from services.scanner import app as scanner_app
from services.search import app as search_app
from services.selection import Part, Plan, plan_services

__all__ = ["NEEDS", "SERVICES", "build_app", "plan"]

SERVICES = {"auth": auth_app.setup, "ingest": ingest_app.setup, "search": search_app.setup,
            "portal": portal_app.setup, "scanner": scanner_app.setup}
# Services a service reads through (their module API, never their tables), opened without their
# routes and consumers when it runs alone. Every service also needs auth, to know who calls.
NEEDS: dict[str, tuple[str, ...]] = {"portal": ("ingest", "search", "scanner"),
                                      "search": ("scanner",)}  # findings of scans, by digest

# Envelopes larger than the webhook limit are refused by the handler with a 413 that names the
# limit; aiohttp's own cap only has to be above it.
_HEADROOM = 64 * 1024


def plan(services: Iterable[str] | None = None) -> Plan:
    """What ``dockyard serve --service …`` runs; raises ``Invalid`` for an unknown name."""
    needs = {name: NEEDS.get(name, ()) if name == "auth" else ("auth", *NEEDS.get(name, ()))
             for name in SERVICES}
    planned = plan_services(services, SERVICES, needs)
    if "api" in planned.get("auth", ()):
        # Auth's API reads the catalog through ingest's module (what a namespace being created
        # takes over: services/auth/identity.py). Ingest needs auth, so this need cannot be a
        # NEEDS entry (it would be a cycle); ingest's store context opens after auth's.
        planned.setdefault("ingest", frozenset())
    return planned


def build_app(config: Config, services: Iterable[str] | None = None) -> web.Application:
    """The application running ``services`` (default: all of them, whole; see ``plan``)."""
    parts_of = plan(services)
    app = web.Application(
        middlewares=[error_middleware],
        client_max_size=config.webhook.max_body_bytes + _HEADROOM,
    )
    app[CONFIG] = config
    app[METRICS] = Metrics()
    app[HEALTH] = HealthChecks(config.metrics.health_cache_seconds)
    app[CONSUMERS] = []
    app[JOBS] = []
    app[PRIORITY] = Priority()
    app.cleanup_ctx.append(shared_resources_ctx)
    for name, parts in parts_of.items():
        _install(app, SERVICES[name], parts)
    operations.setup(app)
    app.cleanup_ctx.append(consumers_ctx)
    return app


Setup = Callable[[web.Application], None]
Signal = Callable[[web.Application], Awaitable[object]]
CleanupContext = Callable[
    [web.Application], AsyncIterator[None] | contextlib.AbstractAsyncContextManager[None]
]


def _install(app: web.Application, setup: Setup, parts: frozenset[Part]) -> None:
    """Run a service's ``setup`` on ``app``, keeping only the ``parts`` asked for.

    Without ``api`` the service sets itself up on a scratch application whose state and
    lifecycles are adopted and whose routes are dropped; without ``consumers`` the consumer
    groups and jobs its contexts register at start are taken back before they run.
    """
    first_context = len(app.cleanup_ctx)
    if "api" in parts:
        setup(app)
    else:
        scratch = web.Application()
        # A new application already has handlers of its own in these signals (the runner of
        # its cleanup contexts): only what the service adds is adopted.
        signals = (scratch.on_startup, scratch.on_shutdown, scratch.on_cleanup)
        own = [len(signal) for signal in signals]
        setup(scratch)
        _adopt(app, scratch, [list(signal)[n:] for signal, n in zip(signals, own, strict=True)])
    if "consumers" not in parts:
        for index in range(first_context, len(app.cleanup_ctx)):
            app.cleanup_ctx[index] = _without_background(app.cleanup_ctx[index])


def _adopt(app: web.Application, scratch: web.Application, added: list[list[Signal]]) -> None:
    """What ``scratch`` was given for its module API: state, cleanup contexts, and the
    handlers ``added`` to its startup, shutdown and cleanup signals.

    Its routes stay behind, and so do its HTTP hooks (middlewares, response hooks): they exist
    for its routes.
    """
    for key in scratch:
        app[key] = scratch[key]
    app.cleanup_ctx.extend(scratch.cleanup_ctx)
    startup, shutdown, cleanup = added
    app.on_startup.extend(startup)
    app.on_shutdown.extend(shutdown)
    app.on_cleanup.extend(cleanup)


def _without_background(
    context: CleanupContext,
) -> Callable[[web.Application], AsyncIterator[None]]:
    async def without(app: web.Application) -> AsyncIterator[None]:
        consumers, jobs = len(app[CONSUMERS]), len(app[JOBS])
        started = context(app)
        if not isinstance(started, contextlib.AbstractAsyncContextManager):
            started = _generator_context(started)
        async with started:
            del app[CONSUMERS][consumers:]
            del app[JOBS][jobs:]
            yield

    return without


@contextlib.asynccontextmanager
async def _generator_context(generator: AsyncIterator[None]) -> AsyncIterator[None]:
    """A cleanup context written as a generator, run as aiohttp runs it: up to the yield at
    start, the rest at cleanup."""
    await anext(generator)
    yield
    with contextlib.suppress(StopAsyncIteration):
        await anext(generator)
