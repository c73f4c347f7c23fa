"""Portal sessions: the expiry rule (pure), the SessionStore contract on every adapter, and
Sessions on a real auth store (sign-in, expiry, disabled accounts, sign-out)."""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from services.auth.adapters.sessions_mongo import MongoSessionStore
from services.auth.adapters.sessions_sqlite import SqliteSessionStore
from services.auth.adapters.sqlite import SqliteAuthStore
from services.auth.models import User
from services.auth.sessions import (
    Session,
    Sessions,
    SessionSettings,
    SessionStore,
    csrf_matches,
    expiry,
)
from services.core.errors import Forbidden
from tests.support.mongo import own_database

T0 = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
HOUR = timedelta(hours=1)
SETTINGS = SessionSettings(ttl=12 * HOUR, idle=2 * HOUR)


@pytest.mark.parametrize(("last_seen", "ends"), [
    (T0, T0 + 2 * HOUR),                          # idle limit first
    (T0 + 5 * HOUR, T0 + 7 * HOUR),               # each request pushes the idle limit on
    (T0 + 11 * HOUR, T0 + 12 * HOUR),             # never past the absolute lifetime
    (T0 + 20 * HOUR, T0 + 12 * HOUR),
])
def test_expiry_is_the_earlier_of_lifetime_and_idle_limit(last_seen: datetime,
                                                         ends: datetime) -> None:
    assert expiry(T0, last_seen, SETTINGS) == ends


@pytest.mark.parametrize(("expected", "given", "matches"), [
    ("abc", "abc", True), ("abc", "abd", False), ("abc", "", False), ("abc", None, False),
    ("abc", "abcd", False), ("abc", "ábc", False),
])
def test_csrf_tokens_must_match_exactly(expected: str, given: str | None, matches: bool) -> None:
    assert csrf_matches(expected, given) is matches


# the store contract -------------------------------------------------------------------------


