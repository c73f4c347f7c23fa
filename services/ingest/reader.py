"""The catalog as the auth service reads it (its ``Catalog`` port, services/auth/ports.py).

Auth asks before it creates a namespace how many repositories are already there under its name
(pushed before namespaces had to exist), which the new namespace takes over.
"""

from __future__ import annotations

from services.ingest.ports import CatalogStore

__all__ = ["CatalogReader"]

_PAGE = 500


class CatalogReader:
    def __init__(self, store: CatalogStore) -> None:
        self._store = store

    async def repository_count(self, namespace: str) -> int:
        count, after = 0, None
        while True:
            page = await self._store.repositories(namespace=namespace, after=after, limit=_PAGE)
            count += len(page)
            if len(page) < _PAGE:
                return count
            after = page[-1]["name"]

