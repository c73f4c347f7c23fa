"""The identity API under /api/v1, route by route: the happy path, strict bodies (a 400 naming
the field, nothing written), 401/403/404/409, secrets shown once; every answer checked against
schemas/openapi.yaml.

One Dockyard serves the module. Team ``devs`` is owned by olivia, with carl a contributor and
the bot robot a viewer, and owns the private namespace ``devns``; otto is in no team. Everyone
but the admin calls with a Bearer application token (no argon2 per request). Tests that change
things use names of their own.
"""

from __future__ import annotations

import asyncio
import base64
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
import pytest_asyncio

from services.auth.access import IDENTITY
from services.auth.policy import Principal
from services.core.config import Config
from tests.support.dockyard import Dockyard, initialised, running_dockyard
from tests.support.openapi import assert_matches_openapi
from tests.support.waiting import eventually

pytestmark = pytest.mark.asyncio(loop_scope="module")

ADMIN = Principal("admin", "user", admin=True, credential="password")
PASSWORD = "a-good-password"
JSON = {"Content-Type": "application/json"}


@dataclass
class Api:
    dockyard: Dockyard
    tokens: dict[str, str]  # account → an application token's secret

    async def call(
        self,
        who: str | None,
        method: str,
        url: str,
        template: str,
        body: Any = None,
        *,
        content: bytes | None = None,
        headers: dict[str, str] | None = None,
        status: int | None = None,
    ) -> httpx.Response:
        """Call as ``who`` (None: anonymously), check the answer against the document's
        ``method template`` and, if given, its status."""
        sent = {"Authorization": self.auth(who)} if who else {}
        async with httpx.AsyncClient(base_url=self.dockyard.url, timeout=30) as client:
            response = await client.request(method, url, json=body, content=content,
                                            headers={**sent, **(headers or {})})
        assert_matches_openapi(response, template, method)
        if status is not None:
            assert response.status_code == status, response.text
        return response

    def auth(self, who: str) -> str:
        if who == "admin":
            return self.dockyard.client.headers["Authorization"]
        if who.endswith(WITH_PASSWORD):
            basic = f"{who.removesuffix(WITH_PASSWORD)}:{PASSWORD}".encode()
            return f"Basic {base64.b64encode(basic).decode()}"
        return f"Bearer {self.tokens.get(who, who)}"


# A caller's name with this suffix calls with HTTP Basic and the password: what managing
# credentials (a password, creating and revoking tokens) needs; an application token may not.
WITH_PASSWORD = "+password"


@pytest.fixture(scope="module")
def config(tmp_path_factory: pytest.TempPathFactory) -> Config:
    return initialised(tmp_path_factory.mktemp("identity-api"), "http://127.0.0.1:9",
                       sync_interval_seconds="0")


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def api(config: Config) -> AsyncIterator[Api]:
    async with running_dockyard(config) as dockyard:
        identity = dockyard.app[IDENTITY]
        await asyncio.gather(*(identity.create_user(ADMIN, name, email="", password=PASSWORD)
                               for name in ("olivia", "carl", "otto")))
        await identity.create_team(ADMIN, "devs", owner="olivia")
        await identity.set_member(ADMIN, "devs", "carl", "contributor")
        await identity.create_bot(ADMIN, "robot", team="devs", role="viewer")
        await identity.create_namespace(ADMIN, "devns", team="devs")
        tokens = {name: (await identity.create_token(ADMIN, name, "tests"))[1]
                  for name in ("olivia", "carl", "otto", "robot")}
        yield Api(dockyard, tokens)


# --- who am I ------------------------------------------------------------------------------


async def test_me(api: Api) -> None:
    me = (await api.call("olivia", "GET", "/api/v1/me", "/api/v1/me", status=200)).json()
    assert (me["name"], me["kind"], me["admin"]) == ("olivia", "user", False)
    assert me["teams"] == [{"name": "devs", "role": "owner"}]
    assert {ns["name"]: ns["kind"] for ns in me["namespaces"]} == {
        "devns": "team", "olivia": "personal"}
    robot = (await api.call("robot", "GET", "/api/v1/me", "/api/v1/me", status=200)).json()
    assert (robot["kind"], robot["teams"]) == ("bot", [{"name": "devs", "role": "viewer"}])
    admin = (await api.call("admin", "GET", "/api/v1/me", "/api/v1/me", status=200)).json()
    assert (admin["name"], admin["admin"], admin["teams"]) == ("admin", True, [])


