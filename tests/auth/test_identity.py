"""IdentityService: Portus' rights (admin, team owner, member, outsider) for every operation,
the ``[permissions]`` switches, last-owner protection, names, bots and tokens, and the audit
events each change publishes.

The world is built once through IdentityService itself (argon2 makes accounts slow to create on
purpose) and each test gets a copy of its database: team ``devs`` is owned by olivia, with carl a
contributor, vera a viewer and the bot robot a viewer; it owns the private namespace ``devns``;
otto belongs to no team; admin is an administrator.
"""

from __future__ import annotations

import asyncio
import json
import shutil
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from services.auth.adapters.sqlite import SqliteAuthStore
from services.auth.audit import IDENTITY_EVENTS, Audit
from services.auth.identity import IdentityService, Permissions
from services.auth.models import User
from services.auth.policy import Policy, Principal
from services.core.errors import Conflict, DyError, Forbidden, Invalid, NotFound
from services.core.eventlog.sqlite import SqliteEventLog

ADMIN = Principal("admin", "user", admin=True, credential="password")
PASSWORD = "a-good-password"
PEOPLE = ("admin", "olivia", "carl", "vera", "otto")


def person(name: str) -> Principal:
    return Principal(name, "user", credential="password")


ROBOT = Principal("robot", "bot", credential="app_token")
ACTORS = {"admin": ADMIN, "owner": person("olivia"), "member": person("carl"),
          "outsider": person("otto")}


async def build_world(directory: Path) -> None:
    store = SqliteAuthStore(directory / "auth.db")
    log = SqliteEventLog(directory / "events.db")
    await store.open()
    await log.open()
    try:
        identity = IdentityService(store, Audit(log), Permissions(), Catalog())
        await asyncio.gather(*(identity.create_user(ADMIN, name, email="", password=PASSWORD,
                                                    admin=name == "admin")
                               for name in PEOPLE))
        await identity.create_team(ADMIN, "devs", owner="olivia")
        await identity.set_member(ADMIN, "devs", "carl", "contributor")
        await identity.set_member(ADMIN, "devs", "vera", "viewer")
        await identity.create_bot(ADMIN, "robot", team="devs", role="viewer")
        await identity.create_namespace(ADMIN, "devns", team="devs")
    finally:
        await log.close()
        await store.close()


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("identity")
    asyncio.run(build_world(directory))
    return directory / "auth.db"


@dataclass
class Catalog:
    """The catalog's repositories per namespace (ingest's, as auth reads it)."""

    repositories: dict[str, int] = field(default_factory=dict)

    async def repository_count(self, namespace: str) -> int:
        return self.repositories.get(namespace, 0)


@dataclass
class World:
    store: SqliteAuthStore
    log: SqliteEventLog
    catalog: Catalog = field(default_factory=Catalog)

    def identity(self, permissions: Permissions | None = None) -> IdentityService:
        return IdentityService(self.store, Audit(self.log), permissions or Permissions(),
                               self.catalog)

    async def events(self) -> list[dict[str, Any]]:
        """Every identity event this test published (the world's own are not in this log)."""
        subscription = await self.log.subscribe(IDENTITY_EVENTS, f"reader-{id(object())}")
        try:
            return [json.loads(r.value) for r in await subscription.fetch(timeout=0.05)]
        finally:
            await subscription.close()


@pytest.fixture
async def world(template: Path, tmp_path: Path) -> AsyncIterator[World]:
    shutil.copy(template, tmp_path / "auth.db")
    store = SqliteAuthStore(tmp_path / "auth.db")
    log = SqliteEventLog(tmp_path / "events.db")
    await store.open()
    await log.open()
    try:
        yield World(store, log)
    finally:
        await log.close()
        await store.close()


# --- who may do what -------------------------------------------------------------------------

