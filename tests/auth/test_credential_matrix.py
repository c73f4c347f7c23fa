"""Which credential may do what: every kind of credential, live, revoked, expired or ended,
against every kind of action, black-box through the HTTP API of a running Dockyard.

The rules (docs/security.md, *Credentials*; README, *What ends credentials*):

- a **password** is the whole account: registry tokens, refresh tokens, the API, its own
  tokens and password;
- an **application token** has the account's registry and API rights, and opens refresh
  token families bound to it (``docker login`` with a token), but manages no credentials: it
  creates and revokes no tokens and changes no password; revoked or expired, it is nothing,
  and while its account is disabled too;
- a **refresh token** trades for registry tokens, for the ``client_id`` it was issued to and
  nothing else (it is no API credential); it ends with the application token that minted it
  and with the account's credential epoch: a password change, disabling, an admin's
  demotion, "sign out everywhere";
- a **bot** has only application tokens (made by admins or its team's owners) and no password;
  disabled, its tokens are refused as the account's;
- a **portal session** is a portal credential only (the token endpoint and the API ignore the
  cookie) and ends with the epoch too: its pages send the browser to sign in, its forms are
  refused as expired, and what it showed is as invisible as to anyone.

Everyone here is a contributor of team ``crew``, which owns the private namespace ``priv``
holding ``priv/app:1``: a live credential gets pull and push on it. The demoted admins are in
no team: what they saw as admins, they no longer see, at once.

One Dockyard serves the module. Each credential is made once, on an account of its own, by the
HTTP calls a person or an admin would make (the revocation, the password change… after the
credential was used once, so caches had it), then presented for every action. No action but
the password change changes what another case sees (a revocation ends a token made for it),
so the password change alone gets a fresh account for every case.
"""

from __future__ import annotations

import asyncio
import itertools
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Literal

import httpx
import pytest
import pytest_asyncio

from services.auth.access import IDENTITY
from services.auth.policy import Principal
from services.core.config import Config
from tests.portal.conftest import seed_tag
from tests.support.dockyard import Dockyard, initialised, running_dockyard
from tests.support.portal import csrf_of, portal_session
from tests.support.tokens import cheap_hashing, error_of, unverified

pytestmark = pytest.mark.asyncio(loop_scope="module")

ADMIN = Principal("admin", "user", admin=True, credential="password")
PASSWORD = "matrix-password-1"
NEW_PASSWORD = "matrix-password-2"
REPOSITORY = "priv/app"

# What an action can come to, as the tests observe it.
PULL = "granted pull"
PUSH = "granted pull,push"
NOTHING = "granted nothing"  # an anonymous caller's token
OK = "ok"
UNAUTHORIZED = "401 unauthorized"
DISABLED = "401 account_disabled"
INVALID_GRANT = "400 invalid_grant"
NOT_WITH_APP_TOKEN = "403 app_token_not_allowed"
BOT_PASSWORD = "400 bot_password"
SIGN_IN = "sent to sign in"
STALE_FORM = "form expired"
NOT_FOUND = "404"

ACTIONS = ("pull", "push", "refresh", "me", "create_token", "revoke_token", "change_password",
           "tags")
Row = tuple[str | None, ...]
_NO_API: Row = (UNAUTHORIZED,) * 5
_ENDED_REFRESH: Row = (INVALID_GRANT, INVALID_GRANT, INVALID_GRANT, *_NO_API)
_ENDED_SESSION: Row = (NOTHING, NOTHING, None, SIGN_IN, STALE_FORM, STALE_FORM, STALE_FORM,
                       NOT_FOUND)
_APP_TOKEN: Row = (PULL, PUSH, OK, OK, NOT_WITH_APP_TOKEN, NOT_WITH_APP_TOKEN)