@pytest.mark.parametrize("who", [None, "dyat_not-a-token", "not-even-prefixed"])
async def test_me_needs_good_credentials(api: Api, who: str | None) -> None:
    response = await api.call(who, "GET", "/api/v1/me", "/api/v1/me", status=401)
    assert response.headers["WWW-Authenticate"].startswith("Basic ")


IDENTITY_ROUTES = [
    ("GET", "/api/v1/users", "/api/v1/users"),
    ("POST", "/api/v1/users", "/api/v1/users"),
    ("GET", "/api/v1/users/carl", "/api/v1/users/{name}"),
    ("PATCH", "/api/v1/users/carl", "/api/v1/users/{name}"),
    ("GET", "/api/v1/users/carl/tokens", "/api/v1/users/{name}/tokens"),
    ("POST", "/api/v1/users/carl/tokens", "/api/v1/users/{name}/tokens"),
    ("DELETE", "/api/v1/users/carl/tokens/tests", "/api/v1/users/{name}/tokens/{label}"),
    ("GET", "/api/v1/teams", "/api/v1/teams"),
    ("POST", "/api/v1/teams", "/api/v1/teams"),
    ("GET", "/api/v1/teams/devs", "/api/v1/teams/{team}"),
    ("PUT", "/api/v1/teams/devs/members/otto", "/api/v1/teams/{team}/members/{user}"),
    ("DELETE", "/api/v1/teams/devs/members/carl", "/api/v1/teams/{team}/members/{user}"),
    ("GET", "/api/v1/namespaces", "/api/v1/namespaces"),
    ("POST", "/api/v1/namespaces", "/api/v1/namespaces"),
    ("GET", "/api/v1/namespaces/devns", "/api/v1/namespaces/{name}"),
    ("PATCH", "/api/v1/namespaces/devns", "/api/v1/namespaces/{name}"),
    ("GET", "/api/v1/bots", "/api/v1/bots"),
    ("POST", "/api/v1/bots", "/api/v1/bots"),
]


@pytest.mark.parametrize(("method", "url", "template"), IDENTITY_ROUTES)
async def test_every_identity_route_needs_credentials(
    api: Api, method: str, url: str, template: str
) -> None:
    body: dict[str, Any] | None = {} if method in {"POST", "PATCH", "PUT"} else None
    response = await api.call(None, method, url, template, body, status=401)
    assert response.json()["error"]["code"] == "unauthorized"


async def test_basic_with_an_app_token_works_too(api: Api) -> None:
    async with httpx.AsyncClient(base_url=api.dockyard.url) as client:
        response = await client.get("/api/v1/me", auth=("carl", api.tokens["carl"]))
    assert_matches_openapi(response, "/api/v1/me", "get")
    assert response.json()["name"] == "carl"


# --- accounts --------------------------------------------------------------------------------


async def test_an_admin_creates_an_account_and_the_password_is_never_shown(api: Api) -> None:
    body = {"name": "nina", "email": "nina@example.com", "password": PASSWORD, "admin": False}
    created = await api.call("admin", "POST", "/api/v1/users", "/api/v1/users", body,
                             status=201)
    assert created.json() == {"name": "nina", "kind": "user", "email": "nina@example.com",
                              "admin": False, "enabled": True, "locked_until": None}
    assert PASSWORD not in created.text
    again = await api.call("admin", "POST", "/api/v1/users", "/api/v1/users", body, status=409)
    assert again.json()["error"]["code"] == "name_taken"
    fetched = await api.call("admin", "GET", "/api/v1/users/nina", "/api/v1/users/{name}",
                             status=200)
    assert fetched.json() == created.json()
    async with httpx.AsyncClient(base_url=api.dockyard.url) as client:
        response = await client.get("/api/v1/me", auth=("nina", PASSWORD))
    assert response.status_code == 200