Operation = Callable[[IdentityService, Principal], Awaitable[object]]
OPERATIONS: dict[str, tuple[Operation, set[str]]] = {
    "create an account": (
        lambda i, a: i.create_user(a, "newbie", email="", password=PASSWORD), {"admin"}),
    "disable an account": (lambda i, a: i.set_enabled(a, "vera", enabled=False), {"admin"}),
    "make an admin": (lambda i, a: i.set_admin(a, "vera", admin=True), {"admin"}),
    "change carl's email": (
        lambda i, a: i.update_user(a, "carl", email="carl@example.com"), {"admin", "member"}),
    "see carl's account": (lambda i, a: i.get_user(a, "carl"), {"admin", "member"}),
    "list accounts": (lambda i, a: i.users(a, after=None, limit=10), {"admin"}),
    "create a team they own": (
        lambda i, a: i.create_team(a, "fresh", owner=a.name or ""),
        {"admin", "owner", "member", "outsider"}),
    "create a team for someone else": (
        lambda i, a: i.create_team(a, "fresh", owner="vera"), {"admin"}),
    "add a member": (lambda i, a: i.set_member(a, "devs", "otto", "viewer"), {"admin", "owner"}),
    "change a role": (
        lambda i, a: i.set_member(a, "devs", "vera", "contributor"), {"admin", "owner"}),
    "remove a member": (lambda i, a: i.remove_member(a, "devs", "vera"), {"admin", "owner"}),
    "see the members": (lambda i, a: i.get_team(a, "devs"), {"admin", "owner", "member"}),
    "create a namespace": (
        lambda i, a: i.create_namespace(a, "devtools", team="devs"), {"admin", "owner"}),
    "change visibility": (
        lambda i, a: i.update_namespace(a, "devns", visibility="public"), {"admin", "owner"}),
    "change description": (
        lambda i, a: i.update_namespace(a, "devns", description="ours"), {"admin", "owner"}),
    "see the private namespace": (
        lambda i, a: i.get_namespace(a, "devns"), {"admin", "owner", "member"}),
    "create a bot": (
        lambda i, a: i.create_bot(a, "helper", team="devs", role="viewer"), {"admin", "owner"}),
    "create a token for carl": (lambda i, a: i.create_token(a, "carl", "ci"), {"admin", "member"}),
    "list carl's tokens": (lambda i, a: i.tokens(a, "carl"), {"admin", "member"}),
    "create a token for the bot": (
        lambda i, a: i.create_token(a, "robot", "ci"), {"admin", "owner"}),
    "list the bot's tokens": (lambda i, a: i.tokens(a, "robot"), {"admin", "owner"}),
}


HIDDEN_FROM_OUTSIDERS = {
    "change carl's email", "see carl's account", "add a member", "change a role",
    "remove a member", "see the members", "create a namespace", "change visibility",
    "change description", "create a bot", "create a token for carl", "list carl's tokens",
    "create a token for the bot", "list the bot's tokens",
}


@pytest.mark.parametrize("actor", list(ACTORS))
@pytest.mark.parametrize("operation", list(OPERATIONS))
async def test_rights(world: World, operation: str, actor: str) -> None:
    run, allowed = OPERATIONS[operation]
    identity = world.identity()
    if actor in allowed:
        await run(identity, ACTORS[actor])
        return
    # What the caller may not see is not found, as if it did not exist: otto, in no team,
    # sees neither devs, nor its private namespace, nor its members' accounts; nor does anyone
    # see a bot they may not manage.
    hidden = operation in {"see the private namespace", "create a token for the bot",
                           "list the bot's tokens"} or (
        actor == "outsider" and operation in HIDDEN_FROM_OUTSIDERS)
    expected = NotFound if hidden else Forbidden
    with pytest.raises(expected):
        await run(identity, ACTORS[actor])
    assert await world.events() == []


async def test_changing_a_password_is_for_the_account_and_admins(world: World) -> None:
    identity = world.identity()
    with pytest.raises(Forbidden):  # carl's teammate
        await identity.change_password(ACTORS["owner"], "carl", "another-password")
    with pytest.raises(NotFound):  # otto cannot see carl's account at all
        await identity.change_password(ACTORS["outsider"], "carl", "another-password")
    _, before = await world.store.get_user("carl") or (None, None)
    await identity.change_password(ACTORS["member"], "carl", "another-password")
    _, after = await world.store.get_user("carl") or (None, None)
    assert after != before
    assert [(e["type"], e["actor"], e["subject"]) for e in await world.events()] == [
        ("user.change_password", "carl", "carl")]
    assert "another-password" not in json.dumps(await world.events())