# credential → the outcome of each action (None: the credential has no way to ask), by hand.
EXPECTED: dict[str, Row] = {
    #  pull, push, refresh, me, create_token, revoke_token, change_password, tags
    "password":              (PULL, PUSH, OK, OK, OK, OK, OK, OK),
    "old-password":          (UNAUTHORIZED,) * 8,
    "app-token":             (*_APP_TOKEN, NOT_WITH_APP_TOKEN, OK),
    "revoked-app-token":     (UNAUTHORIZED,) * 8,
    "app-token-disabled":    (DISABLED,) * 8,
    "expired-app-token":     (UNAUTHORIZED,) * 8,
    # An admin's rights end with the demotion, cached or not: priv is not theirs to see.
    "demoted-admin-password": (NOTHING, NOTHING, OK, OK, OK, OK, OK, NOT_FOUND),
    "demoted-admin-app-token": (NOTHING, NOTHING, OK, OK, NOT_WITH_APP_TOKEN,
                                NOT_WITH_APP_TOKEN, NOT_WITH_APP_TOKEN, NOT_FOUND),
    "refresh-by-password":   (PULL, PUSH, OK, *_NO_API),
    "refresh-by-app-token":  (PULL, PUSH, OK, *_NO_API),
    "refresh-app-token-revoked": _ENDED_REFRESH,
    "refresh-other-client":  _ENDED_REFRESH,
    "refresh-password-changed": _ENDED_REFRESH,
    "refresh-disabled":      _ENDED_REFRESH,
    "refresh-demoted":       _ENDED_REFRESH,
    "refresh-signed-out":    _ENDED_REFRESH,
    # A bot has no password to change: that it is a bot is said first.
    "bot-token":             (*_APP_TOKEN, BOT_PASSWORD, OK),
    "bot-token-by-owner":    (*_APP_TOKEN, BOT_PASSWORD, OK),
    "disabled-bot-token":    (DISABLED,) * 8,
    "session":               (NOTHING, NOTHING, None, OK, OK, OK, OK, OK),
    "session-password-changed": _ENDED_SESSION,
    "session-demoted":       _ENDED_SESSION,
    "session-signed-out":    _ENDED_SESSION,
    "session-disabled":      _ENDED_SESSION,
}

MATRIX = [pytest.param(credential, action, expected, id=f"{credential}-{action}")
          for credential, row in EXPECTED.items()
          for action, expected in zip(ACTIONS, row, strict=True) if expected is not None]


@dataclass(frozen=True)
class Credential:
    account: str
    kind: Literal["password", "app_token", "refresh_token", "session"]
    secret: str = ""
    client_id: str = "docker"  # the client presenting a refresh token
    cookies: httpx.Cookies | None = None
    csrf: str = ""  # the session's form token