async def test_only_admins_create_and_list_accounts(api: Api) -> None:
    body = {"name": "sneaky", "password": PASSWORD}
    await api.call("olivia", "POST", "/api/v1/users", "/api/v1/users", body, status=403)
    await api.call("olivia", "GET", "/api/v1/users", "/api/v1/users", status=403)
    await api.call("robot", "GET", "/api/v1/bots", "/api/v1/bots", status=403)
    await api.call("admin", "GET", "/api/v1/users/sneaky", "/api/v1/users/{name}", status=404)


async def test_accounts_page_through_by_name(api: Api) -> None:
    names: list[str] = []
    url = "/api/v1/users?limit=2"
    while True:
        page = (await api.call("admin", "GET", url, "/api/v1/users", status=200)).json()
        names += [item["name"] for item in page["items"]]
        if page["next"] is None:
            break
        url = f"/api/v1/users?limit=2&cursor={page['next']}"
    assert names == sorted(names)
    assert {"admin", "carl", "olivia", "otto", "robot"} <= set(names)
    bots = (await api.call("admin", "GET", "/api/v1/bots", "/api/v1/bots", status=200)).json()
    assert "robot" in [item["name"] for item in bots["items"]]
    assert {item["kind"] for item in bots["items"]} == {"bot"}


async def test_an_account_is_seen_by_itself_and_admins(api: Api) -> None:
    own = await api.call("carl", "GET", "/api/v1/users/carl", "/api/v1/users/{name}",
                         status=200)
    assert own.json()["name"] == "carl"
    # A teammate carl knows of (the team's member list shows them): forbidden.
    await api.call("carl", "GET", "/api/v1/users/olivia", "/api/v1/users/{name}", status=403)
    # Anyone else is not found, exactly as an account that does not exist.
    answers = [await api.call("carl", "GET", f"/api/v1/users/{name}", "/api/v1/users/{name}",
                              status=404) for name in ("otto", "nobody")]
    assert answers[0].json() == {"error": {"code": "user_not_found",
                                           "message": "no account named 'otto'"}}
    assert answers[1].json()["error"]["code"] == "user_not_found"


async def test_people_change_their_own_email_and_password_not_their_flags(api: Api) -> None:
    await api.dockyard.app[IDENTITY].create_user(ADMIN, "pat", email="", password=PASSWORD)
    token = (await api.dockyard.app[IDENTITY].create_token(ADMIN, "pat", "own"))[1]
    api.tokens["pat"] = token
    url, template = "/api/v1/users/pat", "/api/v1/users/{name}"
    changed = await api.call("pat+password", "PATCH", url, template,
                             {"email": "pat@example.com", "password": "a-new-password"},
                             status=200)
    assert changed.json()["email"] == "pat@example.com"
    assert "a-new-password" not in changed.text
    for flags in ({"admin": True}, {"enabled": False}):
        await api.call("pat", "PATCH", url, template, flags, status=403)
    await api.call("pat", "PATCH", "/api/v1/users/carl", template, {"email": "x@y.z"},
                   status=404)  # pat shares no team with carl: not found, as if not there
    async with httpx.AsyncClient(base_url=api.dockyard.url) as client:
        response = await client.get("/api/v1/me", auth=("pat", "a-new-password"))
    assert response.status_code == 200


