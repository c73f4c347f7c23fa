"""Directory accounts: the sync plan (pure, table-tested), and LDAP users through Dockyard's own
token endpoint and API against a real slapd — first login, group → team sync adding and
removing, admin group, a directory that is down, disabled and removed users."""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import re
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest

from services.auth.access import IDENTITY
from services.auth.directory import (
    Identity,
    MembershipChange,
    desired_memberships,
    ldap_rules,
    may_claim,
    plan_memberships,
)
from services.auth.directory_app import DIRECTORY
from services.auth.ldap import DirectoryUnavailable, normalize_dn
from services.auth.models import User
from services.auth.policy import Principal, Role
from services.auth.sessions import COOKIE, SESSIONS
from services.core.config import GroupMapping, load_config
from services.core.web import JOBS
from tests.support.dockyard import ADMIN_PASSWORD, Dockyard, initialised, running_dockyard
from tests.support.slapd import BASE_DN, SlapdProcess, require_slapd
from tests.support.waiting import eventually

ADMIN = Principal("admin", "user", admin=True)
DEVELOPERS = f"cn=developers,ou=groups,{BASE_DN}"
ALICE_LDIF = (f"dn: uid=alice,ou=people,{BASE_DN}\nobjectClass: inetOrgPerson\nuid: alice\n"
              "cn: Alice\nsn: L\nmail: alice@dockyard.test\nuserPassword: alice-password\n")
# Moves alice's entry (keeping its entryUUID) under another parent.
MOVE = "dn: {dn}\nchangetype: moddn\nnewrdn: uid=alice\ndeleteoldrdn: 1\nnewsuperior: {to}\n"


# who claims a pre-created account -------------------------------------------------------

@pytest.mark.parametrize(("identity", "claims"), [
    (Identity("ldap", "entryUUID:1", "pia", "", frozenset(), names_assigned=True), True),
    (Identity("oidc:corp", "s", "pia", "pia@corp.test", frozenset(), email_verified=True),
     True),
    (Identity("oidc:corp", "s", "pia", "PIA@corp.test", frozenset(), email_verified=True),
     True),
    (Identity("oidc:corp", "s", "pia", "pia@corp.test", frozenset()), False),
    (Identity("oidc:corp", "s", "pia", "", frozenset(), email_verified=True), False),
    (Identity("oidc:corp", "s", "pia", "eve@corp.test", frozenset(), email_verified=True),
     False),
])
def test_may_claim(identity: Identity, claims: bool) -> None:
    account = User("pia", "pia@corp.test", admin=False, enabled=True)
    assert may_claim(account, identity) is claims


# the plan --------------------------------------------------------------------------------

def test_desired_memberships_take_the_highest_role() -> None:
    mappings = [GroupMapping(group="a", team="web", role="viewer"),
                GroupMapping(group="b", team="web", role="owner"),
                GroupMapping(group="c", team="ops", role="contributor")]
    assert desired_memberships({"a", "b"}, mappings) == {"web": "owner"}
    assert desired_memberships({"a", "z"}, mappings) == {"web": "viewer"}
    assert desired_memberships(set(), mappings) == {}


V: Role = "viewer"
C: Role = "contributor"


