"""The aiohttp application every service plugs into: shared state keys and lifecycles.

``build_app`` (services/server.py) creates the application with the shared resources below;
each service's ``app.setup(app)`` adds its stores (``cleanup_ctx``), routes and consumers.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field

from aiohttp import web

from services.core.config import Config
from services.core.consume import Consumer, run_consumer
from services.core.eventlog import EventLog
from services.core.eventlog.sqlite import SqliteEventLog
from services.core.metrics import Metrics
from services.core.priority import Priority
from services.core.registry import RegistryClient

__all__ = [
    "CONFIG",
    "CONSUMERS",
    "EVENT_LOG",
    "HEALTH",
    "METRICS",
    "PRIORITY",
    "REGISTRY",
    "SERVICE_TOKENS",
    "HealthChecks",
    "consumers_ctx",
    "periodic",
    "shared_resources_ctx",
]

log = logging.getLogger("dockyard.server")

HealthCheck = Callable[[], Awaitable[None]]


@dataclass
class HealthChecks:
    """Named probes; each raises when what it checks cannot be reached."""

    checks: dict[str, HealthCheck] = field(default_factory=dict)

    def add(self, name: str, check: HealthCheck) -> None:
        self.checks[name] = check


CONFIG = web.AppKey("config", Config)
METRICS = web.AppKey("metrics", Metrics)
EVENT_LOG = web.AppKey("event_log", EventLog)
REGISTRY = web.AppKey("registry", RegistryClient)
HEALTH = web.AppKey("health", HealthChecks)
CONSUMERS = web.AppKey("consumers", list[Consumer])
PRIORITY = web.AppKey("priority", Priority)
# Tokens for Dockyard's own registry calls (scope → token), set by the auth service.
ServiceTokens = Callable[[str], Awaitable[str]]
SERVICE_TOKENS: web.AppKey[ServiceTokens] = web.AppKey("service_tokens")


async def shared_resources_ctx(app: web.Application) -> AsyncIterator[None]:
    """Opens the event log and the registry client for every service of this process."""
    config = app[CONFIG]
    event_log = SqliteEventLog(
        config.path(config.eventlog.path), synchronous=config.eventlog.synchronous
    )
    await event_log.open()
    app[EVENT_LOG] = event_log
    async def service_token(scope: str) -> str | None:
        issue = app.get(SERVICE_TOKENS)
        return None if issue is None else await issue(scope)

    registry = RegistryClient(config.registry.url, timeout=config.registry.timeout_seconds,
                              token_provider=service_token)
    app[REGISTRY] = registry
    app[HEALTH].add("eventlog", event_log.ping)
    app[HEALTH].add("registry", _reachable(registry))
    retention = config.eventlog.retention_hours * 3600
    async with periodic("eventlog-retention", 600, lambda: event_log.prune(retention)):
        yield
    await registry.aclose()
    await event_log.close()


def _reachable(registry: RegistryClient) -> HealthCheck:
    async def check() -> None:
        if not await registry.ping():
            raise ConnectionError(f"registry at {registry.base_url} does not answer")

    return check


async def consumers_ctx(app: web.Application) -> AsyncIterator[None]:
    """Runs every registered consumer group as a task; cancels them at shutdown."""
    tasks = [
        asyncio.create_task(
            run_consumer(app[EVENT_LOG], consumer, app[METRICS], priority=app[PRIORITY]),
            name=f"consumer-{consumer.group}",
        )
        for consumer in app[CONSUMERS]
    ]
    yield
    for task in tasks:
        task.cancel()
    for task in tasks:
        with contextlib.suppress(asyncio.CancelledError):
            await task


@contextlib.asynccontextmanager
async def periodic(
    name: str, interval: float, job: Callable[[], Awaitable[object]]
) -> AsyncIterator[None]:
    """Runs ``job`` every ``interval`` seconds (first run after one interval) while open."""

    async def loop() -> None:
        while True:
            await asyncio.sleep(interval)
            try:
                await job()
            except Exception:
                log.exception("periodic job failed", extra={"job": name})

    task = asyncio.create_task(loop(), name=name) if interval > 0 else None
    try:
        yield
    finally:
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