async def test_an_app_token_manages_no_credentials(api: Api) -> None:
    """A key handed to a machine: it may not change the password, make more keys (nor
    refresh tokens that outlive it: test_token_endpoint.py) or end the others (revoking the
    account's deployments' tokens); listing is fine."""
    await api.dockyard.app[IDENTITY].create_user(ADMIN, "kim", email="", password=PASSWORD)
    api.tokens["kim"] = (await api.dockyard.app[IDENTITY].create_token(ADMIN, "kim", "ci"))[1]
    changed = await api.call("kim", "PATCH", "/api/v1/users/kim", "/api/v1/users/{name}",
                             {"password": "taken-over-1"}, status=403)
    assert changed.json()["error"]["code"] == "app_token_not_allowed"
    url, template = "/api/v1/users/kim/tokens", "/api/v1/users/{name}/tokens"
    created = await api.call("kim", "POST", url, template, {"label": "more"}, status=403)
    assert created.json()["error"]["code"] == "app_token_not_allowed"
    assert [t["label"] for t in (await api.call("kim", "GET", url, template, status=200)
                                 ).json()["items"]] == ["ci"]
    revoked = await api.call("kim", "DELETE", f"{url}/ci", "/api/v1/users/{name}/tokens/{label}",
                             status=403)
    assert revoked.json()["error"]["code"] == "app_token_not_allowed"
    async with httpx.AsyncClient(base_url=api.dockyard.url) as client:
        assert (await client.get("/api/v1/me", auth=("kim", PASSWORD))).status_code == 200
    # an admin resets another account's password with their own (it ends kim's sessions and
    # refresh tokens, not kim's application tokens)
    await api.call("admin", "PATCH", "/api/v1/users/kim", "/api/v1/users/{name}",
                   {"password": "reset-by-admin-1"}, status=200)
    await api.call("kim", "GET", "/api/v1/me", "/api/v1/me", status=200)


async def test_a_disabled_account_is_shut_out_until_enabled(api: Api) -> None:
    await api.dockyard.app[IDENTITY].create_user(ADMIN, "dora", email="", password=PASSWORD)
    api.tokens["dora"] = (await api.dockyard.app[IDENTITY].create_token(ADMIN, "dora", "x"))[1]
    url, template = "/api/v1/users/dora", "/api/v1/users/{name}"
    disabled = await api.call("admin", "PATCH", url, template, {"enabled": False}, status=200)
    assert disabled.json()["enabled"] is False
    await api.call("dora", "GET", "/api/v1/me", "/api/v1/me", status=401)
    await api.call("admin", "PATCH", url, template, {"enabled": True, "admin": True},
                   status=200)
    me = await api.call("dora", "GET", "/api/v1/me", "/api/v1/me", status=200)
    assert me.json()["admin"] is True


async def test_admins_cannot_disable_or_demote_themselves(api: Api) -> None:
    url, template = "/api/v1/users/admin", "/api/v1/users/{name}"
    for body, code in (({"enabled": False}, "self_disable"), ({"admin": False}, "self_demote")):
        response = await api.call("admin", "PATCH", url, template, body, status=403)
        assert response.json()["error"]["code"] == code


# --- strict bodies ---------------------------------------------------------------------------

BAD_BODIES = [
    (b"{", "malformed_json", "JSON"),
    (b'{"name": "ok", "password": "' + b"\xff" * 8 + b'"}', "malformed_json", "JSON"),
    (b"[]", "invalid_body", "object"),
    (b'"name"', "invalid_body", "object"),
    (b'{"name": "ok", "password": "a-good-password", "role": "x"}', "unknown_field", "'role'"),
    (b'{"name": "ok", "password": "a-good-password", "admin": "yes"}', "invalid_field", "admin"),
    (b'{"name": "ok", "password": "a-good-password", "admin": 1}', "invalid_field", "admin"),
    (b'{"name": 7, "password": "a-good-password"}', "invalid_field", "name"),
    (b'{"name": "ok", "password": null}', "invalid_field", "password"),
    (b'{"name": "ok"}', "missing_field", "password"),
    (b'{"name": "OK", "password": "a-good-password"}', "invalid_user_name", "user names"),
    (b'{"name": "ok", "password": "short"}', "weak_password", "passwords"),
    (b'{"name": "ok", "password": "a-good-password", "email": "nope"}', "invalid_email",
     "email"),
]


@pytest.mark.parametrize(("content", "code", "named"), BAD_BODIES)
async def test_a_bad_body_is_a_400_naming_the_field_and_writes_nothing(
    api: Api, content: bytes, code: str, named: str
) -> None:
    response = await api.call("admin", "POST", "/api/v1/users", "/api/v1/users",
                              content=content, headers=JSON, status=400)
    assert response.json()["error"]["code"] == code
    assert named in response.json()["error"]["message"]
    await api.call("admin", "GET", "/api/v1/users/ok", "/api/v1/users/{name}", status=404)