async def test_owners_manage_their_personal_namespace(world: World) -> None:
    identity = world.identity()
    changed = await identity.update_namespace(person("otto"), "otto", visibility="public",
                                              description="mine")
    assert (changed.kind, changed.visibility, changed.owner) == ("personal", "public", "otto")
    with pytest.raises(Forbidden):
        await identity.update_namespace(person("carl"), "otto", description="not mine")
    with pytest.raises(NotFound):  # a private personal namespace is invisible to others
        await identity.get_namespace(person("carl"), "vera")
    with pytest.raises(Invalid, match="does not belong to a team"):
        await identity.update_namespace(ADMIN, "otto", team="devs")


async def test_protected_and_public_namespaces_are_visible_to_everyone_signed_in(
    world: World,
) -> None:
    identity = world.identity()
    await identity.update_namespace(ADMIN, "devns", visibility="protected")
    assert (await identity.get_namespace(person("otto"), "devns")).visibility == "protected"


async def test_moving_a_namespace_needs_owning_both_teams(world: World) -> None:
    identity = world.identity()
    await identity.create_team(person("otto"), "others", owner="otto")
    with pytest.raises(NotFound):  # olivia is not in "others": to her it is not there
        await identity.update_namespace(person("olivia"), "devns", team="others")
    await identity.set_member(person("otto"), "others", "olivia", "viewer")
    with pytest.raises(Forbidden):  # olivia does not own "others"
        await identity.update_namespace(person("olivia"), "devns", team="others")
    await identity.set_member(person("otto"), "others", "olivia", "owner")
    moved = await identity.update_namespace(person("olivia"), "devns", team="others")
    assert moved.team == "others"
    (event,) = [e for e in await world.events() if e["type"] == "namespace.change_team"]
    assert (event["actor"], event["namespace"], event["team"], event["details"]) == (
        "olivia", "devns", "others", {"to": "others"})


# --- Portus' [permissions] switches ----------------------------------------------------------

SWITCHED: dict[str, Operation] = {
    "create_team": lambda i, a: i.create_team(a, "fresh", owner=a.name or ""),
    "manage_team": lambda i, a: i.set_member(a, "devs", "otto", "viewer"),
    "create_namespace": lambda i, a: i.create_namespace(a, "devtools", team="devs"),
    "manage_namespace": lambda i, a: i.update_namespace(a, "devns", description="ours"),
    "change_visibility": lambda i, a: i.update_namespace(a, "devns", visibility="public"),
}


@pytest.mark.parametrize("switch", list(SWITCHED))
async def test_each_permission_switch_leaves_the_right_to_admins(
    world: World, switch: str
) -> None:
    identity = world.identity(Permissions(**{switch: False}))
    with pytest.raises(Forbidden):
        await SWITCHED[switch](identity, person("olivia"))
    assert await world.events() == []
    await SWITCHED[switch](identity, ADMIN)


async def test_without_change_visibility_owners_still_change_descriptions(world: World) -> None:
    identity = world.identity(Permissions(change_visibility=False))
    updated = await identity.update_namespace(person("olivia"), "devns", description="ours")
    assert (updated.description, updated.visibility) == ("ours", "private")


# --- team membership -------------------------------------------------------------------------


async def test_the_last_owner_cannot_leave_or_be_demoted(world: World) -> None:
    identity = world.identity()
    with pytest.raises(Conflict, match="last owner"):
        await identity.remove_member(ADMIN, "devs", "olivia")
    with pytest.raises(Conflict, match="last owner"):
        await identity.set_member(person("olivia"), "devs", "olivia", "contributor")
    await identity.set_member(ADMIN, "devs", "carl", "owner")
    await identity.set_member(person("olivia"), "devs", "olivia", "viewer")
    await identity.remove_member(person("carl"), "devs", "olivia")
    members = {m.user: m.role for m in await identity.members(ADMIN, "devs")}
    assert members == {"carl": "owner", "vera": "viewer", "robot": "viewer"}


