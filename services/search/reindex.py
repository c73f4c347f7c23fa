"""A full rebuild of the index from the catalog (``dockyard search reindex``).

The catalog is read through its store port, page by page, and loaded in batches; each batch
replaces what the index had of those repositories. Searches keep working during a rebuild but
see the index as far as it has got; stars are kept. Run while ``serve`` indexes, a repository
changed during the rebuild may be loaded as the catalog had it a moment before; its next event
puts it right, and the catalog stays the source of truth for a later rebuild.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from services.ingest.models import PlatformEntry
from services.ingest.ports import CatalogStore, Row
from services.search.models import IndexedRepository, IndexedTag
from services.search.ports import SearchIndex

__all__ = ["ReindexReport", "reindex"]

REPOSITORY_PAGE = 500
TAG_PAGE = 1000
LOAD_BATCH = 200

# Called after each batch with (repositories done, repositories in all).
Progress = Callable[[int, int], None]


@dataclass(frozen=True, slots=True)
class ReindexReport:
    namespaces: int
    repositories: int
    tags: int


async def reindex(
    catalog: CatalogStore,
    namespaces: dict[str, str],
    index: SearchIndex,
    progress: Progress | None = None,
) -> ReindexReport:
    """Empty the index and load every repository and tag of the catalog, and ``namespaces``
    (name → description, from the auth service)."""
    total = len(await catalog.repository_names())
    await index.clear()
    await index.add_namespaces(namespaces)
    done = tags = 0
    batch: list[IndexedRepository] = []
    after: str | None = None
    while True:
        page = await catalog.repositories(namespace=None, after=after, limit=REPOSITORY_PAGE)
        for row in page:
            repository = await _repository(catalog, row)
            batch.append(repository)
            tags += len(repository.tags)
            if len(batch) >= LOAD_BATCH:
                done += await _load(index, batch, done, total, progress)
        if len(page) < REPOSITORY_PAGE:
            break
        after = page[-1]["name"]
    if batch:
        done += await _load(index, batch, done, total, progress)
    return ReindexReport(len(namespaces), done, tags)


async def _load(index: SearchIndex, batch: list[IndexedRepository], done: int, total: int,
                progress: Progress | None) -> int:
    await index.load(batch)
    loaded = len(batch)
    batch.clear()
    if progress is not None:
        progress(done + loaded, max(total, done + loaded))
    return loaded


async def _repository(catalog: CatalogStore, row: Row) -> IndexedRepository:
    tags: list[IndexedTag] = []
    after: str | None = None
    while True:
        page = await catalog.tags(row["name"], after=after, limit=TAG_PAGE)
        tags.extend(_tag(tag) for tag in page)
        if len(page) < TAG_PAGE:
            break
        after = page[-1]["name"]
    return IndexedRepository(
        name=row["name"],
        created_at=datetime.fromisoformat(row["created_at"]),
        updated_at=datetime.fromisoformat(row["updated_at"]),
        pulls=row["pull_count"],
        tags=tuple(tags),
    )


def _tag(row: Row) -> IndexedTag:
    return IndexedTag(
        name=row["name"],
        digest=row["digest"],
        kind=row["kind"],
        artifact_type=row["artifact_type"],
        platforms=tuple(PlatformEntry(p["os"], p["architecture"], p.get("variant"), p["digest"],
                                      p.get("size")) for p in row["platforms"]),
        pushed_by=row["pushed_by"],
        pushed_at=datetime.fromisoformat(row["pushed_at"]),
        pulls=row["pull_count"],
    )