@dataclass
class World:
    dockyard: Dockyard
    client: httpx.AsyncClient  # no credentials of its own
    made: dict[str, Credential] = field(default_factory=dict)
    numbers: itertools.count[int] = field(default_factory=itertools.count)
    labels: dict[str, str] = field(default_factory=dict)  # app token → its label

    @property
    def admin(self) -> httpx.AsyncClient:
        return self.dockyard.client

    async def credential(self, kind: str, *, fresh: bool = False) -> Credential:
        """The credential ``kind`` as MAKERS make it; made once unless ``fresh``."""
        if fresh or kind not in self.made:
            made = await MAKERS[kind](self, f"{kind}-{next(self.numbers)}")
            if fresh:
                return made
            self.made[kind] = made
        return self.made[kind]

    @asynccontextmanager
    async def browser(self, credential: Credential) -> AsyncIterator[httpx.AsyncClient]:
        async with httpx.AsyncClient(base_url=self.dockyard.url, cookies=credential.cookies,
                                     timeout=30) as browser:
            yield browser

    # what people and admins do, as the API lets them ------------------------------------

    async def person(self, name: str, *, admin: bool = False) -> None:
        """An account with PASSWORD; a contributor of crew unless an admin."""
        identity = self.dockyard.app[IDENTITY]
        with cheap_hashing():
            await identity.create_user(ADMIN, name, email="", password=PASSWORD, admin=admin)
        if not admin:
            await identity.set_member(ADMIN, "crew", name, "contributor")

    async def bot(self, name: str, *, by: tuple[str, str] | None = None) -> str:
        """A contributor bot of crew, made by ``by`` (else an admin), and an app token for it
        that they create."""
        client_auth = {"auth": by} if by else {}
        client = self.client if by else self.admin
        made = await client.post("/api/v1/bots", **client_auth,
                                 json={"name": name, "team": "crew", "role": "contributor"})
        assert made.status_code == 201, made.text
        return await self.app_token(name, by=by)

    async def app_token(self, name: str, *, by: tuple[str, str] | None = None,
                        expires_at: datetime | None = None) -> str:
        """A new app token of ``name``, created by ``by`` (name, password), else the admin."""
        body: dict[str, str] = {"label": f"t{uuid.uuid4().hex[:8]}"}
        if expires_at is not None:
            body["expires_at"] = expires_at.isoformat()
        client = self.client if by else self.admin
        response = await client.post(f"/api/v1/users/{name}/tokens", json=body,
                                     **({"auth": by} if by else {}))
        assert response.status_code == 201, response.text
        secret: str = response.json()["secret"]
        self.labels[secret] = body["label"]
        return secret

    async def revoke(self, name: str, secret: str) -> None:
        """``name`` revokes its app token ``secret``."""
        response = await self.client.delete(
            f"/api/v1/users/{name}/tokens/{self.labels[secret]}", auth=(name, PASSWORD))
        assert response.status_code == 204, response.text

    async def change_password(self, name: str) -> None:
        response = await self.client.patch(f"/api/v1/users/{name}", auth=(name, PASSWORD),
                                           json={"password": NEW_PASSWORD})
        assert response.status_code == 200, response.text

    async def sign_out_everywhere(self, name: str) -> None:
        response = await self.client.delete(f"/api/v1/users/{name}/sessions",
                                            auth=(name, PASSWORD))
        assert response.status_code == 204, response.text

    async def patch_as_admin(self, name: str, **changes: bool) -> None:
        response = await self.admin.patch(f"/api/v1/users/{name}", json=changes)
        assert response.status_code == 200, response.text

    async def docker_login(self, name: str, secret: str) -> str:
        """The refresh token ``docker login`` gets with these credentials, tried once."""
        response = await self.client.get("/v2/token", auth=(name, secret), params={
            "service": self.dockyard.config.auth.service, "offline_token": "true",
            "client_id": "docker"})
        assert response.status_code == 200, response.text
        refresh_token: str = response.json()["refresh_token"]
        assert (await self.exchange(refresh_token)).status_code == 200
        return refresh_token

    async def exchange(self, refresh_token: str, client_id: str = "docker",
                       scope: str = "") -> httpx.Response:
        return await self.client.post("/v2/token", data={
            "service": self.dockyard.config.auth.service, "client_id": client_id,
            "grant_type": "refresh_token", "refresh_token": refresh_token, "scope": scope})

    async def used(self, credential: Credential) -> Credential:
        """``credential`` after one successful use, so that whatever caches it has it."""
        assert await token(self, credential, f"repository:{REPOSITORY}:pull") == PULL
        return credential

    async def signed_in(self, name: str) -> Credential:
        """A portal session of ``name``, that has shown a page (and its form token)."""
        cookies = await portal_session(self.dockyard.url, name, PASSWORD)
        credential = Credential(name, "session", cookies=cookies)
        async with self.browser(credential) as browser:
            page = await browser.get("/profile")
        assert page.status_code == 200, page.text
        return Credential(name, "session", cookies=cookies, csrf=csrf_of(page.text))


# --- the credentials -----------------------------------------------------------------------

Maker = Callable[[World, str], Awaitable[Credential]]
MAKERS: dict[str, Maker] = {}


def maker(kind: str) -> Callable[[Maker], Maker]:
    def register(make: Maker) -> Maker:
        MAKERS[kind] = make
        return make
    return register


@maker("password")
async def _password(world: World, name: str) -> Credential:
    await world.person(name)
    return Credential(name, "password", PASSWORD)


@maker("old-password")
async def _old_password(world: World, name: str) -> Credential:
    credential = await world.used(await _password(world, name))
    await world.change_password(name)
    return credential


@maker("app-token")
async def _app_token(world: World, name: str) -> Credential:
    await world.person(name)
    return Credential(name, "app_token", await world.app_token(name, by=(name, PASSWORD)))


@maker("revoked-app-token")
async def _revoked_app_token(world: World, name: str) -> Credential:
    credential = await world.used(await _app_token(world, name))
    await world.revoke(name, credential.secret)
    return credential


@maker("app-token-disabled")
async def _app_token_disabled(world: World, name: str) -> Credential:
    credential = await world.used(await _app_token(world, name))
    await world.patch_as_admin(name, enabled=False)
    return credential


@maker("demoted-admin-password")
async def _demoted_admin_password(world: World, name: str) -> Credential:
    await world.person(name, admin=True)
    credential = await world.used(Credential(name, "password", PASSWORD))
    await world.patch_as_admin(name, admin=False)
    return credential


@maker("demoted-admin-app-token")
async def _demoted_admin_app_token(world: World, name: str) -> Credential:
    await world.person(name, admin=True)
    secret = await world.app_token(name, by=(name, PASSWORD))
    credential = await world.used(Credential(name, "app_token", secret))
    await world.patch_as_admin(name, admin=False)
    return credential