@pytest.mark.parametrize(
    ("method", "url", "template"),
    [("POST", "/api/v1/users", "/api/v1/users"),
     ("PATCH", "/api/v1/users/carl", "/api/v1/users/{name}"),
     ("POST", "/api/v1/teams", "/api/v1/teams"),
     ("PUT", "/api/v1/teams/devs/members/otto", "/api/v1/teams/{team}/members/{user}"),
     ("POST", "/api/v1/namespaces", "/api/v1/namespaces"),
     ("PATCH", "/api/v1/namespaces/devns", "/api/v1/namespaces/{name}"),
     ("POST", "/api/v1/users/carl/tokens", "/api/v1/users/{name}/tokens"),
     ("POST", "/api/v1/bots", "/api/v1/bots")],
)
async def test_every_body_is_strict(api: Api, method: str, url: str, template: str) -> None:
    response = await api.call("admin", method, url, template, content=b'{"name": "x"}',
                              headers={"Content-Type": "text/plain"}, status=415)
    assert response.json()["error"]["code"] == "unsupported_media_type"
    response = await api.call("admin", method, url, template, {"surprise": True}, status=400)
    assert response.json()["error"]["code"] == "unknown_field"
    assert "'surprise'" in response.json()["error"]["message"]


# --- teams -----------------------------------------------------------------------------------


async def test_a_person_creates_a_team_they_own(api: Api) -> None:
    created = await api.call("otto", "POST", "/api/v1/teams", "/api/v1/teams",
                             {"name": "ottos", "description": "Otto's"}, status=201)
    assert created.json() == {"name": "ottos", "description": "Otto's",
                              "members": [{"user": "otto", "role": "owner"}]}
    await api.call("otto", "POST", "/api/v1/teams", "/api/v1/teams", {"name": "ottos"},
                   status=409)
    await api.call("otto", "POST", "/api/v1/teams", "/api/v1/teams",
                   {"name": "for-carl", "owner": "carl"}, status=403)
    await api.call("admin", "POST", "/api/v1/teams", "/api/v1/teams",
                   {"name": "for-nobody", "owner": "nobody"}, status=404)
    listed = await api.call("otto", "GET", "/api/v1/teams", "/api/v1/teams", status=200)
    assert [t["name"] for t in listed.json()["items"]] == ["ottos"]
    everything = await api.call("admin", "GET", "/api/v1/teams?limit=1", "/api/v1/teams",
                                status=200)
    assert everything.json()["next"] is not None


async def test_a_team_is_seen_by_its_members_and_admins(api: Api) -> None:
    url, template = "/api/v1/teams/devs", "/api/v1/teams/{team}"
    for who in ("olivia", "carl", "robot", "admin"):
        team = await api.call(who, "GET", url, template, status=200)
        assert {m["user"]: m["role"] for m in team.json()["members"]} == {
            "olivia": "owner", "carl": "contributor", "robot": "viewer"}
    # Outsiders cannot tell a team they are not in from one that does not exist.
    hidden = await api.call("otto", "GET", url, template, status=404)
    missing = await api.call("otto", "GET", "/api/v1/teams/nope", template, status=404)
    assert hidden.json()["error"]["code"] == missing.json()["error"]["code"] == "team_not_found"
    await api.call("admin", "GET", "/api/v1/teams/nope", template, status=404)
    for team in ("devs", "nope"):
        response = await api.call("otto", "PUT", f"/api/v1/teams/{team}/members/otto",
                                  "/api/v1/teams/{team}/members/{user}", {"role": "owner"},
                                  status=404)
        assert response.json()["error"]["code"] == "team_not_found"