@pytest.mark.parametrize(("desired", "current", "managed", "manual", "changes", "after"), [
    # a new mapped group adds the member, and the sync owns that membership
    ({"web": C}, {}, {}, False, [MembershipChange("add", "web", C)], {"web": C}),
    # a role the sync gave follows the directory
    ({"web": V}, {"web": C}, {"web": C}, False,
     [MembershipChange("change", "web", V, C)], {"web": V}),
    # a membership added by hand is left alone, and never becomes the sync's
    ({"web": V}, {"web": C}, {}, False, [], {}),
    # ... unless the sync is told to manage hand-made memberships too
    ({"web": V}, {"web": C}, {}, True, [MembershipChange("change", "web", V, C)], {"web": V}),
    # leaving the group removes what the sync added
    ({}, {"web": C}, {"web": C}, False, [MembershipChange("remove", "web", None, C)], {}),
    # but not a hand-made membership in a mapped team
    ({}, {"web": C}, {}, False, [], {}),
    ({}, {"web": C}, {}, True, [MembershipChange("remove", "web", None, C)], {}),
    # removed by hand while still in the group: added again (the directory is the truth)
    ({"web": C}, {}, {"web": C}, False, [MembershipChange("add", "web", C)], {"web": C}),
    # removed by hand after leaving the group: forgotten
    ({}, {}, {"web": C}, False, [], {}),
    # unmapped teams are never touched
    ({}, {"other": C}, {}, True, [], {}),
])
def test_plan_memberships(
    desired: dict[str, Role], current: dict[str, Role], managed: dict[str, Role],
    manual: bool, changes: list[MembershipChange], after: dict[str, Role],
) -> None:
    planned, now_managed = plan_memberships(desired, current, managed,
                                            mapped_teams={"web"}, manage_manual=manual)
    assert planned == changes
    assert now_managed == after


# through Dockyard ------------------------------------------------------------------------

@pytest.fixture
def slapd(tmp_path: Path) -> Iterator[SlapdProcess]:
    require_slapd()
    with SlapdProcess(tmp_path / "slapd") as server:
        yield server


@pytest.fixture
async def dockyard(tmp_path: Path, slapd: SlapdProcess) -> AsyncIterator[Dockyard]:
    data = tmp_path / "data"
    await asyncio.to_thread(initialised, data, "http://127.0.0.1:9")  # it runs its own loop
    with (data / "dockyard.toml").open("a") as toml:
        toml.write(slapd.toml(f"""admin_group = "cn=registry-admins,ou=groups,{BASE_DN}"
timeout_seconds = 2
connect_timeout_seconds = 1
""") + f"""
[[ldap.groups]]
group = "{DEVELOPERS}"
team = "web"
role = "contributor"

[[ldap.groups]]
group = "cn=operators,ou=groups,{BASE_DN}"
team = "web"
role = "owner"
""")
    config = load_config(data / "dockyard.toml",
                         env={"DOCKYARD_AUTH_CREDENTIAL_CACHE_SECONDS": "0"})
    async with running_dockyard(config) as running:
        await running.app[IDENTITY].create_team(ADMIN, "web", owner="admin")
        yield running