@maker("expired-app-token")
async def _expired_app_token(world: World, name: str) -> Credential:
    await world.person(name)
    expires_at = datetime.now(UTC) + timedelta(seconds=1)
    secret = await world.app_token(name, by=(name, PASSWORD), expires_at=expires_at)
    credential = await world.used(Credential(name, "app_token", secret))
    await asyncio.sleep((expires_at - datetime.now(UTC)).total_seconds() + 0.05)
    return credential


@maker("refresh-by-password")
async def _refresh_by_password(world: World, name: str) -> Credential:
    await world.person(name)
    return Credential(name, "refresh_token", await world.docker_login(name, PASSWORD))


@maker("refresh-by-app-token")
async def _refresh_by_app_token(world: World, name: str) -> Credential:
    app_token = await _app_token(world, name)
    return Credential(name, "refresh_token", await world.docker_login(name, app_token.secret))


@maker("refresh-app-token-revoked")
async def _refresh_app_token_revoked(world: World, name: str) -> Credential:
    app_token = await _app_token(world, name)
    credential = Credential(name, "refresh_token",
                            await world.docker_login(name, app_token.secret))
    await world.revoke(name, app_token.secret)
    return credential


@maker("refresh-other-client")
async def _refresh_other_client(world: World, name: str) -> Credential:
    issued = await _refresh_by_password(world, name)  # to docker
    return Credential(name, "refresh_token", issued.secret, client_id="skopeo")


@maker("refresh-password-changed")
async def _refresh_password_changed(world: World, name: str) -> Credential:
    credential = await _refresh_by_password(world, name)
    await world.change_password(name)
    return credential


@maker("refresh-disabled")
async def _refresh_disabled(world: World, name: str) -> Credential:
    credential = await _refresh_by_password(world, name)
    await world.patch_as_admin(name, enabled=False)
    return credential


@maker("refresh-demoted")
async def _refresh_demoted(world: World, name: str) -> Credential:
    await world.person(name, admin=True)
    credential = Credential(name, "refresh_token", await world.docker_login(name, PASSWORD))
    await world.patch_as_admin(name, admin=False)
    return credential


@maker("refresh-signed-out")
async def _refresh_signed_out(world: World, name: str) -> Credential:
    credential = await _refresh_by_password(world, name)
    await world.sign_out_everywhere(name)
    return credential


@maker("bot-token")
async def _bot_token(world: World, name: str) -> Credential:
    return Credential(name, "app_token", await world.bot(name))


@maker("bot-token-by-owner")
async def _bot_token_by_owner(world: World, name: str) -> Credential:
    return Credential(name, "app_token", await world.bot(name, by=("owen", PASSWORD)))


@maker("disabled-bot-token")
async def _disabled_bot_token(world: World, name: str) -> Credential:
    credential = await world.used(await _bot_token(world, name))
    await world.patch_as_admin(name, enabled=False)
    return credential


@maker("session")
async def _session(world: World, name: str) -> Credential:
    await world.person(name)
    return await world.signed_in(name)


@maker("session-password-changed")
async def _session_password_changed(world: World, name: str) -> Credential:
    credential = await _session(world, name)
    await world.change_password(name)
    return credential


@maker("session-demoted")
async def _session_demoted(world: World, name: str) -> Credential:
    await world.person(name, admin=True)
    credential = await world.signed_in(name)
    await world.patch_as_admin(name, admin=False)
    return credential


@maker("session-signed-out")
async def _session_signed_out(world: World, name: str) -> Credential:
    credential = await _session(world, name)
    await world.sign_out_everywhere(name)
    return credential


@maker("session-disabled")
async def _session_disabled(world: World, name: str) -> Credential:
    credential = await _session(world, name)
    await world.patch_as_admin(name, enabled=False)
    return credential


# --- the actions, each as the credential's holder would ask --------------------------------

def _failure(response: httpx.Response) -> str:
    code, _ = error_of(response)
    return f"{response.status_code} {code}"


def _granted(response: httpx.Response, credential: Credential) -> str:
    """What the registry token in the answer grants on REPOSITORY."""
    if response.status_code != 200:
        return _failure(response)
    claims = unverified(response.json()["access_token"])
    actions = {e["name"]: e["actions"] for e in claims["access"]}.get(REPOSITORY, [])
    if actions:
        assert claims["sub"] == credential.account
    return "granted " + (",".join(sorted(actions)) or "nothing")


