"""Plugs the scanner into the application: its store, routes, consumer and scan workers."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, AsyncExitStack
from typing import TYPE_CHECKING

from aiohttp import web

from services.core.config import Config
from services.core.consume import Consumer
from services.core.stores import open_backend_store
from services.core.web import (
    CONFIG,
    CONSUMERS,
    EVENT_LOG,
    HEALTH,
    JOBS,
    REGISTRY,
    SERVICE_TOKENS,
    Job,
)
from services.scanner.adapters.sqlite import SqliteScanStore
from services.scanner.api import RESCAN_SECONDS, SCAN_STORE, VULN_STORE, routes
from services.scanner.clair import ClairScanner
from services.scanner.consumers import REGISTRY_EVENTS, ScanConsumer, ScanPublisher
from services.scanner.harbor import app as harbor_app
from services.scanner.harbor.client import HarborAdapterClient
from services.scanner.limits import ScanLimits
from services.scanner.matcher import OsvMatcher, Rematcher
from services.scanner.ports import Matcher, RemoteScanner, ScanStore
from services.scanner.scans import ScanWorkers
from services.scanner.vulndb.ports import VulnStore
from services.scanner.vulndb.stores import open_vulndb

if TYPE_CHECKING:
    from services.core.mongo import MongoDatabase
    from services.scanner.adapters.mongo import MongoScanStore

__all__ = ["open_store", "setup"]


def setup(app: web.Application) -> None:
    app.router.add_routes(routes)
    app.cleanup_ctx.append(_scanner_ctx)
    # After the scanner's context: the adapter API matches with the scanner's VULN_STORE.
    harbor_app.setup(app)


def open_store(config: Config) -> AbstractAsyncContextManager[ScanStore]:
    """The scan store where ``[store] backend`` (DOCKYARD_STORE) says."""
    return open_backend_store(config, lambda: SqliteScanStore(config.path(config.scanner.path)),
                              _mongo_scan_store)


def _mongo_scan_store(database: MongoDatabase) -> MongoScanStore:
    from services.scanner.adapters.mongo import MongoScanStore  # noqa: PLC0415 - optional extra

    return MongoScanStore(database)


async def _scanner_ctx(app: web.Application) -> AsyncIterator[None]:
    config = app[CONFIG]
    async with AsyncExitStack() as stack:
        store = await stack.enter_async_context(open_store(config))
        app[SCAN_STORE] = store
        app[RESCAN_SECONDS] = config.scanner.rescan_seconds
        # Opened whatever the backend: aliases for GET /api/v1/vulnerabilities/{id}/images and
        # the Harbor adapter API use it too. An empty one makes scans say "inventory only".
        vulns = await stack.enter_async_context(open_vulndb(config))
        app[VULN_STORE] = vulns
        matcher, remote = _open_backend(app, stack, vulns)
        workers = ScanWorkers(
            store,
            app[REGISTRY],
            matcher=matcher,
            remote=remote,
            publish=ScanPublisher(app[EVENT_LOG]),
            limits=ScanLimits.from_config(config.scanner),
            concurrency=config.scanner.concurrency,
            timeout=config.scanner.timeout_seconds,
        )
        app[CONSUMERS].append(Consumer(REGISTRY_EVENTS, ScanConsumer.group,
                                       ScanConsumer(store)))
        if config.scanner.enabled:
            app[JOBS].append(Job("scanner", config.scanner.poll_seconds, workers.drain))
        if matcher is not None:
            # Imports made elsewhere (``dockyard vulndb import`` re-matches at once itself).
            app[JOBS].append(Job("rematch", config.scanner.rematch_seconds,
                                 Rematcher(store, vulns, matcher).run))
        app[HEALTH].add("scan-store", store.ping)
        yield


def _open_backend(
    app: web.Application, stack: AsyncExitStack, vulns: VulnStore
) -> tuple[Matcher | None, RemoteScanner | None]:
    """What finds the vulnerabilities, per ``[scanner] backend``.

    ``embedded``: the OSV matcher over the vulnerability database; ``clair`` and ``harbor``:
    a remote scanner that reads the layers itself with a pull-only service token.
    """
    config = app[CONFIG]

    async def pull_token(scope: str) -> str:
        return await app[SERVICE_TOKENS](scope)

    remote: ClairScanner | HarborAdapterClient
    if config.scanner.backend == "clair":
        remote = ClairScanner.from_config(config, pull_token)
    elif config.scanner.backend == "harbor":
        remote = HarborAdapterClient.from_config(config, pull_token)
    else:
        return OsvMatcher(vulns), None
    stack.push_async_callback(remote.aclose)
    return None, remote
