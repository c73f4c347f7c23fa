"""Plugs the ingest service into the application: stores, routes, consumers, sync."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

from aiohttp import web

from services.auth.audit import IDENTITY_EVENTS
from services.core.consume import Consumer
from services.core.web import CONFIG, CONSUMERS, EVENT_LOG, HEALTH, REGISTRY, periodic
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
from services.ingest.sync import sync_catalog

__all__ = ["ACTIVITY_DB", "CATALOG_DB", "setup"]

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


async def _stores_ctx(app: web.Application) -> AsyncIterator[None]:
    config = app[CONFIG]
    catalog = SqliteCatalogStore(config.path(CATALOG_DB))
    activity = SqliteActivityStore(config.path(ACTIVITY_DB))
    await catalog.open()
    await activity.open()
    app[CATALOG_STORE] = catalog
    app[ACTIVITY_STORE] = activity
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
        for topic in (REGISTRY_EVENTS, IDENTITY_EVENTS)
    )
    app[HEALTH].add("catalog-store", catalog.db.ping)
    app[HEALTH].add("activity-store", activity.db.ping)
    sync = lambda: sync_catalog(app[REGISTRY], catalog, app[EVENT_LOG])  # noqa: E731
    async with periodic("sync", config.sync.interval_seconds, sync):
        yield
    await activity.close()
    await catalog.close()