async def token(world: World, credential: Credential, scope: str) -> str:
    """A registry token as docker gets one: Basic for passwords and app tokens, the refresh
    grant for refresh tokens; a browser's cookies are all a session has."""
    if credential.kind == "refresh_token":
        return _granted(await world.exchange(credential.secret, credential.client_id, scope),
                        credential)
    params = {"service": world.dockyard.config.auth.service, "scope": scope}
    if credential.kind == "session":
        async with world.browser(credential) as browser:
            return _granted(await browser.get("/v2/token", params=params), credential)
    return _granted(await world.client.get(
        "/v2/token", params=params, auth=(credential.account, credential.secret)), credential)


async def pull(world: World, credential: Credential) -> str:
    return await token(world, credential, f"repository:{REPOSITORY}:pull")


async def push(world: World, credential: Credential) -> str:
    return await token(world, credential, f"repository:{REPOSITORY}:pull,push")


async def refresh(world: World, credential: Credential) -> str:
    """POST /v2/token's refresh grant: a refresh token exchanged for an access token and its
    successor (left unused: the one presented stays valid); a password or app token first
    opens a family with the password grant."""
    secret = credential.secret
    if credential.kind != "refresh_token":
        opened = await world.client.post("/v2/token", data={
            "service": world.dockyard.config.auth.service, "client_id": "docker",
            "grant_type": "password", "username": credential.account, "password": secret,
            "access_type": "offline"})
        if opened.status_code != 200:
            return _failure(opened)
        secret = opened.json()["refresh_token"]
    response = await world.exchange(secret, credential.client_id)
    if response.status_code != 200:
        return _failure(response)
    successor = response.json()["refresh_token"]
    assert successor.startswith("dyrt_")
    assert successor != secret
    return OK


def _api_auth(credential: Credential) -> dict[str, object]:
    """How the API is called: Basic with a password, Bearer with a token."""
    if credential.kind == "password":
        return {"auth": (credential.account, credential.secret)}
    return {"headers": {"Authorization": f"Bearer {credential.secret}"}}


def _portal(response: httpx.Response, done: str) -> str:
    """A portal answer: OK when a form redirects to ``done``."""
    location = response.headers.get("Location", "")
    if response.status_code == 303:
        return SIGN_IN if location.startswith("/login") else (
            OK if location == done else f"303 to {location}")
    if response.status_code == 403 and "This form has expired" in response.text:
        return STALE_FORM
    return str(response.status_code)


async def me(world: World, credential: Credential) -> str:
    """Who the credential is: ``GET /api/v1/me``, the portal's profile for a session."""
    if credential.kind == "session":
        async with world.browser(credential) as browser:
            page = await browser.get("/profile")
        if page.status_code == 200:
            return OK if f"<h1>{credential.account}</h1>" in page.text else "someone else"
        return _portal(page, "")
    response = await world.client.get("/api/v1/me", **_api_auth(credential))
    if response.status_code != 200:
        return _failure(response)
    return OK if response.json()["name"] == credential.account else "someone else"


async def create_token(world: World, credential: Credential) -> str:
    label = f"new-{uuid.uuid4().hex[:8]}"
    if credential.kind == "session":
        async with world.browser(credential) as browser:
            return _portal(await browser.post("/tokens", data={
                "csrf": credential.csrf, "label": label}), "/tokens")
    response = await world.client.post(f"/api/v1/users/{credential.account}/tokens",
                                       json={"label": label}, **_api_auth(credential))
    if response.status_code != 201:
        return _failure(response)
    assert response.json()["secret"].startswith("dyat_")
    return OK


async def revoke_token(world: World, credential: Credential) -> str:
    """Another token of the account (an admin made it) revoked; OK only once it is."""
    label = world.labels[await world.app_token(credential.account)]
    if credential.kind == "session":
        async with world.browser(credential) as browser:
            outcome = _portal(await browser.post("/tokens/revoke", data={
                "csrf": credential.csrf, "label": label}), "/tokens")
    else:
        response = await world.client.delete(
            f"/api/v1/users/{credential.account}/tokens/{label}", **_api_auth(credential))
        outcome = OK if response.status_code == 204 else _failure(response)
    listed = (await world.admin.get(f"/api/v1/users/{credential.account}/tokens")).json()
    assert {t["label"]: t["revoked"] for t in listed["items"]}[label] is (outcome == OK)
    return outcome