async def test_membership_changes_are_audited_once_each(world: World) -> None:
    identity = world.identity()
    await identity.set_member(person("olivia"), "devs", "otto", "viewer")
    await identity.set_member(person("olivia"), "devs", "otto", "viewer")  # no change
    await identity.set_member(person("olivia"), "devs", "otto", "contributor")
    await identity.remove_member(person("olivia"), "devs", "otto")
    assert [(e["type"], e["actor"], e["subject"], e["team"], e["details"])
            for e in await world.events()] == [
        ("team.add_member", "olivia", "otto", "devs", {"role": "viewer"}),
        ("team.change_member_role", "olivia", "otto", "devs",
         {"role": "contributor", "previous": "viewer"}),
        ("team.remove_member", "olivia", "otto", "devs", {}),
    ]


async def test_removing_someone_who_is_not_a_member_is_not_found(world: World) -> None:
    with pytest.raises(NotFound):
        await world.identity().remove_member(ADMIN, "devs", "otto")
    with pytest.raises(NotFound):
        await world.identity().set_member(ADMIN, "nope", "otto", "viewer")


@pytest.mark.parametrize("role", ["admin", "Owner", "", "pusher"])
async def test_roles_are_checked(world: World, role: str) -> None:
    with pytest.raises(Invalid, match="role must be one of"):
        await world.identity().set_member(ADMIN, "devs", "otto", role)  # type: ignore[arg-type]


# --- names -----------------------------------------------------------------------------------

BAD_NAMES = ["", "Alice", "a b", "-x", "x-", "a..b", "a/b", "é", "x" * 65, "a:b"]
Create = Callable[[IdentityService, str], Awaitable[object]]
CREATES: dict[str, Create] = {
    "user": lambda i, name: i.create_user(ADMIN, name, email="", password=PASSWORD),
    "team": lambda i, name: i.create_team(ADMIN, name, owner="otto"),
    "namespace": lambda i, name: i.create_namespace(ADMIN, name, team="devs"),
    "bot": lambda i, name: i.create_bot(ADMIN, name, team="devs", role="viewer"),
}


@pytest.mark.parametrize("what", list(CREATES))
@pytest.mark.parametrize("name", BAD_NAMES)
async def test_names_are_docker_namespace_components(world: World, what: str, name: str) -> None:
    with pytest.raises(Invalid) as raised:
        await CREATES[what](world.identity(), name)
    assert raised.value.code == f"invalid_{what}_name"
    assert await world.events() == []
    assert len(await world.store.list_users(after=None, limit=100)) == len(PEOPLE) + 1


@pytest.mark.parametrize("what", list(CREATES))
async def test_names_are_shared_between_accounts_and_namespaces(world: World, what: str) -> None:
    # "devns" is a namespace, "otto" an account with its personal namespace, "devs" a team.
    taken = {"user": "devns", "team": "devs", "namespace": "otto", "bot": "devns"}[what]
    with pytest.raises(Conflict):
        await CREATES[what](world.identity(), taken)
    assert await world.events() == []


@pytest.mark.parametrize("name", ["a", "a.b", "a_b", "a__b", "a---b", "x" * 64, "0"])
async def test_good_names(world: World, name: str) -> None:
    user = await world.identity().create_user(ADMIN, name, email="", password=PASSWORD)
    assert (user.name, user.email, user.kind) == (name, f"{name}@localhost", "user")


# --- accounts --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("password", "code"),
    [("short", "weak_password"), ("", "weak_password"), ("x" * 1025, "invalid_password")],
)
async def test_passwords_are_checked(world: World, password: str, code: str) -> None:
    with pytest.raises(Invalid) as raised:
        await world.identity().create_user(ADMIN, "newbie", email="", password=password)
    assert raised.value.code == code
    assert await world.store.get_user("newbie") is None


@pytest.mark.parametrize("email", ["no-at-sign", "@example.com", "a@", "a b@example.com",
                                   "a@exam\nple.com", "a@" + "x" * 253])