async def test_owners_manage_members(api: Api) -> None:
    await api.call("olivia", "POST", "/api/v1/teams", "/api/v1/teams", {"name": "crew"},
                   status=201)
    template = "/api/v1/teams/{team}/members/{user}"
    added = await api.call("olivia", "PUT", "/api/v1/teams/crew/members/carl", template,
                           {"role": "viewer"}, status=200)
    assert added.json() == {"team": "crew", "user": "carl", "role": "viewer"}
    await api.call("carl", "PUT", "/api/v1/teams/crew/members/otto", template,
                   {"role": "viewer"}, status=403)
    response = await api.call("olivia", "PUT", "/api/v1/teams/crew/members/carl", template,
                              {"role": "boss"}, status=400)
    assert response.json()["error"]["code"] == "invalid_role"
    await api.call("olivia", "PUT", "/api/v1/teams/crew/members/nobody", template,
                   {"role": "viewer"}, status=404)
    last = await api.call("olivia", "DELETE", "/api/v1/teams/crew/members/olivia", template,
                          status=409)
    assert last.json()["error"]["code"] == "last_owner"
    removed = await api.call("olivia", "DELETE", "/api/v1/teams/crew/members/carl", template,
                             status=204)
    assert removed.content == b""
    await api.call("olivia", "DELETE", "/api/v1/teams/crew/members/carl", template,
                   status=404)


# --- namespaces ------------------------------------------------------------------------------


async def test_owners_create_and_manage_their_teams_namespaces(api: Api) -> None:
    created = await api.call("olivia", "POST", "/api/v1/namespaces", "/api/v1/namespaces",
                             {"name": "devtools", "team": "devs", "visibility": "protected",
                              "description": "Tools"}, status=201)
    assert created.json() == {"name": "devtools", "kind": "team", "visibility": "protected",
                              "description": "Tools", "team": "devs", "owner": None}
    await api.call("carl", "POST", "/api/v1/namespaces", "/api/v1/namespaces",
                   {"name": "carls", "team": "devs"}, status=403)
    await api.call("olivia", "POST", "/api/v1/namespaces", "/api/v1/namespaces",
                   {"name": "devtools", "team": "devs"}, status=409)
    await api.call("olivia", "POST", "/api/v1/namespaces", "/api/v1/namespaces",
                   {"name": "carl", "team": "devs"}, status=409)  # an account's name
    template = "/api/v1/namespaces/{name}"
    changed = await api.call("olivia", "PATCH", "/api/v1/namespaces/devtools", template,
                             {"visibility": "public", "description": "Public tools"},
                             status=200)
    assert (changed.json()["visibility"], changed.json()["description"]) == (
        "public", "Public tools")
    await api.call("carl", "PATCH", "/api/v1/namespaces/devtools", template,
                   {"description": "mine now"}, status=403)
    bad = await api.call("olivia", "PATCH", "/api/v1/namespaces/devtools", template,
                         {"visibility": "secret"}, status=400)
    assert bad.json()["error"]["code"] == "invalid_visibility"
    await api.call("olivia", "PATCH", "/api/v1/namespaces/devtools", template,
                   {"team": "nope"}, status=404)
    after = await api.call("otto", "GET", "/api/v1/namespaces/devtools", template, status=200)
    assert after.json()["description"] == "Public tools"


async def test_a_private_namespace_is_invisible_to_outsiders(api: Api) -> None:
    template = "/api/v1/namespaces/{name}"
    for who in ("olivia", "carl", "robot", "admin"):
        await api.call(who, "GET", "/api/v1/namespaces/devns", template, status=200)
    for name in ("devns", "olivia", "nothing"):
        response = await api.call("otto", "GET", f"/api/v1/namespaces/{name}", template,
                                  status=404)
        assert response.json()["error"]["code"] == "namespace_not_found"
        changed = await api.call("otto", "PATCH", f"/api/v1/namespaces/{name}", template,
                                 {"description": "mine"}, status=404)
        assert changed.json()["error"]["code"] == "namespace_not_found"
    mine = await api.call("otto", "GET", "/api/v1/namespaces", "/api/v1/namespaces",
                          status=200)
    assert [ns["name"] for ns in mine.json()["items"]] == ["otto"]
    everything = await api.call("admin", "GET", "/api/v1/namespaces", "/api/v1/namespaces",
                                status=200)
    assert {"", "devns", "otto"} <= {ns["name"] for ns in everything.json()["items"]}


# --- application tokens ----------------------------------------------------------------------


