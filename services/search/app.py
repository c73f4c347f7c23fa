"""Plugs the search service into the application: the index, its routes, the indexer."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager
from pathlib import Path
from typing import TYPE_CHECKING

from aiohttp import web

from services.auth.access import AUTHORITY
from services.auth.audit import IDENTITY_EVENTS
from services.auth.ports import AuthStore
from services.core.config import Config
from services.core.consume import Consumer
from services.core.stores import open_backend_store
from services.core.web import CONFIG, CONSUMERS, HEALTH, REGISTRY
from services.ingest.consumers import REGISTRY_EVENTS
from services.scanner.api import SCAN_STORE
from services.scanner.consumers import SCAN_EVENTS
from services.search.adapters.sqlite import SqliteSearchIndex
from services.search.api import SEARCH_INDEX, routes
from services.search.consumers import IndexConsumer, NamespaceDescriptions, ScanFindings
from services.search.ports import SearchIndex

if TYPE_CHECKING:
    from services.core.mongo import MongoDatabase
    from services.search.adapters.mongo import MongoSearchIndex

__all__ = ["SEARCH_DB", "namespace_descriptions", "open_index", "scan_findings", "setup"]

SEARCH_DB = Path("search.db")


def setup(app: web.Application) -> None:
    app.router.add_routes(routes)
    app.cleanup_ctx.append(_index_ctx)


def open_index(config: Config) -> AbstractAsyncContextManager[SearchIndex]:
    """The index where ``[store] backend`` (DOCKYARD_STORE) says: search.db, or MongoDB."""
    return open_backend_store(config, lambda: SqliteSearchIndex(config.path(SEARCH_DB)),
                              _mongo_index)


def _mongo_index(database: MongoDatabase) -> MongoSearchIndex:
    from services.search.adapters.mongo import MongoSearchIndex  # noqa: PLC0415 - optional extra

    return MongoSearchIndex(database)


def scan_findings(app: web.Application) -> ScanFindings:
    """The scanner's answer to "what did the scan of this digest find", when the scanner runs
    in this process (its store is opened after this service's, so it is looked up late)."""

    async def findings(digest: str) -> list[str] | None:
        store = app.get(SCAN_STORE)
        if store is None:
            return None
        record = await store.get(digest)
        if record is None:
            return []
        return sorted({name for finding in record.findings
                       for name in (finding.vulnerability_id, *finding.aliases)})

    return findings


def namespace_descriptions(store: AuthStore) -> NamespaceDescriptions:
    """The auth service's answer to "what do these namespaces say about themselves"."""

    async def descriptions(names: list[str]) -> dict[str, str]:
        return {namespace.name: namespace.description
                for namespace, _ in await store.namespaces(None, names)}

    return descriptions


async def _index_ctx(app: web.Application) -> AsyncIterator[None]:
    async with open_index(app[CONFIG]) as index:
        app[SEARCH_INDEX] = index
        indexer = IndexConsumer(index, app[REGISTRY],
                                namespace_descriptions(app[AUTHORITY].store), scan_findings(app))
        app[CONSUMERS].extend(Consumer(topic, IndexConsumer.group, indexer)
                              for topic in (REGISTRY_EVENTS, IDENTITY_EVENTS, SCAN_EVENTS))
        app[HEALTH].add("search-index", index.ping)
        yield