async def test_emails_are_checked(world: World, email: str) -> None:
    with pytest.raises(Invalid, match="email"):
        await world.identity().create_user(ADMIN, "newbie", email=email, password=PASSWORD)
    with pytest.raises(Invalid, match="email"):
        await world.identity().update_user(person("carl"), "carl", email=email)
    found = await world.store.get_user("carl")
    assert found is not None
    assert found[0].email == "carl@localhost"


async def test_an_account_update_is_checked_whole_before_anything_changes(world: World) -> None:
    identity = world.identity()
    with pytest.raises(Invalid):
        await identity.update_user(ADMIN, "vera", enabled=False, admin=True, password="short")
    with pytest.raises(Forbidden):  # carl may change his email, not his admin flag
        await identity.update_user(person("carl"), "carl", email="c@example.com", admin=True)
    with pytest.raises(Forbidden):
        await identity.update_user(ADMIN, "admin", email="root@example.com", admin=False)
    for name in ("vera", "carl"):
        found = await world.store.get_user(name)
        assert found is not None
        assert (found[0].enabled, found[0].admin, found[0].email) == (
            True, False, f"{name}@localhost")
    assert await world.events() == []


async def test_an_account_update_makes_and_audits_only_real_changes(world: World) -> None:
    identity = world.identity()
    user = await identity.update_user(ADMIN, "vera", enabled=False, admin=True,
                                      email="vera@example.com")
    assert (user.enabled, user.admin, user.email) == (False, True, "vera@example.com")
    await identity.update_user(ADMIN, "vera", enabled=False, admin=True)  # nothing new
    assert [(e["type"], e["actor"], e["subject"]) for e in await world.events()] == [
        ("user.change_email", "admin", "vera"), ("user.change_admin", "admin", "vera"),
        ("user.disable", "admin", "vera")]


async def test_administrators_cannot_lock_themselves_out(world: World) -> None:
    identity = world.identity()
    with pytest.raises(Forbidden, match="disable your own"):
        await identity.set_enabled(ADMIN, "admin", enabled=False)
    with pytest.raises(Forbidden, match="own admin"):
        await identity.set_admin(ADMIN, "admin", admin=False)


async def test_accounts_list_by_name_and_by_kind(world: World) -> None:
    identity = world.identity()
    first = await identity.users(ADMIN, after=None, limit=2)
    rest = await identity.users(ADMIN, after=first[-1].name, limit=10)
    assert [u.name for u in first + rest] == ["admin", "carl", "olivia", "otto", "robot",
                                              "vera"]
    assert [u.name for u in await identity.users(ADMIN, kind="bot", after=None, limit=1)] == [
        "robot"]
    assert await identity.users(ADMIN, kind="bot", after="robot", limit=5) == []


async def test_a_profile_lists_teams_and_own_namespaces(world: World) -> None:
    profile = await world.identity().profile(person("olivia"))
    assert profile.user.name == "olivia"
    assert profile.teams == {"devs": "owner"}
    assert [ns.name for ns in profile.namespaces] == ["devns", "olivia"]
    robot = await world.identity().profile(ROBOT)
    assert (robot.user.kind, robot.teams) == ("bot", {"devs": "viewer"})
    assert [ns.name for ns in robot.namespaces] == ["devns"]  # its team's; none of its own


async def test_creating_an_account_audits_without_the_password(world: World) -> None:
    await world.identity().create_user(ADMIN, "newbie", email="n@example.com",
                                       password=PASSWORD, admin=True)
    (event,) = await world.events()
    assert (event["type"], event["actor"], event["subject"], event["namespace"]) == (
        "user.create", "admin", "newbie", "newbie")
    assert event["details"] == {"admin": True, "adopted_repositories": 0}
    assert PASSWORD not in json.dumps(event)


async def test_an_account_over_repositories_pushed_before_says_it_adopted_them(
    world: World
) -> None:
    """Its personal namespace takes them over, as a namespace an admin creates would."""
    world.catalog.repositories["relic"] = 2
    await world.identity().create_user(ADMIN, "relic", email="", password=PASSWORD)
    (event,) = await world.events()
    assert event["details"] == {"admin": False, "adopted_repositories": 2}