async def test_a_token_secret_is_shown_once_and_works_until_revoked(api: Api) -> None:
    url, template = "/api/v1/users/carl/tokens", "/api/v1/users/{name}/tokens"
    expires = (datetime.now(UTC) + timedelta(days=1)).isoformat()
    created = await api.call("carl+password", "POST", url, template,
                             {"label": "laptop", "expires_at": expires}, status=201)
    secret = created.json()["secret"]
    assert created.json()["label"] == "laptop"
    assert created.json()["expires_at"].endswith("Z")
    me = await api.call(secret, "GET", "/api/v1/me", "/api/v1/me", status=200)
    assert me.json()["name"] == "carl"

    listed = await api.call("carl", "GET", url, template, status=200)
    assert secret not in listed.text
    laptop = next(t for t in listed.json()["items"] if t["label"] == "laptop")
    assert set(laptop) == {"user", "label", "created_at", "expires_at", "last_used_at",
                           "revoked"}
    assert laptop["last_used_at"] is not None
    assert listed.json()["next"] is None

    await api.call("carl+password", "POST", url, template, {"label": "laptop"}, status=409)
    revoke = "/api/v1/users/{name}/tokens/{label}"
    await api.call("carl+password", "DELETE", f"{url}/laptop", revoke, status=204)
    await api.call(secret, "GET", "/api/v1/me", "/api/v1/me", status=401)
    await api.call("carl+password", "DELETE", f"{url}/laptop", revoke, status=404)
    relisted = await api.call("carl", "GET", url, template, status=200)
    assert next(t for t in relisted.json()["items"] if t["label"] == "laptop")["revoked"]


async def test_a_label_with_a_slash_is_revoked_through_its_encoded_path(api: Api) -> None:
    url, template = "/api/v1/users/carl/tokens", "/api/v1/users/{name}/tokens"
    await api.call("carl+password", "POST", url, template, {"label": "ci/deploy"}, status=201)
    await api.call("carl+password", "DELETE", f"{url}/ci%2Fdeploy",
                   "/api/v1/users/{name}/tokens/{label}", status=204)


@pytest.mark.parametrize(
    ("body", "code"),
    [({"label": "old", "expires_at": "2001-01-01T00:00:00Z"}, "invalid_expiry"),
     ({"label": "when", "expires_at": "tomorrow"}, "invalid_field"),
     ({"label": ""}, "invalid_label"),
     ({"label": "x" * 65}, "invalid_label"),
     ({"expires_at": None}, "missing_field")],
)
async def test_bad_token_requests_create_nothing(
    api: Api, body: dict[str, Any], code: str
) -> None:
    url, template = "/api/v1/users/otto/tokens", "/api/v1/users/{name}/tokens"
    response = await api.call("otto+password", "POST", url, template, body, status=400)
    assert response.json()["error"]["code"] == code
    listed = await api.call("otto", "GET", url, template, status=200)
    assert body.get("label") not in {t["label"] for t in listed.json()["items"]}


async def test_tokens_belong_to_their_account_and_team_owners_of_bots(api: Api) -> None:
    template = "/api/v1/users/{name}/tokens"
    # Tokens of an account otto cannot see answer as those of one that does not exist.
    for name in ("carl", "nobody"):
        listed = await api.call("otto", "GET", f"/api/v1/users/{name}/tokens", template,
                                status=404)
        assert listed.json()["error"]["code"] == "user_not_found"
        await api.call("otto+password", "POST", f"/api/v1/users/{name}/tokens", template,
                       {"label": "mine"}, status=404)
    await api.call("admin", "GET", "/api/v1/users/nobody/tokens", template, status=404)
    created = await api.call("olivia+password", "POST", "/api/v1/users/robot/tokens",
                             template, {"label": "deploy"}, status=201)
    me = await api.call(created.json()["secret"], "GET", "/api/v1/me", "/api/v1/me",
                        status=200)
    assert me.json()["name"] == "robot"
    await api.call("carl", "DELETE", "/api/v1/users/robot/tokens/deploy",
                   "/api/v1/users/{name}/tokens/{label}", status=404)
    await api.call("olivia+password", "DELETE", "/api/v1/users/robot/tokens/deploy",
                   "/api/v1/users/{name}/tokens/{label}", status=204)


