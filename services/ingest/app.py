"""Plugs the ingest service into the application: stores, routes, consumers, sync."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from aiohttp import web

from services.auth.access import CATALOG
from services.auth.audit import IDENTITY_EVENTS
from services.core.config import Config
from services.core.consume import Consumer
from services.core.stores import mongo_database
from services.core.web import CONFIG, CONSUMERS, EVENT_LOG, HEALTH, JOBS, REGISTRY, Job
from services.ingest.adapters.sqlite import SqliteActivityStore, SqliteCatalogStore
from services.ingest.api import (
    ACTIVITY_STORE,
    ACTIVITY_WAKEUP,
    CATALOG_STORE,
    STREAMS_CLOSING,
    routes,
)
from services.ingest.consumers import REGISTRY_EVENTS, ActivityConsumer, CatalogConsumer
from services.ingest.models import Activity
from services.ingest.ports import ActivityStore, CatalogStore
from services.ingest.reader import CatalogReader
from services.ingest.sync import sync_catalog
from services.scanner.consumers import SCAN_EVENTS

if TYPE_CHECKING:
    from services.ingest.adapters.mongo import MongoActivityStore, MongoCatalogStore

__all__ = ["ACTIVITY_DB", "CATALOG_DB", "open_catalog_reader", "open_stores", "setup"]

CATALOG_DB = Path("catalog.db")
ACTIVITY_DB = Path("activity.db")


def setup(app: web.Application) -> None:
    app.router.add_routes(routes)
    app.cleanup_ctx.append(_stores_ctx)
    app[STREAMS_CLOSING] = asyncio.Event()
    app.on_shutdown.append(_close_streams)


async def _close_streams(app: web.Application) -> None:
    """Live streams end at shutdown instead of holding it up until their next keep-alive."""
    app[STREAMS_CLOSING].set()
    async with app[ACTIVITY_WAKEUP]:
        app[ACTIVITY_WAKEUP].notify_all()


@asynccontextmanager
async def open_stores(config: Config) -> AsyncIterator[tuple[CatalogStore, ActivityStore]]:
    """The catalog and the activity log where ``[store] backend`` (DOCKYARD_STORE) says."""
    async with AsyncExitStack() as stack:
        catalog: SqliteCatalogStore | MongoCatalogStore
        activity: SqliteActivityStore | MongoActivityStore
        if config.store.backend == "mongodb":
            from services.ingest.adapters.mongo import (  # noqa: PLC0415 - optional extra
                MongoActivityStore,
                MongoCatalogStore,
            )

            database = await stack.enter_async_context(mongo_database(config))
            catalog, activity = MongoCatalogStore(database), MongoActivityStore(database)
        else:
            catalog = SqliteCatalogStore(config.path(CATALOG_DB))
            activity = SqliteActivityStore(config.path(ACTIVITY_DB))
        for store in (catalog, activity):
            await store.open()
            stack.push_async_callback(store.close)
        yield catalog, activity


@asynccontextmanager
async def open_catalog_reader(config: Config) -> AsyncIterator[CatalogReader]:
    """The catalog as the auth service reads it, for the CLI (``serve`` shares the store)."""
    async with open_stores(config) as (catalog, _):
        yield CatalogReader(catalog)


async def _stores_ctx(app: web.Application) -> AsyncIterator[None]:
    config = app[CONFIG]
    stores = AsyncExitStack()
    catalog, activity = await stores.enter_async_context(open_stores(config))
    app[CATALOG_STORE] = catalog
    app[ACTIVITY_STORE] = activity
    app[CATALOG] = CatalogReader(catalog)
    wakeup = asyncio.Condition()
    app[ACTIVITY_WAKEUP] = wakeup

    async def recorded(_: list[Activity]) -> None:
        async with wakeup:
            wakeup.notify_all()

    app[CONSUMERS].extend([
        Consumer(REGISTRY_EVENTS, CatalogConsumer.group, CatalogConsumer(catalog, app[REGISTRY])),
    ])
    record_activity = ActivityConsumer(activity, record_pulls=config.activity.record_pulls,
                                       on_recorded=recorded)
    app[CONSUMERS].extend(
        Consumer(topic, ActivityConsumer.group, record_activity)
        for topic in (REGISTRY_EVENTS, IDENTITY_EVENTS, SCAN_EVENTS)
    )
    app[HEALTH].add("catalog-store", catalog.ping)
    app[HEALTH].add("activity-store", activity.ping)
    app[JOBS].append(Job("sync", config.sync.interval_seconds,
                         lambda: sync_catalog(app[REGISTRY], catalog, app[EVENT_LOG])))
    yield
    await stores.aclose()
