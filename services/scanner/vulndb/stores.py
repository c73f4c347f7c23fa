"""The vulnerability database's store where ``[store] backend`` (DOCKYARD_STORE) says."""

from __future__ import annotations

from contextlib import AbstractAsyncContextManager
from typing import TYPE_CHECKING

from services.core.config import Config
from services.core.stores import open_backend_store
from services.scanner.vulndb.adapters.sqlite import SqliteVulnStore
from services.scanner.vulndb.ports import VulnStore

if TYPE_CHECKING:
    from services.core.mongo import MongoDatabase
    from services.scanner.vulndb.adapters.mongo import MongoVulnStore

__all__ = ["open_vulndb"]


def open_vulndb(config: Config) -> AbstractAsyncContextManager[VulnStore]:
    """SQLite ``[scanner] vulndb`` (vulndb.db) by default; MongoDB's ``vulndb_*`` collections."""
    return open_backend_store(config, lambda: SqliteVulnStore(config.path(config.scanner.vulndb)),
                              _mongo_vuln_store)


def _mongo_vuln_store(database: MongoDatabase) -> MongoVulnStore:
    from services.scanner.vulndb.adapters.mongo import (  # noqa: PLC0415 - optional extra
        MongoVulnStore,
    )

    return MongoVulnStore(database)
