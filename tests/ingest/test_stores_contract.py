"""Contract suites of the ingest stores: every CatalogStore and ActivityStore adapter passes.

The MongoDB adapters run against SecantusDB (tests/support/mongo.py), each test in a database
of its own.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import cast

import pytest

from services.core.dump import check
from services.core.reference import namespace_of
from services.ingest.adapters.mongo import MongoActivityStore, MongoCatalogStore
from services.ingest.adapters.sqlite import SqliteActivityStore, SqliteCatalogStore
from services.ingest.models import (
    Activity,
    ActivityFilter,
    DeleteManifest,
    DeleteRepository,
    DeleteTag,
    PlatformEntry,
    PutManifest,
    PutTag,
    RecordPull,
)
from services.ingest.ports import ACTIVITY_RECORDS, CATALOG_RECORDS, ActivityStore, CatalogStore
from tests.factories import DIGEST_A, DIGEST_B, OCI_MANIFEST
from tests.support.mongo import own_database

T0 = datetime(2026, 1, 1, tzinfo=UTC)


Factory = Callable[[str], Awaitable[object]]


@pytest.fixture(params=["sqlite", "mongodb", "mongod"])
async def stores(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Factory]:
    """Opens fresh, empty stores ("catalog" or "activity") of one adapter for the test."""
    numbers = itertools.count()
    async with AsyncExitStack() as stack:

        async def make(kind: str) -> object:
            number = next(numbers)
            store: SqliteCatalogStore | SqliteActivityStore | MongoCatalogStore | MongoActivityStore
            if request.param in {"mongodb", "mongod"}:
                server = "mongod_uri" if request.param == "mongod" else "mongo_uri"
                database = await stack.enter_async_context(
                    own_database(request, f"_{number}", server=server))
                store = (MongoCatalogStore if kind == "catalog" else MongoActivityStore)(database)
            else:
                path = tmp_path / f"{kind}-{number}.db"
                store = (SqliteCatalogStore if kind == "catalog" else SqliteActivityStore)(path)
            await store.open()
            stack.push_async_callback(store.close)
            return store

        yield make


@pytest.fixture
async def catalog(stores: Factory) -> CatalogStore:
    return cast("CatalogStore", await stores("catalog"))


@pytest.fixture
async def activity(stores: Factory) -> ActivityStore:
    return cast("ActivityStore", await stores("activity"))


def manifest(repository: str, digest: str, subject: str | None = None,
             kind: str = "image") -> PutManifest:
    return PutManifest(repository, digest, OCI_MANIFEST, kind, None, 123,
                       (PlatformEntry("linux", "amd64", None, DIGEST_B, 7),), subject, "alice", T0)


def tag(repository: str, name: str, digest: str, at: datetime = T0) -> PutTag:
    return PutTag(repository, name, digest, "alice", at)


async def tag_names(store: CatalogStore, repository: str) -> dict[str, str]:
    return {t["name"]: t["digest"] for t in await store.tags(repository, after=None, limit=100)}


# -- catalog ---------------------------------------------------------------------------------


async def test_push_then_list(catalog: CatalogStore) -> None:
    assert await catalog.apply([("e1", [manifest("team/app", DIGEST_A),
                                        tag("team/app", "1.0", DIGEST_A)])]) == 1
    (row,) = await catalog.tags("team/app", after=None, limit=10)
    assert row["digest"] == DIGEST_A
    assert row["size"] == 123
    assert row["platforms"] == [{"os": "linux", "architecture": "amd64", "variant": None,
                                 "digest": DIGEST_B, "size": 7}]
    (repo,) = await catalog.repositories(namespace=None, after=None, limit=10)
    assert (repo["name"], repo["namespace"], repo["tag_count"]) == ("team/app", "team", 1)


async def test_an_event_applied_twice_changes_nothing_the_second_time(
    catalog: CatalogStore,
) -> None:
    change = ("e1", [manifest("team/app", DIGEST_A), tag("team/app", "1.0", DIGEST_A)])
    pull = ("e2", [RecordPull("team/app", "1.0", DIGEST_A, T0)])
    assert await catalog.apply([change, pull]) == 2
    assert await catalog.apply([change, pull]) == 0
    (row,) = await catalog.tags("team/app", after=None, limit=10)
    assert row["pull_count"] == 1


async def test_a_tag_move_points_it_at_the_new_digest(catalog: CatalogStore) -> None:
    await catalog.apply([
        ("e1", [manifest("team/app", DIGEST_A), tag("team/app", "1.0", DIGEST_A)]),
        ("e2", [manifest("team/app", DIGEST_B), tag("team/app", "1.0", DIGEST_B)]),
    ])
    assert await tag_names(catalog, "team/app") == {"1.0": DIGEST_B}


async def test_deleting_a_manifest_removes_every_tag_on_it(catalog: CatalogStore) -> None:
    await catalog.apply([
        ("e1", [manifest("team/app", DIGEST_A), tag("team/app", "a", DIGEST_A),
                tag("team/app", "b", DIGEST_A)]),
        ("e2", [manifest("team/app", DIGEST_B), tag("team/app", "c", DIGEST_B)]),
        ("e3", [DeleteManifest("team/app", DIGEST_A)]),
    ])
    assert await tag_names(catalog, "team/app") == {"c": DIGEST_B}


async def test_tag_and_repository_deletes(catalog: CatalogStore) -> None:
    await catalog.apply([
        ("e1", [manifest("team/app", DIGEST_A), tag("team/app", "a", DIGEST_A),
                tag("team/app", "b", DIGEST_A)]),
        ("e2", [DeleteTag("team/app", "a")]),
    ])
    assert await tag_names(catalog, "team/app") == {"b": DIGEST_A}
    await catalog.apply([("e3", [DeleteRepository("team/app")])])
    assert await catalog.repository("team/app") is None
    assert await tag_names(catalog, "team/app") == {}


async def test_pulls_by_tag_and_by_tagged_digest_count(catalog: CatalogStore) -> None:
    later = T0 + timedelta(hours=1)
    await catalog.apply([
        ("e1", [manifest("team/app", DIGEST_A), tag("team/app", "1.0", DIGEST_A)]),
        ("e2", [RecordPull("team/app", "1.0", DIGEST_A, T0)]),
        ("e3", [RecordPull("team/app", None, DIGEST_A, later)]),  # docker pull app@sha256:…
        ("e4", [RecordPull("team/app", None, DIGEST_B, later)]),  # untagged child: not counted
    ])
    (row,) = await catalog.tags("team/app", after=None, limit=10)
    assert row["pull_count"] == 1
    repo = await catalog.repository("team/app")
    assert repo is not None
    assert repo["pull_count"] == 2
    assert repo["last_pulled_at"] == later.isoformat().replace("+00:00", "Z")


async def test_referrers_are_listed_with_the_tag_they_refer_to(catalog: CatalogStore) -> None:
    await catalog.apply([
        ("e1", [manifest("team/app", DIGEST_A), tag("team/app", "1.0", DIGEST_A)]),
        ("e2", [manifest("team/app", DIGEST_B, subject=DIGEST_A, kind="signature")]),
    ])
    (row,) = await catalog.tags("team/app", after=None, limit=10)
    assert row["referrers"] == [{"digest": DIGEST_B, "kind": "signature", "artifact_type": None}]


async def test_keyset_pages_and_namespace_filter(catalog: CatalogStore) -> None:
    names = ["a/one", "a/two", "b/three", "nginx"]
    await catalog.apply([(f"e{i}", [manifest(n, DIGEST_A)]) for i, n in enumerate(names)])
    first = await catalog.repositories(namespace=None, after=None, limit=2)
    rest = await catalog.repositories(namespace=None, after=first[-1]["name"], limit=10)
    assert [r["name"] for r in first + rest] == names
    only_a = await catalog.repositories(namespace="a", after=None, limit=10)
    assert [r["name"] for r in only_a] == ["a/one", "a/two"]
    global_ns = await catalog.repositories(namespace="", after=None, limit=10)
    assert [r["name"] for r in global_ns] == ["nginx"]


async def test_tag_digests_and_repository_names_serve_sync(catalog: CatalogStore) -> None:
    await catalog.apply([("e1", [manifest("x/y", DIGEST_A), tag("x/y", "1", DIGEST_A)])])
    assert await catalog.repository_names() == ["x/y"]
    assert await catalog.tag_digests("x/y") == {"1": DIGEST_A}


# -- activity --------------------------------------------------------------------------------


def entry(n: int, *, repository: str = "team/app", kind: str = "tag.pushed",
          actor: str = "alice", minutes: int | None = None) -> Activity:
    return Activity(
        id=f"a{n}", type=kind, actor=actor, repository=repository,
        namespace=namespace_of(repository), tag=str(n), digest=DIGEST_A,
        time=T0 + timedelta(minutes=n if minutes is None else minutes),
        address="10.0.0.1", user_agent="skopeo", synthetic=False,
    )


async def test_recording_is_idempotent_by_id(activity: ActivityStore) -> None:
    assert len(await activity.record([entry(1), entry(2)])) == 2
    assert [a.id for a in await activity.record([entry(2), entry(3)])] == ["a3"]
    assert await activity.last_sequence() == 3


async def test_search_is_newest_first_and_pages_by_keyset(activity: ActivityStore) -> None:
    # Same timestamp for 3 and 4: the sequence breaks the tie, so no entry is skipped or doubled.
    await activity.record([entry(1), entry(2), entry(3, minutes=3), entry(4, minutes=3), entry(5)])
    seen, before = [], None
    while page := await activity.search(ActivityFilter(), before=before, limit=2):
        seen.extend(a.id for _, a in page)
        before = page[-1][0]
    assert seen == ["a5", "a4", "a3", "a2", "a1"]


async def test_search_filters(activity: ActivityStore) -> None:
    await activity.record([
        entry(1), entry(2, repository="team/db"), entry(3, kind="tag.deleted"),
        entry(4, actor="bob"), entry(5, repository="nginx"),
    ])

    async def ids(**where: object) -> list[str]:
        found = await activity.search(ActivityFilter(**where), before=None, limit=50)  # type: ignore[arg-type]
        return [a.id for _, a in found]

    assert await ids(repository="team/db") == ["a2"]
    assert await ids(namespace="team") == ["a4", "a3", "a2", "a1"]
    assert await ids(namespace="") == ["a5"]
    assert await ids(actor="bob") == ["a4"]
    assert await ids(types=("tag.deleted",)) == ["a3"]
    assert await ids(since=T0 + timedelta(minutes=2), until=T0 + timedelta(minutes=4)) == [
        "a3", "a2"]


async def test_since_streams_in_recording_order(activity: ActivityStore) -> None:
    await activity.record([entry(2), entry(1)])
    start = await activity.last_sequence()
    await activity.record([entry(3)])
    assert [a.id for _, a in await activity.since(start, 10)] == ["a3"]
    assert [a.id for _, a in await activity.since(0, 10)] == ["a2", "a1", "a3"]


# -- export and import -----------------------------------------------------------------------


async def test_a_catalog_dump_loads_into_an_empty_store_as_it_was(stores: Factory) -> None:
    first = cast("CatalogStore", await stores("catalog"))
    assert await first.is_empty()
    await first.apply([
        ("e1", [manifest("team/app", DIGEST_A), tag("team/app", "1.0", DIGEST_A)]),
        ("e2", [manifest("team/app", DIGEST_B, subject=DIGEST_A, kind="signature")]),
        ("e3", [RecordPull("team/app", "1.0", DIGEST_A, T0)]),
        ("e4", [manifest("nginx", DIGEST_A)]),
    ])
    assert not await first.is_empty()
    records = [record async for record in first.dump()]
    assert [kind for kind, _ in records] == sorted(
        (kind for kind, _ in records), key=list(CATALOG_RECORDS).index)
    for kind, fields in records:
        assert check(CATALOG_RECORDS, kind, fields) is None, (kind, fields)
    second = cast("CatalogStore", await stores("catalog"))
    await second.load(records)
    assert [record async for record in second.dump()] == records
    assert await second.tags("team/app", after=None, limit=9) == await first.tags(
        "team/app", after=None, limit=9)
    assert await second.repositories(namespace=None, after=None, limit=9) == \
        await first.repositories(namespace=None, after=None, limit=9)
    assert await second.apply([("e1", [DeleteRepository("team/app")])]) == 0


async def test_an_activity_dump_loads_with_its_sequence(stores: Factory) -> None:
    first = cast("ActivityStore", await stores("activity"))
    assert await first.is_empty()
    await first.record([entry(2), entry(1), entry(3, kind="tag.deleted")])
    records = [record async for record in first.dump()]
    assert [fields["id"] for _, fields in records] == ["a2", "a1", "a3"]
    for kind, fields in records:
        assert check(ACTIVITY_RECORDS, kind, fields) is None, (kind, fields)
    second = cast("ActivityStore", await stores("activity"))
    await second.load(records)
    assert [record async for record in second.dump()] == records
    assert await second.since(0, 9) == await first.since(0, 9)
    await second.record([entry(4)])
    assert [(seq, a.id) for seq, a in await second.since(3, 9)] == [(4, "a4")]


async def test_concurrent_recorders_get_distinct_sequences_without_gaps(
    activity: ActivityStore,
) -> None:
    # Scale-out runs several activity consumers: each batch's sequence numbers are reserved and
    # written together, so the live stream (since) never sees a later number before an earlier.
    await asyncio.gather(*(activity.record([entry(n), entry(n + 100)]) for n in range(1, 9)))
    streamed = await activity.since(0, 100)
    assert [seq for seq, _ in streamed] == list(range(1, 17))
    assert sorted(a.id for _, a in streamed) == sorted(
        f"a{n}" for n in [*range(1, 9), *range(101, 109)])


async def test_visible_namespaces_limit_repositories_and_the_feed(
    catalog: CatalogStore, activity: ActivityStore
) -> None:
    names = ["a/one", "b/two", "c/three", "nginx"]
    await catalog.apply([(f"e{i}", [manifest(n, DIGEST_A)]) for i, n in enumerate(names)])

    async def visible(namespace: str | None, allowed: set[str]) -> list[str]:
        rows = await catalog.repositories(namespace=namespace, after=None, limit=10,
                                          visible=frozenset(allowed))
        return [r["name"] for r in rows]

    assert await visible(None, {"a", ""}) == ["a/one", "nginx"]
    assert await visible("a", {"a", "b"}) == ["a/one"]
    assert await visible("c", {"a", "b"}) == []
    assert await visible(None, set()) == []
    admin_only = Activity(id="x", type="user.created", actor="root", repository=None,
                          namespace="a", tag=None, digest=None, time=T0, address=None,
                          user_agent=None, audience="admin")
    await activity.record([entry(1, repository="a/one"), entry(2, repository="b/two"),
                           entry(3, repository="nginx"), admin_only])

    async def feed(**where: object) -> list[str]:
        found = await activity.search(ActivityFilter(**where), before=None, limit=50)  # type: ignore[arg-type]
        return [a.id for _, a in found]

    assert await feed(visible=frozenset({"a", ""})) == ["a3", "a1"]
    assert await feed(visible=frozenset({"a", "b"}), namespace="b") == ["a2"]
    assert await feed(visible=frozenset({"a"}), namespace="b") == []
    assert await feed() == ["a3", "a2", "a1", "x"]


async def test_one_batch_applies_its_events_in_order(catalog: CatalogStore) -> None:
    later = T0 + timedelta(minutes=5)
    assert await catalog.apply([
        ("e1", [manifest("team/app", DIGEST_A), tag("team/app", "old", DIGEST_A)]),
        ("e2", [DeleteRepository("team/app")]),
        ("e3", [manifest("team/app", DIGEST_B), tag("team/app", "new", DIGEST_B, later)]),
        ("e4", [RecordPull("team/app", "new", DIGEST_B, later)]),
        ("e5", [DeleteTag("team/app", "new"), tag("team/app", "again", DIGEST_B, later)]),
        ("e6", [RecordPull("team/app", None, DIGEST_B, later)]),
    ]) == 6
    assert await tag_names(catalog, "team/app") == {"again": DIGEST_B}
    repo = await catalog.repository("team/app")
    assert repo is not None
    assert (repo["pull_count"], repo["tag_count"]) == (2, 1)
    # Recreated by e3: created when its manifest was pushed, updated by its later tag.
    assert (repo["created_at"], repo["updated_at"]) == (
        T0.isoformat().replace("+00:00", "Z"), later.isoformat().replace("+00:00", "Z"))