async def test_token_activity_names_the_label_never_the_secret(api: Api) -> None:
    url, template = "/api/v1/users/otto/tokens", "/api/v1/users/{name}/tokens"
    secret = (await api.call("otto+password", "POST", url, template, {"label": "audited"},
                             status=201)).json()["secret"]
    found = await eventually(
        lambda: api.call("admin", "GET", "/api/v1/activities?type=token.create&limit=500",
                         "/api/v1/activities"),
        lambda r: any(a["details"] == {"label": "audited"} for a in r.json()["items"]),
        what="token.create recorded")
    assert secret not in found.text
    entry = next(a for a in found.json()["items"] if a["details"] == {"label": "audited"})
    assert (entry["actor"], entry["subject"]) == ("otto", "otto")


# --- bots ------------------------------------------------------------------------------------


async def test_team_owners_add_bots(api: Api) -> None:
    created = await api.call("olivia", "POST", "/api/v1/bots", "/api/v1/bots",
                             {"name": "builder", "team": "devs", "role": "contributor"},
                             status=201)
    assert (created.json()["name"], created.json()["kind"]) == ("builder", "bot")
    await api.call("carl", "POST", "/api/v1/bots", "/api/v1/bots",
                   {"name": "carlbot", "team": "devs", "role": "viewer"}, status=403)
    await api.call("olivia", "POST", "/api/v1/bots", "/api/v1/bots",
                   {"name": "builder", "team": "devs", "role": "viewer"}, status=409)
    await api.call("admin", "POST", "/api/v1/bots", "/api/v1/bots",
                   {"name": "lost", "team": "nope", "role": "viewer"}, status=404)
    response = await api.call("olivia", "POST", "/api/v1/bots", "/api/v1/bots",
                              {"name": "partial", "team": "devs"}, status=400)
    assert "role" in response.json()["error"]["message"]
    team = await api.call("olivia", "GET", "/api/v1/teams/devs", "/api/v1/teams/{team}")
    assert {"user": "builder", "role": "contributor"} in team.json()["members"]
    assert "partial" not in team.text


async def test_a_bot_shows_the_team_that_owns_it(api: Api) -> None:
    bots = (await api.call("admin", "GET", "/api/v1/bots", "/api/v1/bots", status=200)).json()
    assert {"name": "robot", "owner_team": "devs"}.items() <= next(
        bot for bot in bots["items"] if bot["name"] == "robot").items()
    person = (await api.call("admin", "GET", "/api/v1/users/carl", "/api/v1/users/{name}",
                             status=200)).json()
    assert "owner_team" not in person


async def test_a_team_owner_cannot_capture_another_teams_bot(api: Api) -> None:
    """Issue 15 item 1: otto creates a team, adds devs' bot to it and mints it a token."""
    await api.call("otto", "POST", "/api/v1/teams", "/api/v1/teams", {"name": "ottocrew"},
                   status=201)
    member = "/api/v1/teams/{team}/members/{user}"
    added = await api.call("otto", "PUT", "/api/v1/teams/ottocrew/members/robot", member,
                           {"role": "owner"}, status=404)
    unknown = await api.call("otto", "PUT", "/api/v1/teams/ottocrew/members/nobody", member,
                             {"role": "owner"}, status=404)
    assert added.json()["error"]["code"] == unknown.json()["error"]["code"] == "user_not_found"
    tokens = "/api/v1/users/{name}/tokens"
    for method, body in (("POST", {"label": "mine"}), ("GET", None)):
        response = await api.call("otto", method, "/api/v1/users/robot/tokens", tokens, body,
                                  status=404)
        assert response.json()["error"]["code"] == "user_not_found"
    team = await api.call("otto", "GET", "/api/v1/teams/ottocrew", "/api/v1/teams/{team}",
                          status=200)
    assert [m["user"] for m in team.json()["members"]] == ["otto"]
    listed = await api.call("olivia", "GET", "/api/v1/users/robot/tokens", tokens, status=200)
    assert "mine" not in {t["label"] for t in listed.json()["items"]}