# --- bots ------------------------------------------------------------------------------------


async def test_a_bot_is_a_team_member_without_password_or_namespace(world: World) -> None:
    identity = world.identity()
    bot = await identity.create_bot(person("olivia"), "deployer", team="devs",
                                    role="contributor")
    assert (bot.kind, bot.admin, bot.enabled) == ("bot", False, True)
    found = await world.store.get_user("deployer")
    assert found is not None
    assert found[1] is None  # no password hash
    assert await world.store.namespaces(None, ["deployer"]) == []
    assert (await world.store.roles_of("deployer")) == {"devs": "contributor"}
    with pytest.raises(Invalid, match="application tokens only"):
        await identity.change_password(ADMIN, "deployer", PASSWORD)
    with pytest.raises(Invalid, match="application tokens only"):
        await identity.update_user(ADMIN, "deployer", password=PASSWORD)
    (event,) = await world.events()
    assert (event["type"], event["actor"], event["subject"], event["team"], event["details"]) \
        == ("bot.create", "olivia", "deployer", "devs", {"role": "contributor"})


async def test_bots_create_no_teams(world: World) -> None:
    with pytest.raises(Forbidden):
        await world.identity().create_team(ROBOT, "botteam", owner="robot")


async def test_a_bot_with_a_bad_role_or_team_is_not_created(world: World) -> None:
    identity = world.identity()
    with pytest.raises(Invalid):
        await identity.create_bot(ADMIN, "helper", team="devs", role="boss")  # type: ignore[arg-type]
    with pytest.raises(NotFound):
        await identity.create_bot(ADMIN, "helper", team="nope", role="viewer")
    assert await world.store.get_user("helper") is None


async def test_team_owners_manage_their_bots_tokens(world: World) -> None:
    identity = world.identity()
    owner = person("olivia")
    token, secret = await identity.create_token(owner, "robot", "deploy")
    assert [t.label for t in await identity.tokens(owner, "robot")] == ["deploy"]
    assert [t.label for t in await identity.tokens(ROBOT, "robot")] == ["deploy"]
    for outsider in (person("carl"), person("otto")):
        with pytest.raises(NotFound):
            await identity.revoke_token(outsider, "robot", "deploy")
    revoked = await identity.revoke_token(owner, "robot", "deploy")
    assert revoked.revoked
    assert token.user == "robot"
    assert secret not in json.dumps(await world.events())


async def test_a_bot_belongs_to_the_team_it_was_created_in(world: World) -> None:
    identity = world.identity()
    bot = await identity.create_bot(person("olivia"), "deployer", team="devs", role="viewer")
    assert bot.owner_team == "devs"
    assert (await identity.get_user(ADMIN, "deployer")).owner_team == "devs"


async def test_a_team_owner_cannot_capture_another_teams_bot(world: World) -> None:
    """Issue 15 item 1: otto owns a team of his own; robot belongs to devs. Adding robot to
    his team, then minting a token for it, would give otto everything robot may do."""
    identity = world.identity()
    await identity.create_team(person("otto"), "ottos", owner="otto")
    before = await world.events()
    otto = person("otto")
    for attempt in (lambda: identity.set_member(otto, "ottos", "robot", "viewer"),
                    lambda: identity.create_token(otto, "robot", "mine"),
                    lambda: identity.tokens(otto, "robot"),
                    lambda: identity.revoke_token(otto, "robot", "tests")):
        with pytest.raises(NotFound) as raised:  # as if robot did not exist
            await attempt()
        assert (raised.value.code, str(raised.value)) == (
            "user_not_found", "no account named 'robot'")
    assert await world.store.roles_of("robot") == {"devs": "viewer"}
    assert await world.store.list_app_tokens("robot") == []
    assert await world.events() == before