def basic(user: str, password: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


async def token(dockyard: Dockyard, user: str, password: str) -> httpx.Response:
    return await dockyard.client.get(
        "/v2/token", params={"service": dockyard.config.auth.service,
                             "scope": f"repository:{user}/app:push,pull"},
        headers=basic(user, password))


async def roles(dockyard: Dockyard) -> dict[str, str]:
    members = await dockyard.app[IDENTITY].members(ADMIN, "web")
    return {m.user: m.role for m in members}


async def test_first_login_creates_the_account_and_syncs_teams(dockyard: Dockyard) -> None:
    response = await token(dockyard, "alice", "alice-password")
    assert response.status_code == 200, response.text
    me = await dockyard.client.get("/api/v1/me", headers=basic("alice", "alice-password"))
    assert me.status_code == 200  # API Basic auth with the directory password
    alice = await dockyard.app[IDENTITY].store.get_user("alice")
    assert alice is not None
    assert alice[0].email == "alice@dockyard.test"
    assert (await roles(dockyard))["alice"] == "contributor"
    # bob is also in operators, a groupOfUniqueNames, which slapd's memberOf overlay (set up
    # for groupOfNames) does not report: with group_membership = memberOf only developers counts
    assert (await token(dockyard, "bob", "bob-password")).status_code == 200
    assert (await roles(dockyard))["bob"] == "contributor"
    # the admin group makes carol an admin
    assert (await token(dockyard, "carol", "carol-password")).status_code == 200
    found = await dockyard.app[IDENTITY].store.get_user("carol")
    assert found is not None
    assert found[0].admin
    assert found[1] is None  # no Dockyard password is stored for a directory account


async def test_people_who_never_signed_in_are_locked_out_too(dockyard: Dockyard) -> None:
    # no Dockyard account yet for alice: her failures are counted all the same
    for _ in range(dockyard.config.auth.max_failed_logins):
        assert (await token(dockyard, "alice", "wrong")).status_code == 401
    locked = await token(dockyard, "alice", "alice-password")
    assert (locked.status_code, locked.json()["error"]["code"]) == (401, "account_locked")
    assert await dockyard.app[IDENTITY].store.get_user("alice") is None


async def portal_sign_in(dockyard: Dockyard, user: str, password: str) -> str:
    """Sign in through the portal's form; returns the session's sign-in method."""
    async with httpx.AsyncClient(base_url=dockyard.url, timeout=10) as browser:
        form = (await browser.get("/login")).text
        csrf = re.search(r'name="csrf" value="([^"]+)"', form)
        assert csrf is not None
        done = await browser.post("/login", data={"username": user, "password": password,
                                                  "csrf": csrf[1], "next": "/"})
        assert done.status_code == 303, done.text
        signed_in = await dockyard.app[SESSIONS].resume(done.cookies[COOKIE])
    assert signed_in is not None
    return signed_in.session.method


async def test_portal_sign_ins_say_who_verified_the_password(dockyard: Dockyard) -> None:
    assert await portal_sign_in(dockyard, "alice", "alice-password") == "ldap"
    assert await portal_sign_in(dockyard, "admin", ADMIN_PASSWORD) == "password"


async def test_parallel_first_logins_make_one_account(dockyard: Dockyard) -> None:
    answers = await asyncio.gather(*(token(dockyard, "alice", "alice-password")
                                     for _ in range(8)))
    assert [answer.status_code for answer in answers] == [200] * 8
    # The same identity applied concurrently (as several replicas' first requests would be
    # within one process): one account, no conflict.
    identity = Identity("ldap", "uid=dana,dc=x", "dana", "dana@x.test",
                        frozenset({normalize_dn(DEVELOPERS)}))
    rules = ldap_rules([GroupMapping(group=DEVELOPERS, team="web", role="viewer")], "",
                       manage_manual_members=False)
    users = await asyncio.gather(*(dockyard.app[DIRECTORY].directory.apply(identity, rules)
                                   for _ in range(8)))
    assert {user.name for user in users} == {"dana"}
    assert (await roles(dockyard))["dana"] == "viewer"


async def test_wrong_password_and_injection_are_401(dockyard: Dockyard) -> None:
    assert (await token(dockyard, "alice", "bob-password")).status_code == 401
    assert (await token(dockyard, "*)(uid=*", "alice-password")).status_code == 401
    assert (await token(dockyard, "*", "alice-password")).status_code == 401
    assert (await dockyard.app[IDENTITY].store.get_user("*")) is None


async def test_sync_adds_and_removes_but_keeps_hand_made_members(
    dockyard: Dockyard, slapd: SlapdProcess
) -> None:
    assert (await token(dockyard, "alice", "alice-password")).status_code == 200
    assert (await token(dockyard, "carol", "carol-password")).status_code == 200
    identity = dockyard.app[IDENTITY]
    # carol is added to web by hand; the sync must never remove her
    await identity.set_member(ADMIN, "web", "carol", "viewer")
    slapd.modify(f"dn: {DEVELOPERS}\nchangetype: modify\ndelete: member\n"
                 f"member: uid=alice,ou=people,{BASE_DN}\n-\nadd: member\n"
                 f"member: uid=carol,ou=people,{BASE_DN}\n")
    ldap = dockyard.app[DIRECTORY].ldap
    assert ldap is not None
    assert await ldap.sync_all() == 2
    members = await roles(dockyard)
    assert "alice" not in members  # left the group: removed
    assert members["carol"] == "viewer"  # hand-made membership: untouched
    # every change of the sync lands in the activity log, with the directory as its actor
    async def removals() -> list[dict[str, object]]:
        response = await dockyard.client.get("/api/v1/activities",
                                             params={"type": "team.remove_member"})
        assert response.status_code == 200, response.text
        return list(response.json()["items"])

    found = await eventually(removals, lambda items: any(
        item.get("actor") == "ldap" for item in items), what="the sync's removal activity")
    assert found


async def test_ldap_down_is_503_while_local_admin_works(
    dockyard: Dockyard, slapd: SlapdProcess
) -> None:
    assert (await token(dockyard, "alice", "alice-password")).status_code == 200
    slapd.stop()
    down = await token(dockyard, "alice", "alice-password")
    assert down.status_code == 503
    assert down.json()["error"]["code"] == "directory_unavailable"
    assert (await dockyard.client.get("/api/v1/me")).status_code == 200  # the local admin
    # A sync that cannot reach the directory stops, and suspends nobody.
    ldap = dockyard.app[DIRECTORY].ldap
    assert ldap is not None
    with pytest.raises(DirectoryUnavailable):
        await ldap.sync_all()
    found = await dockyard.app[IDENTITY].store.get_user("alice")
    assert found is not None
    assert found[0].enabled
    health = await dockyard.client.get("/api/v1/health")
    assert health.json()["checks"]["ldap"]["ok"] is False


async def test_disabled_in_dockyard_stays_disabled(dockyard: Dockyard) -> None:
    assert (await token(dockyard, "alice", "alice-password")).status_code == 200
    await dockyard.app[IDENTITY].set_enabled(ADMIN, "alice", enabled=False)
    refused = await token(dockyard, "alice", "alice-password")
    assert refused.status_code == 401
    assert refused.json()["error"]["code"] == "account_disabled"
    ldap = dockyard.app[DIRECTORY].ldap
    assert ldap is not None
    await ldap.sync_all()
    found = await dockyard.app[IDENTITY].store.get_user("alice")
    assert found is not None
    assert not found[0].enabled


async def test_removed_from_directory_loses_access_and_tokens(
    dockyard: Dockyard, slapd: SlapdProcess
) -> None:
    assert (await token(dockyard, "alice", "alice-password")).status_code == 200
    _, secret = await dockyard.app[IDENTITY].create_token(
        Principal("alice", "user"), "alice", "ci")
    assert (await token(dockyard, "alice", secret)).status_code == 200
    slapd.modify(f"dn: uid=alice,ou=people,{BASE_DN}\nchangetype: delete\n")
    ldap = dockyard.app[DIRECTORY].ldap
    assert ldap is not None
    await ldap.sync_all()
    assert (await token(dockyard, "alice", secret)).status_code == 401
    assert (await token(dockyard, "alice", "alice-password")).status_code == 401
    # A new entry under the same uid is someone else (another entryUUID): it does not get the
    # old account back, nor its tokens.
    slapd.add(ALICE_LDIF)
    refused = await token(dockyard, "alice", "alice-password")
    assert refused.status_code == 403, refused.text
    assert refused.json()["error"]["code"] == "account_conflict"
    await ldap.sync_all()
    assert (await token(dockyard, "alice", secret)).status_code == 401
    found = await dockyard.app[IDENTITY].store.get_user("alice")
    assert found is not None
    assert not found[0].enabled


async def test_a_reused_uid_between_two_syncs_does_not_inherit_the_account(
    dockyard: Dockyard, slapd: SlapdProcess
) -> None:
    """Issue 15: the entry is deleted and another made under the same uid before any sync
    or sign-in noticed; the account was linked by DN, which is the same."""
    assert (await token(dockyard, "alice", "alice-password")).status_code == 200
    link = await dockyard.app[DIRECTORY].directory.links.account("alice")
    assert link is not None
    assert link.external_id.startswith("entryUUID:")
    _, secret = await dockyard.app[IDENTITY].create_token(
        Principal("alice", "user"), "alice", "ci")
    slapd.modify(f"dn: uid=alice,ou=people,{BASE_DN}\nchangetype: delete\n")
    slapd.add(ALICE_LDIF.replace("alice-password", "new-alice-password"))
    ldap = dockyard.app[DIRECTORY].ldap
    assert ldap is not None
    await ldap.sync_all()
    assert (await token(dockyard, "alice", secret)).status_code == 401
    assert (await token(dockyard, "alice", "new-alice-password")).status_code == 403


async def test_a_link_by_dn_from_before_moves_to_the_entry_uuid(dockyard: Dockyard) -> None:
    assert (await token(dockyard, "alice", "alice-password")).status_code == 200
    links = dockyard.app[DIRECTORY].directory.links
    link = await links.account("alice")
    assert link is not None
    await links.link(dataclasses.replace(
        link, external_id=normalize_dn(f"uid=alice,ou=people,{BASE_DN}")))
    assert (await token(dockyard, "alice", "alice-password")).status_code == 200
    upgraded = await links.account("alice")
    assert upgraded is not None
    assert upgraded.external_id == link.external_id


async def test_an_entry_moved_away_and_back_is_the_same_person(
    dockyard: Dockyard, slapd: SlapdProcess
) -> None:
    assert (await token(dockyard, "alice", "alice-password")).status_code == 200
    ldap = dockyard.app[DIRECTORY].ldap
    assert ldap is not None
    slapd.modify(MOVE.format(dn=f"uid=alice,ou=people,{BASE_DN}", to=f"ou=groups,{BASE_DN}"))
    await ldap.sync_all()  # out of user_base: suspended
    assert (await token(dockyard, "alice", "alice-password")).status_code == 401
    slapd.modify(MOVE.format(dn=f"uid=alice,ou=groups,{BASE_DN}", to=f"ou=people,{BASE_DN}"))
    assert (await token(dockyard, "alice", "alice-password")).status_code == 200


async def test_disabled_by_an_admin_stays_disabled_when_back_in_the_directory(
    dockyard: Dockyard, slapd: SlapdProcess
) -> None:
    assert (await token(dockyard, "alice", "alice-password")).status_code == 200
    identity = dockyard.app[IDENTITY]
    await identity.set_enabled(ADMIN, "alice", enabled=False)
    slapd.modify(MOVE.format(dn=f"uid=alice,ou=people,{BASE_DN}", to=f"ou=groups,{BASE_DN}"))
    ldap = dockyard.app[DIRECTORY].ldap
    assert ldap is not None
    await ldap.sync_all()
    slapd.modify(MOVE.format(dn=f"uid=alice,ou=groups,{BASE_DN}", to=f"ou=people,{BASE_DN}"))
    await ldap.sync_all()
    assert (await token(dockyard, "alice", "alice-password")).status_code == 401
    found = await identity.store.get_user("alice")
    assert found is not None
    assert not found[0].enabled


async def test_enabled_by_hand_while_gone_is_disabled_again(
    dockyard: Dockyard, slapd: SlapdProcess
) -> None:
    assert (await token(dockyard, "alice", "alice-password")).status_code == 200
    slapd.modify(f"dn: uid=alice,ou=people,{BASE_DN}\nchangetype: delete\n")
    ldap = dockyard.app[DIRECTORY].ldap
    assert ldap is not None
    await ldap.sync_all()
    identity = dockyard.app[IDENTITY]
    await identity.set_enabled(ADMIN, "alice", enabled=True)
    await ldap.sync_all()
    found = await identity.store.get_user("alice")
    assert found is not None
    assert not found[0].enabled


async def test_removed_from_directory_loses_access_at_the_next_login(
    dockyard: Dockyard, slapd: SlapdProcess
) -> None:
    assert (await token(dockyard, "bob", "bob-password")).status_code == 200
    _, secret = await dockyard.app[IDENTITY].create_token(Principal("bob", "user"), "bob", "ci")
    slapd.modify(f"dn: uid=bob,ou=people,{BASE_DN}\nchangetype: delete\n")
    # no sync: the next password login finds bob gone, and disables him
    assert (await token(dockyard, "bob", "bob-password")).status_code == 401
    found = await dockyard.app[IDENTITY].store.get_user("bob")
    assert found is not None
    assert not found[0].enabled
    assert (await token(dockyard, "bob", secret)).status_code == 401


async def test_precreated_account_joins_teams_before_first_login(dockyard: Dockyard) -> None:
    created = await dockyard.client.post("/api/v1/directory/accounts",
                                         json={"name": "alice", "source": "ldap"})
    assert created.status_code == 201, created.text
    assert created.json()["name"] == "alice"
    await dockyard.app[IDENTITY].set_member(ADMIN, "web", "alice", "viewer")
    assert (await token(dockyard, "alice", "alice-password")).status_code == 200
    # hand-made (viewer) membership kept; the directory's mapping does not take it over
    assert (await roles(dockyard))["alice"] == "viewer"


async def test_a_local_account_is_never_taken_over(dockyard: Dockyard) -> None:
    await dockyard.app[IDENTITY].create_user(ADMIN, "bob", email="", password="local-password")
    assert (await token(dockyard, "bob", "bob-password")).status_code == 401
    assert (await token(dockyard, "bob", "local-password")).status_code == 200


@pytest.mark.parametrize(("body", "status", "code"), [
    ({"name": "x", "source": "oidc:nope"}, 400, "unknown_source"),
    ({"name": "Not Valid", "source": "ldap"}, 400, "invalid_user_name"),
    ({"name": "x", "source": "ldap", "email": "no at"}, 400, "invalid_email"),
    ({"name": "x"}, 400, "invalid_field"),
    ({"name": "x", "source": "ldap", "admin": True}, 400, "unknown_field"),
    ({"name": "admin", "source": "ldap"}, 409, "name_taken"),
])
async def test_precreation_refuses_bad_input(
    dockyard: Dockyard, body: dict[str, object], status: int, code: str
) -> None:
    response = await dockyard.client.post("/api/v1/directory/accounts", json=body)
    assert response.status_code == status, response.text
    assert response.json()["error"]["code"] == code
    assert await dockyard.app[IDENTITY].store.get_user("x") is None


async def test_directory_api_is_for_admins(dockyard: Dockyard) -> None:
    assert (await token(dockyard, "alice", "alice-password")).status_code == 200
    as_alice = basic("alice", "alice-password")
    response = await dockyard.client.post("/api/v1/directory/sync", headers=as_alice)
    assert response.status_code == 403
    response = await dockyard.client.post("/api/v1/directory/accounts", headers=as_alice,
                                          json={"name": "zoe", "source": "ldap"})
    assert response.status_code == 403
    response = await dockyard.client.post("/api/v1/directory/sync")
    assert response.status_code == 200
    assert response.json() == {"accounts": 1}
    # the same sync runs periodically, as a job beside the consumers
    assert "ldap-sync" in [job.name for job in dockyard.app[JOBS]]


async def test_local_login_off_keeps_passwords_to_admins(tmp_path: Path) -> None:
    data = tmp_path / "data"
    config = await asyncio.to_thread(initialised, data, "http://127.0.0.1:9",
                                     auth_local_login="false")
    async with running_dockyard(config) as dockyard:
        identity = dockyard.app[IDENTITY]
        await identity.create_user(ADMIN, "lou", email="", password="lou-password")
        _, secret = await identity.create_token(ADMIN, "lou", "ci")
        refused = await token(dockyard, "lou", "lou-password")
        assert refused.status_code == 401
        assert refused.json()["error"]["code"] == "local_login_disabled"
        wrong = await token(dockyard, "lou", "not-lous-password")  # says nothing more
        assert wrong.json()["error"]["code"] == "unauthorized"
        assert (await token(dockyard, "lou", secret)).status_code == 200  # app tokens work
        assert (await dockyard.client.get("/api/v1/me")).status_code == 200  # the admin
