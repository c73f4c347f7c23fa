"""The AuthStore contract: every adapter (SQLite, MongoDB on SecantusDB) passes the same tests.

Each port method is covered with the semantics the services rely on: unique names across
accounts and namespaces, the error types and codes, lockout counting, token lookup by hash,
memberships and the asking account's role in each namespace.
"""

from __future__ import annotations

import asyncio
import itertools
import sqlite3
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack, closing
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from services.auth.adapters.mongo import MongoAuthStore
from services.auth.adapters.sqlite import MIGRATIONS, SqliteAuthStore
from services.auth.models import AppToken, LoginState, Namespace, RefreshToken, Team, User
from services.auth.ports import AUTH_RECORDS, AuthStore
from services.core.dump import check
from services.core.errors import Conflict, NotFound
from services.core.sqlite import Database
from tests.support.mongo import own_database

T0 = datetime(2026, 1, 1, tzinfo=UTC)
HASH = "$argon2id$v=19$m=65536,t=3,p=4$c2FsdA$aGFzaA"


StoreFactory = Callable[[], Awaitable[AuthStore]]


@pytest.fixture(params=["sqlite", "mongodb", "mongod"])
async def stores(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[StoreFactory]:
    """Opens fresh, empty stores of one adapter, closed at the end of the test."""
    numbers = itertools.count()
    async with AsyncExitStack() as stack:

        async def make() -> AuthStore:
            opened: SqliteAuthStore | MongoAuthStore
            number = next(numbers)
            if request.param in {"mongodb", "mongod"}:
                server = "mongod_uri" if request.param == "mongod" else "mongo_uri"
                database = await stack.enter_async_context(
                    own_database(request, f"_{number}", server=server))
                opened = MongoAuthStore(database)
            else:
                opened = SqliteAuthStore(tmp_path / f"auth-{number}.db")
            await opened.open()
            stack.push_async_callback(opened.close)
            return opened

        yield make


@pytest.fixture
async def store(stores: StoreFactory) -> AuthStore:
    return await stores()


def person(name: str, *, admin: bool = False) -> User:
    return User(name, f"{name}@example.com", admin=admin, enabled=True)


def bot(name: str) -> User:
    return User(name, "", admin=False, enabled=True, kind="bot")


def app_token(user: str, label: str, n: int = 1, expires: datetime | None = None) -> AppToken:
    return AppToken(f"tok-{user}-{label}-{n}", user, label, T0 + timedelta(minutes=n), expires,
                    None, revoked=False)


async def with_team(store: AuthStore, team: str = "devs", owner: str = "olivia") -> None:
    await store.create_user(person(owner), HASH)
    await store.create_team(Team(team, "the developers"), owner)


# -- accounts --------------------------------------------------------------------------------


async def test_a_person_gets_an_account_and_a_private_personal_namespace(
    store: AuthStore,
) -> None:
    await store.create_user(person("alice", admin=True), HASH)
    found = await store.get_user("alice")
    assert found == (User("alice", "alice@example.com", admin=True, enabled=True, kind="user",
                          failed_logins=0, locked_until=None), HASH)
    ((namespace, role),) = await store.namespaces("alice", ["alice"])
    assert namespace == Namespace("alice", "personal", "private", "", None, "alice")
    assert role is None


async def test_a_bot_has_no_password_and_no_namespace(store: AuthStore) -> None:
    await store.create_user(bot("robot"), None)
    assert await store.get_user("robot") == (bot("robot"), None)
    assert await store.namespaces(None, ["robot"]) == []


async def test_a_bot_records_its_owner_team(store: AuthStore) -> None:
    await with_team(store)
    owned = User("deployer", "", admin=False, enabled=True, kind="bot", owner_team="devs")
    await store.create_user(owned, None)
    assert await store.get_user("deployer") == (owned, None)
    assert [u.owner_team for u in await store.list_users(after="d", limit=1)] == ["devs"]
    with pytest.raises(NotFound) as raised:
        await store.create_user(User("lost", "", admin=False, enabled=True, kind="bot",
                                     owner_team="nope"), None)
    assert raised.value.code == "team_not_found"
    assert await store.get_user("lost") is None


async def test_bots_of_a_file_from_before_owners_belong_to_the_admins(tmp_path: Path) -> None:
    path = tmp_path / "auth.db"
    with closing(sqlite3.connect(path)) as conn:
        conn.executescript(MIGRATIONS[0] + "PRAGMA user_version = 1;")
        conn.execute("INSERT INTO users (name, email, kind, admin, enabled, created_at)"
                     " VALUES ('oldbot', 'oldbot@bots.local', 'bot', 0, 1, 0)")
        conn.commit()
    store = SqliteAuthStore(path)
    await store.open()
    try:
        found = await store.get_user("oldbot")
        assert found is not None
        assert (found[0].kind, found[0].owner_team) == ("bot", None)
    finally:
        await store.close()


async def test_the_global_namespace_exists_from_the_start(store: AuthStore) -> None:
    ((namespace, role),) = await store.namespaces(None, [""])
    assert (namespace.name, namespace.kind, namespace.visibility) == ("", "global", "protected")
    assert role is None


async def test_names_are_unique_across_accounts_and_namespaces(store: AuthStore) -> None:
    await with_team(store)
    await store.create_user(person("alice"), HASH)
    with pytest.raises(Conflict) as taken:
        await store.create_user(person("alice"), HASH)
    assert taken.value.code == "name_taken"
    with pytest.raises(Conflict) as bot_taken:
        await store.create_user(bot("alice"), None)
    assert bot_taken.value.code == "name_taken"
    await store.create_namespace(Namespace("web", "team", "public", "", "devs"))
    with pytest.raises(Conflict) as namespace_taken:
        await store.create_user(person("web"), HASH)
    assert namespace_taken.value.code == "name_taken"
    await store.create_user(bot("robot"), None)
    with pytest.raises(Conflict) as account_taken:
        await store.create_namespace(Namespace("robot", "team", "public", "", "devs"))
    assert account_taken.value.code == "name_taken"
    with pytest.raises(Conflict) as exists:
        await store.create_namespace(Namespace("web", "team", "private", "", "devs"))
    assert exists.value.code == "namespace_exists"
    # A refused account left nothing behind: no second namespace, the first unchanged.
    ((web, _),) = await store.namespaces(None, ["web"])
    assert web.visibility == "public"


async def test_list_users_pages_by_name(store: AuthStore) -> None:
    for name in ("dora", "alice", "carl", "bob"):
        await store.create_user(person(name), HASH)
    first = await store.list_users(after=None, limit=3)
    assert [u.name for u in first] == ["alice", "bob", "carl"]
    assert [u.name for u in await store.list_users(after="carl", limit=3)] == ["dora"]


async def test_update_user_changes_only_what_is_given(store: AuthStore) -> None:
    await store.create_user(person("alice"), HASH)
    updated = await store.update_user("alice", email="a@new.example", admin=True)
    assert (updated.email, updated.admin, updated.enabled) == ("a@new.example", True, True)
    updated = await store.update_user("alice", enabled=False, password_hash="new-hash")
    assert (updated.email, updated.admin, updated.enabled) == ("a@new.example", True, False)
    assert await store.get_user("alice") == (updated, "new-hash")
    assert await store.update_user("alice") == updated
    with pytest.raises(NotFound) as missing:
        await store.update_user("nobody", email="x@example.com")
    assert missing.value.code == "user_not_found"


async def test_bump_epoch_increments_the_credential_epoch_with_the_change(
        store: AuthStore) -> None:
    await store.create_user(person("alice"), HASH)
    assert (await store.update_user("alice")).credential_epoch == 0
    updated = await store.update_user("alice", password_hash="new-hash", bump_epoch=True)
    assert updated.credential_epoch == 1
    assert (await store.update_user("alice", bump_epoch=True)).credential_epoch == 2
    assert await store.get_user("alice") == (replace(updated, credential_epoch=2), "new-hash")
    assert (await store.update_user("alice", email="a@new.example")).credential_epoch == 2
    with pytest.raises(NotFound):
        await store.update_user("nobody", bump_epoch=True)


async def test_an_auth_db_from_before_epochs_upgrades_to_epoch_0(tmp_path: Path) -> None:
    old = Database(tmp_path / "auth.db", MIGRATIONS[:1])
    await old.open()
    await old.write(lambda conn: conn.execute(
        "INSERT INTO users (name, email, kind, password_hash, admin, enabled, created_at)"
        " VALUES ('alice', 'a@example.com', 'user', 'h', 0, 1, 0)"))
    await old.close()
    store = SqliteAuthStore(tmp_path / "auth.db")
    await store.open()
    try:
        assert await store.get_user("alice") == (
            User("alice", "a@example.com", admin=False, enabled=True, credential_epoch=0), "h")
        assert (await store.update_user("alice", bump_epoch=True)).credential_epoch == 1
    finally:
        await store.close()


async def test_login_state_is_compare_and_set(store: AuthStore) -> None:
    await store.create_user(person("alice"), HASH)
    locked = LoginState(3, T0 + timedelta(minutes=10))
    assert await store.set_login_state("alice", LoginState(1), expected=LoginState())
    assert not await store.set_login_state("alice", LoginState(2), expected=LoginState())
    assert await store.set_login_state("alice", locked, expected=LoginState(1))
    found = await store.get_user("alice")
    assert found is not None
    assert found[0].login_state == locked
    # the lock is part of what is compared
    assert not await store.set_login_state("alice", LoginState(4), expected=LoginState(3))
    assert await store.set_login_state("alice", LoginState(4), expected=locked)
    # an unconditional write, and a write that changes nothing, succeed
    assert await store.set_login_state("alice", LoginState(), expected=None)
    assert await store.set_login_state("alice", LoginState(), expected=LoginState())
    found = await store.get_user("alice")
    assert found is not None
    assert (found[0].failed_logins, found[0].locked_until) == (0, None)
    assert not await store.set_login_state("nobody", LoginState(1), expected=None)


async def test_concurrent_compare_and_sets_have_one_winner(store: AuthStore) -> None:
    await store.create_user(person("alice"), HASH)
    won = await asyncio.gather(*(store.set_login_state("alice", LoginState(1 + i),
                                                       expected=LoginState())
                                 for i in range(12)))
    assert won.count(True) == 1
    found = await store.get_user("alice")
    assert found is not None
    assert found[0].failed_logins == 1 + won.index(True)


# -- teams -----------------------------------------------------------------------------------


async def test_a_team_starts_with_its_owner(store: AuthStore) -> None:
    await with_team(store)
    assert await store.get_team("devs") == Team("devs", "the developers")
    assert [(m.team, m.user, m.role) for m in await store.members("devs")] == [
        ("devs", "olivia", "owner")]
    with pytest.raises(Conflict) as exists:
        await store.create_team(Team("devs", "again"), "olivia")
    assert exists.value.code == "team_exists"
    with pytest.raises(NotFound) as no_owner:
        await store.create_team(Team("ops", ""), "nobody")
    assert no_owner.value.code == "user_not_found"
    assert await store.get_team("ops") is None
    assert await store.get_team("nothing") is None


async def test_memberships_are_set_changed_and_removed(store: AuthStore) -> None:
    await with_team(store)
    await store.create_user(person("carl"), HASH)
    assert await store.set_member("devs", "carl", "viewer") is None
    assert await store.set_member("devs", "carl", "contributor") == "viewer"
    assert [(m.user, m.role) for m in await store.members("devs")] == [
        ("carl", "contributor"), ("olivia", "owner")]
    assert await store.roles_of("carl") == {"devs": "contributor"}
    assert await store.remove_member("devs", "carl") == "contributor"
    assert await store.remove_member("devs", "carl") is None
    assert await store.roles_of("carl") == {}
    with pytest.raises(NotFound) as no_team:
        await store.set_member("nope", "carl", "viewer")
    assert no_team.value.code == "team_not_found"
    with pytest.raises(NotFound) as no_user:
        await store.set_member("devs", "nobody", "viewer")
    assert no_user.value.code == "user_not_found"
    with pytest.raises(NotFound):
        await store.remove_member("nope", "carl")


async def test_list_teams_all_or_of_a_member(store: AuthStore) -> None:
    await with_team(store, "web")
    await store.create_user(person("carl"), HASH)
    await store.create_team(Team("ops", ""), "carl")
    await store.create_team(Team("db", ""), "carl")
    await store.set_member("web", "carl", "viewer")
    assert [t.name for t in await store.list_teams(member=None)] == ["db", "ops", "web"]
    assert [t.name for t in await store.list_teams(member="carl")] == ["db", "ops", "web"]
    assert [t.name for t in await store.list_teams(member="olivia")] == ["web"]
    assert await store.list_teams(member="nobody") == []


# -- namespaces ------------------------------------------------------------------------------


async def test_namespaces_carry_the_accounts_role_in_their_team(store: AuthStore) -> None:
    await with_team(store)
    await store.create_user(person("carl"), HASH)
    await store.set_member("devs", "carl", "viewer")
    await store.create_namespace(Namespace("web", "team", "private", "the site", "devs"))
    await store.create_namespace(Namespace("db", "team", "public", "", "devs"))
    names = [(ns.name, role) for ns, role in await store.namespaces("carl")]
    assert names == [("", None), ("carl", None), ("db", "viewer"), ("olivia", None),
                     ("web", "viewer")]
    assert [(ns.name, role) for ns, role in await store.namespaces("olivia", ["web", "x"])] == [
        ("web", "owner")]
    assert [(ns.name, role) for ns, role in await store.namespaces(None, ["web"])] == [
        ("web", None)]
    assert await store.namespaces("carl", []) == []
    with pytest.raises(NotFound) as no_team:
        await store.create_namespace(Namespace("x", "team", "private", "", "nope"))
    assert no_team.value.code == "team_not_found"


async def test_update_namespace(store: AuthStore) -> None:
    await with_team(store)
    await store.create_team(Team("ops", ""), "olivia")
    await store.create_namespace(Namespace("web", "team", "private", "", "devs"))
    updated = await store.update_namespace("web", visibility="public", description="site")
    assert updated == Namespace("web", "team", "public", "site", "devs")
    updated = await store.update_namespace("web", team="ops")
    assert updated == Namespace("web", "team", "public", "site", "ops")
    assert await store.update_namespace("web") == updated
    with pytest.raises(NotFound) as no_team:
        await store.update_namespace("web", team="nope")
    assert no_team.value.code == "team_not_found"
    with pytest.raises(NotFound) as missing:
        await store.update_namespace("nothing", visibility="public")
    assert missing.value.code == "namespace_not_found"


# -- tokens ----------------------------------------------------------------------------------


async def test_app_tokens_are_found_by_their_hash_with_the_account(store: AuthStore) -> None:
    await store.create_user(person("alice"), HASH)
    token = app_token("alice", "ci", expires=T0 + timedelta(days=30))
    await store.create_app_token(token, b"\x01" * 32)
    found = await store.find_app_token(b"\x01" * 32)
    assert found == (token, person("alice"))
    assert await store.find_app_token(b"\x02" * 32) is None
    used = T0 + timedelta(hours=1)
    await store.touch_app_token(token.id, used)
    (listed,) = await store.list_app_tokens("alice")
    assert listed.last_used_at == used


async def test_a_label_names_one_live_token(store: AuthStore) -> None:
    await store.create_user(person("alice"), HASH)
    await store.create_user(person("bob"), HASH)
    await store.create_app_token(app_token("alice", "ci", 1), b"\x01" * 32)
    await store.create_app_token(app_token("bob", "ci", 1), b"\x02" * 32)  # another user's
    with pytest.raises(Conflict) as exists:
        await store.create_app_token(app_token("alice", "ci", 2), b"\x03" * 32)
    assert exists.value.code == "token_exists"
    with pytest.raises(Conflict):  # the same secret twice
        await store.create_app_token(app_token("alice", "other", 3), b"\x01" * 32)
    revoked = await store.revoke_app_token("alice", "ci")
    assert revoked is not None
    assert (revoked.id, revoked.revoked) == ("tok-alice-ci-1", True)
    assert await store.revoke_app_token("alice", "ci") is None
    # Once revoked, the label is free again; the revoked token stays listed.
    await store.create_app_token(app_token("alice", "ci", 4), b"\x04" * 32)
    listed = await store.list_app_tokens("alice")
    assert [(t.id, t.revoked) for t in listed] == [("tok-alice-ci-1", True),
                                                   ("tok-alice-ci-4", False)]
    found = await store.find_app_token(b"\x01" * 32)
    assert found is not None
    assert found[0].revoked
    with pytest.raises(NotFound) as no_user:
        await store.create_app_token(app_token("nobody", "ci"), b"\x05" * 32)
    assert no_user.value.code == "user_not_found"
    assert await store.list_app_tokens("nobody") == []


def refresh(user: str, family: str, generation: int = 0, *, client_id: str = "docker",
            credential: str = "password") -> RefreshToken:
    return RefreshToken(family, generation, user, client_id, credential, 0,
                        T0 + timedelta(minutes=generation), T0 + timedelta(days=90))


async def test_refresh_tokens_are_found_by_their_hash_with_the_account(
        store: AuthStore) -> None:
    await store.create_user(person("alice"), HASH)
    await store.update_user("alice", bump_epoch=True)
    token = replace(refresh("alice", "f1"), last_used_at=T0 + timedelta(hours=1))
    await store.create_refresh_token(token, b"\x01" * 32)
    found = await store.find_refresh_token(b"\x01" * 32)
    assert found is not None
    assert found[0] == token
    assert (found[1].name, found[1].credential_epoch) == ("alice", 1)
    assert await store.find_refresh_token(b"\x09" * 32) is None


async def test_rotation_keeps_the_presented_token_and_ends_the_rest_of_its_family(
        store: AuthStore) -> None:
    await store.create_user(person("alice"), HASH)
    await store.create_refresh_token(refresh("alice", "f1"), b"\x01" * 32)
    await store.create_refresh_token(refresh("alice", "f2"), b"\x09" * 32)
    at = T0 + timedelta(hours=1)
    assert await store.rotate_refresh_token(b"\x01" * 32, refresh("alice", "f1", 1),
                                            b"\x02" * 32, at)
    # presented again before its successor was used: the unused successor ends
    assert await store.rotate_refresh_token(b"\x01" * 32, refresh("alice", "f1", 2),
                                            b"\x03" * 32, at)
    # the successor used: the token presented before ends
    assert await store.rotate_refresh_token(b"\x03" * 32, refresh("alice", "f1", 3),
                                            b"\x04" * 32, at)
    live = {}
    for n in range(1, 5):
        found = await store.find_refresh_token(bytes([n]) * 32)
        assert found is not None
        live[n] = not found[0].revoked
    assert live == {1: False, 2: False, 3: True, 4: True}
    used = await store.find_refresh_token(b"\x03" * 32)
    assert used is not None
    assert used[0].last_used_at == at
    # an ended token does not rotate, and nothing changes
    assert not await store.rotate_refresh_token(b"\x01" * 32, refresh("alice", "f1", 9),
                                                b"\x05" * 32, at)
    assert await store.find_refresh_token(b"\x05" * 32) is None
    other = await store.find_refresh_token(b"\x09" * 32)
    assert other is not None
    assert not other[0].revoked  # other families are not touched


async def test_refresh_tokens_are_revoked_by_family_and_by_credential(
        store: AuthStore) -> None:
    await store.create_user(person("alice"), HASH)
    await store.create_user(person("bob"), HASH)
    await store.create_refresh_token(refresh("alice", "f1"), b"\x01" * 32)
    await store.create_refresh_token(refresh("alice", "f1", 1), b"\x02" * 32)
    await store.create_refresh_token(refresh("alice", "f2", credential="tok1"), b"\x03" * 32)
    await store.create_refresh_token(refresh("bob", "f3", credential="tok1"), b"\x04" * 32)
    assert await store.revoke_refresh_family("f1") == 2
    assert await store.revoke_refresh_family("f1") == 0
    assert await store.revoke_refresh_tokens("alice", "tok1") == 1
    assert await store.revoke_refresh_tokens("alice", "tok1") == 0
    revoked = {}
    for n in range(1, 5):
        found = await store.find_refresh_token(bytes([n]) * 32)
        assert found is not None
        revoked[n] = found[0].revoked
    assert revoked == {1: True, 2: True, 3: True, 4: False}


# -- export and import -----------------------------------------------------------------------


async def test_a_dump_loads_into_an_empty_store_as_it_was(stores: StoreFactory) -> None:
    first = await stores()
    assert await first.is_empty()
    await with_team(first)
    await store_everything(first)
    assert not await first.is_empty()
    records = [record async for record in first.dump()]
    assert [kind for kind, _ in records] == sorted(
        (kind for kind, _ in records), key=list(AUTH_RECORDS).index)
    for kind, fields in records:
        assert check(AUTH_RECORDS, kind, fields) is None, (kind, fields)
    second = await stores()
    await second.load(records)
    assert [record async for record in second.dump()] == records
    for account in ("olivia", "carl", None):
        assert await second.namespaces(account) == await first.namespaces(account)
    assert await second.find_app_token(b"\x01" * 32) == await first.find_app_token(b"\x01" * 32)
    assert await second.find_refresh_token(b"\x02" * 32) == await first.find_refresh_token(
        b"\x02" * 32)
    assert await second.get_user("carl") == await first.get_user("carl")
    assert await second.get_user("deployer") == await first.get_user("deployer")


async def store_everything(store: AuthStore) -> None:
    await store.create_user(person("carl"), HASH)
    await store.create_user(bot("robot"), None)
    await store.create_user(User("deployer", "", admin=False, enabled=True, kind="bot",
                                 owner_team="devs"), None)
    await store.set_member("devs", "carl", "viewer")
    await store.create_namespace(Namespace("web", "team", "public", "site", "devs"))
    await store.update_namespace("", visibility="private")
    await store.create_app_token(app_token("carl", "ci"), b"\x01" * 32)
    await store.create_app_token(app_token("robot", "x", expires=T0), b"\x03" * 32)
    await store.revoke_app_token("robot", "x")
    await store.create_refresh_token(refresh("carl", "f1", credential="tok-carl-ci-1"),
                                     b"\x02" * 32)
    await store.create_refresh_token(replace(refresh("carl", "f1", 1), revoked=True,
                                             last_used_at=T0), b"\x04" * 32)
    await store.set_login_state("carl", LoginState(1, T0), expected=None)
    await store.update_user("carl", bump_epoch=True)
