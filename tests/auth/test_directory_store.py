"""The DirectoryStore contract, run against every adapter (SQLite, and MongoDB on SecantusDB)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path

import pytest

from services.auth.adapters.directory_sqlite import SqliteDirectoryStore
from services.auth.models import ExternalAccount
from services.auth.ports import DIRECTORY_RECORDS, DirectoryStore
from services.core.dump import check
from tests.support.mongo import own_database

SEEN = datetime(2026, 3, 1, 12, 30, tzinfo=UTC)


@asynccontextmanager
async def opened(
    backend: str, request: pytest.FixtureRequest, tmp_path: Path, suffix: str
) -> AsyncIterator[DirectoryStore]:
    async with AsyncExitStack() as stack:
        if backend == "mongodb":
            from services.auth.adapters.directory_mongo import (  # noqa: PLC0415 - optional extra
                MongoDirectoryStore,
            )

            adapter: SqliteDirectoryStore | MongoDirectoryStore = MongoDirectoryStore(
                await stack.enter_async_context(own_database(request, suffix)))
        else:
            adapter = SqliteDirectoryStore(tmp_path / f"directory{suffix}.db")
        await adapter.open()
        stack.push_async_callback(adapter.close)
        yield adapter


@pytest.fixture(params=["sqlite", "mongodb"])
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
async def store(
    backend: str, request: pytest.FixtureRequest, tmp_path: Path
) -> AsyncIterator[DirectoryStore]:
    async with opened(backend, request, tmp_path, "") as adapter:
        yield adapter


@pytest.fixture
async def second(
    backend: str, request: pytest.FixtureRequest, tmp_path: Path
) -> AsyncIterator[DirectoryStore]:
    """Another, empty store on the same adapter as ``store``."""
    async with opened(backend, request, tmp_path, "_2") as adapter:
        yield adapter


async def test_link_and_find(store: DirectoryStore) -> None:
    assert await store.account("alice") is None
    alice = ExternalAccount("alice", "ldap", "uid=alice,dc=x")
    await store.link(alice)
    assert await store.account("alice") == alice
    assert await store.by_external_id("ldap", "uid=alice,dc=x") == alice
    assert await store.by_external_id("oidc:corp", "uid=alice,dc=x") is None


async def test_link_replaces(store: DirectoryStore) -> None:
    await store.link(ExternalAccount("alice", "ldap", ""))
    assert await store.by_external_id("ldap", "") is None  # pre-created: not linked yet
    await store.link(ExternalAccount("alice", "ldap", "uid=alice,dc=x", suspended=True))
    found = await store.account("alice")
    assert found == ExternalAccount("alice", "ldap", "uid=alice,dc=x", suspended=True)


async def test_accounts_by_source_in_name_order(store: DirectoryStore) -> None:
    for name, source in (("zed", "ldap"), ("amy", "ldap"), ("olga", "oidc:corp")):
        await store.link(ExternalAccount(name, source, f"id-{name}"))
    await store.link(ExternalAccount("pre", "ldap", ""))
    await store.link(ExternalAccount("pre2", "ldap", ""))  # several unlinked ones may exist
    assert [a.name for a in await store.accounts("ldap")] == ["amy", "pre", "pre2", "zed"]
    assert [a.name for a in await store.accounts("oidc:corp")] == ["olga"]


async def test_managed_memberships_are_replaced_whole(store: DirectoryStore) -> None:
    assert await store.managed("alice") == {}
    await store.set_managed("alice", {"web": "contributor", "ops.team": "viewer"})
    await store.set_managed("bob", {"web": "owner"})
    assert await store.managed("alice") == {"web": "contributor", "ops.team": "viewer"}
    await store.set_managed("alice", {"web": "viewer"})
    assert await store.managed("alice") == {"web": "viewer"}
    await store.set_managed("alice", {})
    assert await store.managed("alice") == {}
    assert await store.managed("bob") == {"web": "owner"}


async def fill(store: DirectoryStore) -> None:
    """Out of order on purpose: the dump is in key order whatever the order of the writes."""
    await store.link(ExternalAccount("zed", "oidc:corp", "sub-9", suspended=True))
    await store.link(ExternalAccount("amy", "ldap", "uid=amy,dc=x", seen_at=SEEN))
    await store.link(ExternalAccount("pre", "ldap", ""))
    await store.link(ExternalAccount("pre2", "ldap", ""))
    await store.set_managed("zed", {"web": "owner"})
    await store.set_managed("amy", {"web": "contributor", "ops.team": "viewer"})


async def test_dump_yields_every_record_in_key_order(store: DirectoryStore) -> None:
    assert await store.is_empty()
    assert [record async for record in store.dump()] == []
    await fill(store)
    assert not await store.is_empty()
    dumped = [record async for record in store.dump()]
    assert dumped == [
        ("account", {"name": "amy", "source": "ldap", "external_id": "uid=amy,dc=x",
                     "suspended": False, "seen_at": SEEN.timestamp()}),
        ("account", {"name": "pre", "source": "ldap", "external_id": "", "suspended": False,
                     "seen_at": None}),
        ("account", {"name": "pre2", "source": "ldap", "external_id": "", "suspended": False,
                     "seen_at": None}),
        ("account", {"name": "zed", "source": "oidc:corp", "external_id": "sub-9",
                     "suspended": True, "seen_at": None}),
        ("managed_member", {"user": "amy", "team": "ops.team", "role": "viewer"}),
        ("managed_member", {"user": "amy", "team": "web", "role": "contributor"}),
        ("managed_member", {"user": "zed", "team": "web", "role": "owner"}),
    ]
    assert all(check(DIRECTORY_RECORDS, kind, fields) is None for kind, fields in dumped)


async def test_a_loaded_dump_reads_and_works_as_the_original(
    store: DirectoryStore, second: DirectoryStore
) -> None:
    await fill(store)
    dumped = [record async for record in store.dump()]
    await second.load(dumped)
    assert [record async for record in second.dump()] == dumped
    assert not await second.is_empty()
    for name in ("amy", "pre", "zed", "nobody"):
        assert await second.account(name) == await store.account(name)
    assert await second.by_external_id("oidc:corp", "sub-9") == \
        ExternalAccount("zed", "oidc:corp", "sub-9", suspended=True)
    assert await second.by_external_id("ldap", "") is None  # pre-created ones stay unlinked
    assert [a.name for a in await second.accounts("ldap")] == ["amy", "pre", "pre2"]
    assert await second.managed("amy") == {"web": "contributor", "ops.team": "viewer"}
    # A pre-created account links at its first sign-in; the sync goes on replacing memberships.
    await second.link(ExternalAccount("pre", "ldap", "uid=pre,dc=x"))
    assert await second.by_external_id("ldap", "uid=pre,dc=x") == \
        ExternalAccount("pre", "ldap", "uid=pre,dc=x")
    await second.set_managed("amy", {"web": "viewer"})
    assert await second.managed("amy") == {"web": "viewer"}


async def test_managed_memberships_load_in_batches_and_any_order(store: DirectoryStore) -> None:
    await store.load([("managed_member", {"user": "amy", "team": "web", "role": "viewer"})])
    await store.load([("managed_member", {"user": "amy", "team": "api", "role": "owner"}),
                      ("account", {"name": "amy", "source": "ldap", "external_id": "a",
                                   "suspended": False, "seen_at": None})])
    assert await store.managed("amy") == {"web": "viewer", "api": "owner"}
    assert [kind_fields async for kind_fields in store.dump()][1:] == [
        ("managed_member", {"user": "amy", "team": "api", "role": "owner"}),
        ("managed_member", {"user": "amy", "team": "web", "role": "viewer"}),
    ]
