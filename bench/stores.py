"""The store adapters side by side: SQLite files against MongoDB (SecantusDB, in memory).

What each figure is, per backend, through the port methods the services call:

- catalog apply: events per second, ``CatalogStore.apply`` in batches of 25 (the consumers'
  batch size), each event a manifest and a tag (one transaction per batch);
- activity record: entries per second, ``ActivityStore.record`` in batches of 25;
- feed page: p50 / p95 of ``ActivityStore.search`` for a page of 50, unfiltered, by repository
  and by namespace, over ``--entries`` entries;
- token lookup: p50 / p95 of ``AuthStore.find_app_token`` (the token endpoint's hot path).

SecantusDB is a Python MongoDB-protocol server on WiredTiger, run on this machine: it shows
that the adapter's queries are served by indexes and how many round trips a call costs, not
what a mongod replica set (C++, network between nodes, majority writes) would do. Run
``.venv/bin/python bench/stores.py [--entries N]`` from the repository root.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

from harness import describe_machine, percentile, print_table

from services.auth.adapters.mongo import MongoAuthStore
from services.auth.adapters.sqlite import SqliteAuthStore
from services.auth.models import AppToken, User
from services.auth.ports import AuthStore
from services.core.config import MongoConfig
from services.core.mongo import open_database
from services.ingest.adapters.mongo import MongoActivityStore, MongoCatalogStore
from services.ingest.adapters.sqlite import SqliteActivityStore, SqliteCatalogStore
from services.ingest.models import Activity, ActivityFilter, PutManifest, PutTag
from services.ingest.ports import ActivityStore, CatalogStore
from tests.support.mongo import SecantusServer

T0 = datetime(2026, 1, 1, tzinfo=UTC)
BATCH = 25
LOOKUPS = 300
Stores = tuple[CatalogStore, ActivityStore, AuthStore]


@asynccontextmanager
async def sqlite_stores(directory: Path) -> AsyncIterator[Stores]:
    stores = (SqliteCatalogStore(directory / "catalog.db"),
              SqliteActivityStore(directory / "activity.db"), SqliteAuthStore(directory / "a.db"))
    for store in stores:
        await store.open()
    try:
        yield stores
    finally:
        for store in stores:
            await store.close()


@asynccontextmanager
async def mongo_stores(uri: str) -> AsyncIterator[Stores]:
    async with open_database(MongoConfig(uri=uri, database="bench")) as database:
        stores = (MongoCatalogStore(database), MongoActivityStore(database),
                  MongoAuthStore(database))
        for store in stores:
            await store.open()
        yield stores


async def rate(count: int, work: Callable[[int], Awaitable[object]]) -> float:
    started = time.perf_counter()
    for start in range(0, count, BATCH):
        await work(start)
    return count / (time.perf_counter() - started)


async def latencies(work: Callable[[int], Awaitable[object]], n: int = LOOKUPS) -> list[float]:
    seen = []
    for i in range(n):
        started = time.perf_counter()
        await work(i)
        seen.append(time.perf_counter() - started)
    return seen


def ms(values: list[float]) -> str:
    return f"{percentile(values, 50) * 1000:.2f} / {percentile(values, 95) * 1000:.2f}"


async def measure(stores: Stores, entries: int) -> list[str]:
    catalog, activity, auth = stores

    def event(i: int) -> tuple[str, list[PutManifest | PutTag]]:
        repository = f"team{i % 50}/app{i % 500}"
        digest = f"sha256:{i:064x}"
        return (f"e{i}", [PutManifest(repository, digest, "application/vnd.oci.image.manifest"
                                      ".v1+json", "image", None, 1000, (), None, "ci", T0),
                          PutTag(repository, f"v{i}", digest, "ci", T0)])

    events = min(entries, 5000)
    apply_rate = await rate(events, lambda s: catalog.apply(
        [event(i) for i in range(s, min(s + BATCH, events))]))

    def entry(i: int) -> Activity:
        repository = f"team{i % 50}/app{i % 500}"
        return Activity(id=f"a{i}", type="tag.pushed", actor=f"user{i % 30}",
                        repository=repository, namespace=f"team{i % 50}", tag=f"v{i}",
                        digest=None, time=T0 + timedelta(seconds=i), address=None,
                        user_agent=None)

    record_rate = await rate(entries, lambda s: activity.record(
        [entry(i) for i in range(s, min(s + BATCH, entries))]))
    feeds = {
        "all": lambda _: activity.search(ActivityFilter(), before=None, limit=50),
        "repository": lambda i: activity.search(
            ActivityFilter(repository=f"team{i % 50}/app{i % 500}"), before=None, limit=50),
        "namespace": lambda i: activity.search(
            ActivityFilter(namespace=f"team{i % 50}"), before=None, limit=50),
    }
    pages = {name: await latencies(work, 50) for name, work in feeds.items()}

    await auth.create_user(User("ci", "", admin=False, enabled=True), "hash")
    for i in range(100):
        await auth.create_app_token(AppToken(f"t{i}", "ci", f"l{i}", T0, None, None,
                                             revoked=False), i.to_bytes(32, "big"))
    lookups = await latencies(lambda i: auth.find_app_token((i % 100).to_bytes(32, "big")))
    return [f"{apply_rate:,.0f}", f"{record_rate:,.0f}", ms(pages["all"]),
            ms(pages["repository"]), ms(pages["namespace"]), ms(lookups)]


async def main(entries: int) -> None:
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-stores-") as scratch:
        print(describe_machine(Path(scratch)))
        async with sqlite_stores(Path(scratch)) as stores:
            rows.append(["sqlite (WAL files)", *await measure(stores, entries)])
        server = SecantusServer()
        await asyncio.to_thread(server.start)
        try:
            async with AsyncExitStack() as stack:
                stores = await stack.enter_async_context(mongo_stores(server.uri))
                rows.append(["mongodb (SecantusDB)", *await measure(stores, entries)])
        finally:
            await asyncio.to_thread(server.stop)
    print(f"\n{entries} activity entries, {min(entries, 5000)} catalog events; times in ms"
          " (p50 / p95)")
    print_table(["backend", "catalog events/s", "activity entries/s", "feed page",
                 "feed by repository", "feed by namespace", "token lookup"], rows)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--entries", type=int, default=5_000)
    asyncio.run(main(parser.parse_args(sys.argv[1:]).entries))
