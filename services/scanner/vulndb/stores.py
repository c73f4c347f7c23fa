"""The vulnerability database's store where ``[store] backend`` (DOCKYARD_STORE) says."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from typing import TYPE_CHECKING

from services.core.config import Config
from services.core.stores import mongo_database
from services.scanner.vulndb.adapters.sqlite import SqliteVulnStore
from services.scanner.vulndb.ports import VulnStore

if TYPE_CHECKING:
    from services.scanner.vulndb.adapters.mongo import MongoVulnStore

__all__ = ["open_vulndb"]


@asynccontextmanager
async def open_vulndb(config: Config) -> AsyncIterator[VulnStore]:
    """SQLite ``[scanner] vulndb`` (vulndb.db) by default; MongoDB's ``vulndb_*`` collections."""
    async with AsyncExitStack() as stack:
        store: SqliteVulnStore | MongoVulnStore
        if config.store.backend == "mongodb":
            from services.scanner.vulndb.adapters.mongo import (  # noqa: PLC0415 - extra
                MongoVulnStore,
            )

            store = MongoVulnStore(await stack.enter_async_context(mongo_database(config)))
        else:
            store = SqliteVulnStore(config.path(config.scanner.vulndb))
        await store.open()
        stack.push_async_callback(store.close)
        yield store
