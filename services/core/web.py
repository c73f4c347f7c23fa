"""The aiohttp application every service plugs into: shared state keys and lifecycles.

``build_app`` (services/server.py) creates the application with the shared resources below;
each service's ``app.setup(app)`` adds its stores (``cleanup_ctx``), routes and consumers.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field

from aiohttp import web

from services.core.config import Config
from services.core.consume import Consumer, run_consumer
from services.core.eventlog import EventLog
from services.core.eventlog.factory import open_event_log
from services.core.eventlog.sqlite import SqliteEventLog
from services.core.metrics import Metrics
from services.core.priority import Priority
from services.core.registry import RegistryClient
from services.core.stores import shared_mongo_database

__all__ = [
    "CONFIG",
    "CONSUMERS",
    "EVENT_LOG",
    "HEALTH",
    "JOBS",
    "METRICS",
    "PRIORITY",
    "REGISTRY",
    "SERVICE_TOKENS",
    "CheckResult",
    "HealthChecks",
    "Job",
    "consumers_ctx",
    "periodic",
    "shared_resources_ctx",
]

log = logging.getLogger("dockyard.server")

HealthCheck = Callable[[], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class CheckResult:
    ok: bool
    error: str = ""  # the exception's type name: what failed, never its message


@dataclass
class HealthChecks:
    """Named probes; each raises when what it checks cannot be reached.

    ``run`` reuses its last results for ``cache_seconds`` and callers that arrive while the
    probes run wait for those results: however often readiness is asked, the directory, the
    stores and the registry see one round of probes per interval.
    """

    cache_seconds: float = 5
    checks: dict[str, HealthCheck] = field(default_factory=dict)
    _last: tuple[float, dict[str, CheckResult]] | None = field(default=None, init=False)
    _running: asyncio.Lock = field(default_factory=asyncio.Lock, init=False)

    def add(self, name: str, check: HealthCheck) -> None:
        self.checks[name] = check

    async def run(self) -> dict[str, CheckResult]:
        async with self._running:
            if self._last is not None and time.monotonic() < self._last[0] + self.cache_seconds:
                return self._last[1]
            names = sorted(self.checks)
            outcomes = await asyncio.gather(*(self.checks[name]() for name in names),
                                            return_exceptions=True)
            results = {name: CheckResult(ok=False, error=type(outcome).__name__)
                       if isinstance(outcome, BaseException) else CheckResult(ok=True)
                       for name, outcome in zip(names, outcomes, strict=True)}
            self._last = (time.monotonic(), results)
            return results


@dataclass(frozen=True, slots=True)
class Job:
    """Background work run every ``interval`` seconds (0: never) beside the consumers."""

    name: str
    interval: float
    run: Callable[[], Awaitable[object]]


CONFIG = web.AppKey("config", Config)
METRICS = web.AppKey("metrics", Metrics)
EVENT_LOG = web.AppKey("event_log", EventLog)
REGISTRY = web.AppKey("registry", RegistryClient)
HEALTH = web.AppKey("health", HealthChecks)
CONSUMERS = web.AppKey("consumers", list[Consumer])
# Registered, like CONSUMERS, by a service's context at start; a process serving only the
# service's routes (``--service NAME-api``) runs neither.
JOBS = web.AppKey("jobs", list[Job])
PRIORITY = web.AppKey("priority", Priority)
# Tokens for Dockyard's own registry calls (scope → token), set by the auth service.
ServiceTokens = Callable[[str], Awaitable[str]]
SERVICE_TOKENS: web.AppKey[ServiceTokens] = web.AppKey("service_tokens")


async def shared_resources_ctx(app: web.Application) -> AsyncIterator[None]:
    """Opens the event log, the registry client and, on MongoDB, the one database client for
    every service of this process (the services' stores borrow it: services.core.stores)."""
    config = app[CONFIG]
    async with contextlib.AsyncExitStack() as mongodb, open_event_log(config) as event_log:
        if config.store.backend == "mongodb":
            await mongodb.enter_async_context(shared_mongo_database(config))
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

        async def prune() -> None:
            if isinstance(event_log, SqliteEventLog):
                await event_log.prune(retention)

        # Kafka ages records out by the topic's own retention.ms; the SQLite log is pruned here.
        interval = 600 if isinstance(event_log, SqliteEventLog) else 0
        async with periodic("eventlog-retention", interval, prune):
            yield
        await registry.aclose()


def _reachable(registry: RegistryClient) -> HealthCheck:
    async def check() -> None:
        if not await registry.ping():
            raise ConnectionError(f"registry at {registry.base_url} does not answer")

    return check


async def consumers_ctx(app: web.Application) -> AsyncIterator[None]:
    """Runs every registered consumer group and job as a task; cancels them at shutdown."""
    tasks = [
        asyncio.create_task(
            run_consumer(app[EVENT_LOG], consumer, app[METRICS], priority=app[PRIORITY]),
            name=f"consumer-{consumer.group}",
        )
        for consumer in app[CONSUMERS]
    ]
    async with contextlib.AsyncExitStack() as jobs:
        for job in app[JOBS]:
            await jobs.enter_async_context(periodic(job.name, job.interval, job.run))
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