async def test_a_bot_joins_another_team_only_by_its_owners_act(world: World) -> None:
    identity = world.identity()
    olivia, otto = person("olivia"), person("otto")
    await identity.create_team(otto, "ottos", owner="otto")
    with pytest.raises(NotFound):  # olivia owns the bot, and is not even in otto's team
        await identity.set_member(olivia, "ottos", "robot", "viewer")
    await identity.set_member(otto, "ottos", "olivia", "viewer")
    with pytest.raises(Forbidden):  # now she sees the team, but does not own it
        await identity.set_member(olivia, "ottos", "robot", "viewer")
    await identity.set_member(otto, "ottos", "olivia", "owner")
    await identity.set_member(olivia, "ottos", "robot", "contributor")  # owner of both
    assert await world.store.roles_of("robot") == {"devs": "viewer", "ottos": "contributor"}
    # Being a member of otto's team gives otto no hold on the bot: not its role there, nor
    # its tokens; but he may take it out of his team.
    with pytest.raises(NotFound):
        await identity.set_member(otto, "ottos", "robot", "owner")
    with pytest.raises(NotFound):
        await identity.create_token(otto, "robot", "mine")
    await identity.remove_member(otto, "ottos", "robot")
    # Its owner may take it out of a team it does not manage, too.
    await identity.set_member(olivia, "ottos", "robot", "viewer")
    await identity.set_member(otto, "ottos", "olivia", "viewer")
    await identity.remove_member(olivia, "ottos", "robot")
    assert await world.store.roles_of("robot") == {"devs": "viewer"}


async def test_bots_without_an_owner_team_belong_to_the_admins(world: World) -> None:
    # Every bot made before owners were recorded (the migration leaves owner_team NULL).
    await world.store.create_user(User("legacy", "legacy@bots.local", admin=False,
                                       enabled=True, kind="bot"), None)
    await world.store.set_member("devs", "legacy", "viewer")
    identity = world.identity()
    with pytest.raises(NotFound):
        await identity.create_token(person("olivia"), "legacy", "ci")
    with pytest.raises(NotFound):
        await identity.set_member(person("olivia"), "devs", "legacy", "contributor")
    await identity.create_token(ADMIN, "legacy", "ci")
    await identity.set_member(ADMIN, "devs", "legacy", "contributor")


async def test_a_bot_manages_no_bot_even_as_a_team_owner(world: World) -> None:
    identity = world.identity()
    await identity.set_member(ADMIN, "devs", "robot", "owner")
    await identity.create_bot(ADMIN, "sibling", team="devs", role="viewer")
    with pytest.raises(NotFound):
        await identity.create_token(ROBOT, "sibling", "stolen")


# --- tokens ----------------------------------------------------------------------------------


async def test_a_token_secret_is_shown_once_and_stored_as_a_hash(
    world: World, tmp_path: Path
) -> None:
    token, secret = await world.identity().create_token(person("carl"), "carl", "laptop")
    assert secret.startswith("dyat_")
    assert len(secret) - len("dyat_") >= 43  # 256 bits, base64url
    (listed,) = await world.identity().tokens(person("carl"), "carl")
    assert (listed.label, listed.revoked, listed.expires_at, listed.last_used_at) == (
        "laptop", False, None, None)
    assert token.user == "carl"
    for path in tmp_path.glob("auth.db*"):  # the database, its WAL
        assert secret.encode() not in path.read_bytes()
    (event,) = await world.events()
    assert (event["type"], event["subject"], event["details"]) == (
        "token.create", "carl", {"label": "laptop"})


async def test_a_label_names_one_live_token(world: World) -> None:
    identity = world.identity()
    await identity.create_token(ADMIN, "carl", "ci")
    with pytest.raises(Conflict):
        await identity.create_token(ADMIN, "carl", "ci")
    await identity.revoke_token(ADMIN, "carl", "ci")
    with pytest.raises(NotFound):
        await identity.revoke_token(ADMIN, "carl", "ci")
    await identity.create_token(ADMIN, "carl", "ci")
    assert [(t.label, t.revoked) for t in await identity.tokens(ADMIN, "carl")] == [
        ("ci", True), ("ci", False)]