async def change_password(world: World, credential: Credential) -> str:
    """A new password for the credential's account; OK only once the new one signs in."""
    if credential.kind == "session":
        async with world.browser(credential) as browser:
            outcome = _portal(await browser.post("/profile", data={
                "csrf": credential.csrf, "current_password": PASSWORD,
                "password": NEW_PASSWORD, "password_again": NEW_PASSWORD}), "/profile")
    else:
        response = await world.client.patch(f"/api/v1/users/{credential.account}",
                                            json={"password": NEW_PASSWORD},
                                            **_api_auth(credential))
        outcome = OK if response.status_code == 200 else _failure(response)
    if outcome == OK:
        assert await me(world, Credential(credential.account, "password", NEW_PASSWORD)) == OK
    return outcome


async def tags(world: World, credential: Credential) -> str:
    """The private repository's tags: the API's list, the portal's repository page."""
    if credential.kind == "session":
        async with world.browser(credential) as browser:
            page = await browser.get(f"/r/{REPOSITORY}")
        return OK if page.status_code == 200 else _portal(page, "")
    response = await world.client.get("/api/v1/tags", params={"repository": REPOSITORY},
                                      **_api_auth(credential))
    if response.status_code != 200:
        return NOT_FOUND if response.status_code == 404 else _failure(response)
    assert [tag["name"] for tag in response.json()["items"]] == ["1"]
    return OK


PERFORM: dict[str, Callable[[World, Credential], Awaitable[str]]] = {
    "pull": pull, "push": push, "refresh": refresh, "me": me, "create_token": create_token,
    "revoke_token": revoke_token, "change_password": change_password, "tags": tags,
}
# Changes what the credential's other cases would see: a credential of its own each time.
CHANGES_STATE = {"change_password"}


# --- the world ---------------------------------------------------------------------------

@pytest.fixture(scope="module")
def config(tmp_path_factory: pytest.TempPathFactory) -> Config:
    return initialised(tmp_path_factory.mktemp("credentials"), "http://127.0.0.1:9",
                       sync_interval_seconds="0")


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def world(config: Config) -> AsyncIterator[World]:
    async with running_dockyard(config) as dockyard, \
            httpx.AsyncClient(base_url=dockyard.url, timeout=30) as client:
        identity = dockyard.app[IDENTITY]
        with cheap_hashing():
            for name in ("owen", "rita"):
                await identity.create_user(ADMIN, name, email="", password=PASSWORD)
        await identity.create_team(ADMIN, "crew", owner="owen")
        await identity.create_team(ADMIN, "rivals", owner="rita")
        await identity.create_namespace(ADMIN, "priv", team="crew", visibility="private")
        await seed_tag(dockyard.app, REPOSITORY, "1")
        yield World(dockyard, client)


@pytest.mark.parametrize(("credential", "action", "expected"), MATRIX)
async def test_credential_and_action(world: World, credential: str, action: str,
                                     expected: str) -> None:
    presented = await world.credential(credential, fresh=action in CHANGES_STATE)
    assert await PERFORM[action](world, presented) == expected


# --- around the matrix ---------------------------------------------------------------------

async def test_the_matrix_covers_every_credential_and_action() -> None:
    assert set(EXPECTED) == set(MAKERS)
    assert set(ACTIONS) == set(PERFORM)


async def test_another_teams_owner_gets_no_token_for_the_bot(world: World) -> None:
    """rita owns rivals, not the bot's team: to her the bot does not exist, so she can neither
    mint its tokens nor take it into her team (and then mint them)."""
    await world.bot("crewbot", by=("owen", PASSWORD))
    tokens_before = (await world.admin.get("/api/v1/users/crewbot/tokens")).json()["items"]
    rita = ("rita", PASSWORD)
    for path in ("/api/v1/users/crewbot/tokens", "/api/v1/users/nobody/tokens"):
        response = await world.client.post(path, auth=rita, json={"label": "mine"})
        assert response.status_code == 404, response.text
        assert error_of(response)[0] == "user_not_found"
    taken = await world.client.put("/api/v1/teams/rivals/members/crewbot", auth=rita,
                                   json={"role": "contributor"})
    assert taken.status_code == 404, taken.text
    after = (await world.admin.get("/api/v1/users/crewbot/tokens")).json()["items"]
    assert after == tokens_before
    team = (await world.admin.get("/api/v1/teams/rivals")).json()
    assert "crewbot" not in {member["user"] for member in team["members"]}


async def test_a_portal_cookie_is_no_api_credential(world: World) -> None:
    """The API takes only the Authorization header: a page elsewhere cannot make a signed-in
    browser call it (no cross-site request forgery through the API)."""
    session = await world.credential("session")
    async with world.browser(session) as browser:
        response = await browser.get("/api/v1/me")
    assert response.status_code == 401
    assert error_of(response)[0] == "unauthorized"