@pytest.fixture(params=["sqlite", "mongodb"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[SessionStore]:
    async with AsyncExitStack() as stack:
        adapter: SqliteSessionStore | MongoSessionStore
        if request.param == "mongodb":
            adapter = MongoSessionStore(await stack.enter_async_context(own_database(request)))
        else:
            adapter = SqliteSessionStore(tmp_path / "sessions.db")
        await adapter.open()
        stack.push_async_callback(adapter.close)
        yield adapter


def _session(user: str = "alice", *, expires: datetime = T0 + HOUR) -> Session:
    return Session(user, "password", f"csrf-{user}", T0, T0, expires)


def _id(n: int) -> bytes:
    return hashlib.sha256(str(n).encode()).digest()


async def test_a_session_reads_back_as_stored(store: SessionStore) -> None:
    await store.create(_id(1), _session())
    assert await store.get(_id(1)) == _session()
    await store.create(_id(2), replace(_session("bob"), credential_epoch=7))
    assert await store.get(_id(2)) == replace(_session("bob"), credential_epoch=7)
    assert await store.get(_id(3)) is None


async def test_touch_moves_last_seen_and_expiry(store: SessionStore) -> None:
    await store.create(_id(1), _session())
    await store.touch(_id(1), last_seen_at=T0 + HOUR, expires_at=T0 + 3 * HOUR)
    assert await store.get(_id(1)) == replace(_session(), last_seen_at=T0 + HOUR,
                                              expires_at=T0 + 3 * HOUR)


async def test_delete_one_and_all_of_a_user(store: SessionStore) -> None:
    for n, user in enumerate(["alice", "alice", "bob"]):
        await store.create(_id(n), _session(user))
    assert await store.delete(_id(0)) is True
    assert await store.delete(_id(0)) is False
    await store.create(_id(3), _session("alice"))
    assert await store.delete_user("alice") == 2
    assert await store.get(_id(3)) is None
    assert await store.get(_id(2)) == _session("bob")


async def test_prune_deletes_only_expired_sessions(store: SessionStore) -> None:
    await store.create(_id(1), _session(expires=T0 + HOUR))
    await store.create(_id(2), _session(expires=T0 + 3 * HOUR))
    assert await store.prune(T0 + 2 * HOUR) == 1
    assert await store.get(_id(1)) is None
    assert await store.get(_id(2)) is not None


async def test_a_stash_is_taken_once(store: SessionStore) -> None:
    await store.create(_id(1), _session())
    assert await store.take_stash(_id(1)) is None
    await store.set_stash(_id(1), b"first")
    await store.set_stash(_id(1), b"second")
    assert await store.take_stash(_id(1)) == b"second"
    assert await store.take_stash(_id(1)) is None
    await store.set_stash(_id(2), b"no such session")
    assert await store.take_stash(_id(2)) is None
    assert await store.get(_id(1)) == _session()


# Sessions on the auth store -------------------------------------------------------------------


@pytest.fixture
async def sessions(tmp_path: Path) -> AsyncIterator[tuple[Sessions, SqliteAuthStore]]:
    accounts = SqliteAuthStore(tmp_path / "auth.db")
    store = SqliteSessionStore(tmp_path / "sessions.db")
    await accounts.open()
    await store.open()
    await accounts.create_user(User("alice", "a@example.test", admin=False, enabled=True), "x")
    await accounts.create_user(User("ci", "ci@bots.local", admin=False, enabled=True,
                                    kind="bot"), None)
    yield Sessions(store, accounts, SETTINGS), accounts
    await store.close()
    await accounts.close()


async def test_start_and_resume(sessions: tuple[Sessions, SqliteAuthStore]) -> None:
    service, _ = sessions
    secret, session = await service.start("alice", "oidc")
    resumed = await service.resume(secret)
    assert resumed is not None
    assert resumed.user.name == "alice"
    assert resumed.session == session
    assert resumed.principal.name == "alice"
    # Only the hash is stored: the cookie value is no key in the store.
    assert await service.store.get(secret.encode()) is None
    assert await service.resume(secret + "x") is None


async def test_bots_unknown_and_disabled_accounts_get_no_session(
        sessions: tuple[Sessions, SqliteAuthStore]) -> None:
    service, accounts = sessions
    for name in ("ci", "nobody"):
        with pytest.raises(Forbidden):
            await service.start(name, "password")
    await accounts.update_user("alice", enabled=False)
    with pytest.raises(Forbidden):
        await service.start("alice", "password")


async def test_a_disabled_account_loses_its_sessions(
        sessions: tuple[Sessions, SqliteAuthStore]) -> None:
    service, accounts = sessions
    first, _ = await service.start("alice", "password")
    second, _ = await service.start("alice", "ldap")
    await accounts.update_user("alice", enabled=False)
    assert await service.resume(first) is None
    await accounts.update_user("alice", enabled=True)
    assert await service.resume(second) is None  # deleted with the first, not merely refused


async def test_a_session_ends_when_the_credential_epoch_moves_on(
        sessions: tuple[Sessions, SqliteAuthStore]) -> None:
    service, accounts = sessions
    first, started = await service.start("alice", "password")
    assert started.credential_epoch == 0
    await accounts.update_user("alice", bump_epoch=True)
    second, later = await service.start("alice", "password")
    assert later.credential_epoch == 1
    assert await service.resume(first) is None
    assert await service.store.get(hashlib.sha256(first.encode()).digest()) is None
    assert await service.resume(second) is not None


async def test_an_expired_session_is_gone(sessions: tuple[Sessions, SqliteAuthStore]) -> None:
    service, _ = sessions
    secret, _ = await service.start("alice", "password")
    id_hash = hashlib.sha256(secret.encode()).digest()
    past = datetime.now(UTC) - HOUR
    await service.store.touch(id_hash, last_seen_at=past - HOUR, expires_at=past)
    assert await service.resume(secret) is None
    assert await service.store.get(id_hash) is None


async def test_a_request_after_a_while_extends_the_idle_limit(
        sessions: tuple[Sessions, SqliteAuthStore]) -> None:
    service, _ = sessions
    secret, session = await service.start("alice", "password")
    id_hash = hashlib.sha256(secret.encode()).digest()
    earlier = session.last_seen_at - 30 * timedelta(minutes=1)
    await service.store.touch(id_hash, last_seen_at=earlier, expires_at=earlier + 2 * HOUR)
    resumed = await service.resume(secret)
    assert resumed is not None
    assert resumed.session.last_seen_at > earlier
    stored = await service.store.get(id_hash)
    assert stored is not None
    assert stored.expires_at == expiry(stored.created_at, stored.last_seen_at, SETTINGS)


async def test_end_and_end_all(sessions: tuple[Sessions, SqliteAuthStore]) -> None:
    service, _ = sessions
    first, _ = await service.start("alice", "password")
    second, _ = await service.start("alice", "password")
    await service.end(first)
    assert await service.resume(first) is None
    assert await service.resume(second) is not None
    assert await service.end_all("alice") == 1
    assert await service.resume(second) is None


async def test_a_stashed_secret_is_shown_once_and_stored_sealed(
        sessions: tuple[Sessions, SqliteAuthStore]) -> None:
    service, _ = sessions
    mine, _ = await service.start("alice", "password")
    other, _ = await service.start("alice", "password")
    await service.stash(mine, "dyat_secret-value")
    sealed = await service.store.take_stash(hashlib.sha256(mine.encode()).digest())
    assert sealed is not None
    assert b"dyat_secret-value" not in sealed  # a copy of the store does not give it away
    await service.store.set_stash(hashlib.sha256(mine.encode()).digest(), sealed)
    assert await service.take(other) is None
    assert await service.take(mine) == "dyat_secret-value"
    assert await service.take(mine) is None
    # Sealed for another session, it does not open in this one.
    await service.store.set_stash(hashlib.sha256(other.encode()).digest(), sealed)
    assert await service.take(other) is None