@pytest.mark.parametrize(
    ("label", "expires_in", "code"),
    [("", None, "invalid_label"), ("x" * 65, None, "invalid_label"),
     ("tab\there", None, "invalid_label"), ("ok", timedelta(seconds=-1), "invalid_expiry")],
)
async def test_token_labels_and_expiry_are_checked(
    world: World, label: str, expires_in: timedelta | None, code: str
) -> None:
    expires_at = None if expires_in is None else datetime.now(UTC) + expires_in
    with pytest.raises(DyError) as raised:
        await world.identity().create_token(ADMIN, "carl", label, expires_at=expires_at)
    assert raised.value.code == code
    assert await world.identity().tokens(ADMIN, "carl") == []


async def test_tokens_of_someone_unknown_are_not_found(world: World) -> None:
    with pytest.raises(NotFound):
        await world.identity().create_token(ADMIN, "nobody", "ci")


# --- namespaces over repositories pushed before them (issue 15) -----------------------------


async def test_only_admins_create_a_namespace_over_existing_repositories(world: World) -> None:
    world.catalog.repositories["devtools"] = 3  # pushed before namespaces had to exist
    with pytest.raises(Forbidden) as refused:
        await world.identity().create_namespace(person("olivia"), "devtools", team="devs")
    assert refused.value.code == "namespace_has_repositories"
    assert await world.store.namespaces(None, ["devtools"]) == []

    await world.identity().create_namespace(ADMIN, "devtools", team="devs")
    (event,) = [e for e in await world.events() if e["type"] == "namespace.create"]
    assert (event["actor"], event["namespace"], event["team"]) == ("admin", "devtools", "devs")
    assert event["details"]["adopted_repositories"] == 3


async def test_a_new_namespace_records_that_it_adopted_nothing(world: World) -> None:
    await world.identity().create_namespace(person("olivia"), "devtools", team="devs")
    (event,) = [e for e in await world.events() if e["type"] == "namespace.create"]
    assert event["details"] == {"visibility": "private", "adopted_repositories": 0}


ON_PUSH = Policy(create_namespace_on_push=True)


async def test_an_admins_push_creates_a_namespace_no_team_owns(world: World) -> None:
    world.catalog.repositories["legacy"] = 2
    created = await world.identity().create_namespace_for_push(ADMIN, "legacy", ON_PUSH)
    assert (created.kind, created.team, created.visibility) == ("team", None, "private")
    (event,) = [e for e in await world.events() if e["type"] == "namespace.create"]
    assert (event["actor"], event["team"], event["details"]) == (
        "admin", None, {"visibility": "private", "on_push": True, "adopted_repositories": 2})
    # Only admins see or manage it until one of them hands it to a team.
    with pytest.raises(NotFound):
        await world.identity().get_namespace(person("olivia"), "legacy")
    await world.identity().update_namespace(ADMIN, "legacy", team="devs")
    assert (await world.identity().get_namespace(person("olivia"), "legacy")).team == "devs"


async def test_a_team_owners_push_creates_only_their_teams_namespace(world: World) -> None:
    identity = world.identity()
    await identity.create_team(person("carl"), "carls", owner="carl")
    created = await identity.create_namespace_for_push(person("carl"), "carls", ON_PUSH)
    assert created.team == "carls"
    for who, name in (("carl", "devs"), ("olivia", "other"), ("vera", "carls2")):
        with pytest.raises(Forbidden):  # a contributor of devs; no team "other"; no team
            await identity.create_namespace_for_push(person(who), name, ON_PUSH)
    with pytest.raises(Forbidden):  # switched off
        await identity.create_namespace_for_push(person("olivia"), "devs", Policy())
    with pytest.raises(Forbidden):  # [permissions] create_namespace = false
        await world.identity(Permissions(create_namespace=False)).create_namespace_for_push(
            person("olivia"), "devs", ON_PUSH)
    world.catalog.repositories["devs"] = 1
    with pytest.raises(Forbidden) as refused:
        await identity.create_namespace_for_push(person("olivia"), "devs", ON_PUSH)
    assert refused.value.code == "namespace_has_repositories"
    assert [ns.name for ns, _ in await world.store.namespaces(None, ["devs", "other"])] == []
