"""GitHub sign-in: the pure parts (groups, the organisation/team restriction), and the OAuth flow
against a FAKE GitHub — a small aiohttp app in this file serving the token endpoint and the
three REST calls Dockyard makes (there is no real GitHub to test against here)."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Self
from urllib.parse import parse_qs, urlsplit

import pytest
from aiohttp import web

from services.auth.access import IDENTITY
from services.auth.directory_app import DIRECTORY
from services.auth.github import github_groups, may_sign_in
from services.auth.oidc import pkce_challenge
from services.auth.policy import Principal
from services.core.config import ConfigError, OidcProviderConfig, load_config
from services.core.errors import Forbidden, Unauthorized
from tests.support.dockyard import Dockyard, initialised, running_dockyard
from tests.support.registry import free_port

ADMIN = Principal("admin", "user", admin=True)
ORGS: list[dict[str, object]] = [{"login": "Acme"}, {"login": "other"}]
TEAMS: list[dict[str, object]] = [{"slug": "Web", "organization": {"login": "Acme"}},
         {"slug": "ops", "organization": {"login": "third"}}]


def test_groups_are_orgs_and_org_slash_team_lower_cased() -> None:
    assert github_groups(ORGS, TEAMS) == {"acme", "other", "third", "acme/web", "third/ops"}
    assert github_groups([], []) == frozenset()


@pytest.mark.parametrize(("orgs", "teams", "users", "allowed"), [
    ((), (), (), False),                  # nothing allowed admits nobody
    (("acme",), (), (), True),
    (("ACME",), (), (), True),            # GitHub names are case-insensitive
    (("nope",), (), (), False),
    ((), ("acme/web",), (), True),
    ((), ("acme/ops",), (), False),
    (("nope",), ("third/ops",), (), True),  # any list admits
    ((), (), ("octo-cat",), True),        # the login, in any case
    ((), (), ("someone",), False),
])
def test_may_sign_in(
    orgs: tuple[str, ...], teams: tuple[str, ...], users: tuple[str, ...], allowed: bool
) -> None:
    settings = OidcProviderConfig.model_construct(
        kind="github", client_id="x", organizations=list(orgs), github_teams=list(teams),
        github_users=list(users))
    assert may_sign_in(github_groups(ORGS, TEAMS), "Octo-Cat", settings) is allowed


def test_a_github_provider_needs_an_allow_list(tmp_path: Path) -> None:
    """Issue 15: with no organisation configured every GitHub user could sign in."""
    (tmp_path / "dockyard.toml").write_text(
        '[webhook]\nsecret = "0123456789abcdef"\n[oidc.github]\nkind = "github"\n'
        'client_id = "gh"\n')
    with pytest.raises(ConfigError, match=r"oidc\.github: .*needs organizations, github_teams"
                       r" or github_users"):
        load_config(tmp_path / "dockyard.toml", env={})


class FakeGithub:
    """A FAKE of github.com's OAuth endpoints and REST API: just what Dockyard calls."""

    def __init__(self) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.codes: dict[str, str] = {}  # code → the PKCE challenge it was issued for
        self.token_requests: list[dict[str, str]] = []
        self.orgs: list[dict[str, object]] = list(ORGS)
        self.teams: list[dict[str, object]] = list(TEAMS)
        app = web.Application()
        app.router.add_post("/login/oauth/access_token", self._token)
        app.router.add_get("/api/user", self._user)
        app.router.add_get("/api/user/orgs", self._orgs)
        app.router.add_get("/api/user/teams", self._teams)
        app.router.add_get("/api/user/emails", self._emails)
        self.emails: list[dict[str, object]] = [
            {"email": "octo@acme.test", "primary": True, "verified": True}]
        self._runner = web.AppRunner(app)

    async def __aenter__(self) -> Self:
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()
        return self

    async def __aexit__(self, *_: object) -> None:
        await self._runner.cleanup()

    async def _token(self, request: web.Request) -> web.Response:
        form = dict(await request.post())
        self.token_requests.append({k: str(v) for k, v in form.items()})
        challenge = self.codes.pop(str(form.get("code")), None)
        if challenge is None or pkce_challenge(str(form.get("code_verifier"))) != challenge:
            return web.json_response({"error": "bad_verification_code"})
        return web.json_response({"access_token": "gho_fake", "token_type": "bearer"})

    async def _orgs(self, request: web.Request) -> web.Response:
        return self._page(request, self.orgs)

    async def _teams(self, request: web.Request) -> web.Response:
        return self._page(request, self.teams)

    async def _emails(self, request: web.Request) -> web.Response:
        return self._page(request, self.emails)

    @staticmethod
    def _page(request: web.Request, items: list[dict[str, object]]) -> web.Response:
        """As GitHub pages a list: ``per_page`` (default 30, at most 100), ``page``, and a
        Link header pointing at the next page."""
        per_page = min(int(request.query.get("per_page", "30")), 100)
        page = int(request.query.get("page", "1"))
        response = web.json_response(items[(page - 1) * per_page:page * per_page])
        if page * per_page < len(items):
            following = request.url.update_query(page=page + 1)
            response.headers["Link"] = f'<{following}>; rel="next"'
        return response

    async def _user(self, request: web.Request) -> web.Response:
        if request.headers.get("Authorization") != "Bearer gho_fake":
            return web.json_response({"message": "Bad credentials"}, status=401)
        return web.json_response({"id": 4242, "login": "Octo-Cat", "email": "octo@acme.test"})


@pytest.fixture
async def github() -> AsyncIterator[FakeGithub]:
    async with FakeGithub() as fake:
        yield fake


async def start(tmp_path: Path, github: FakeGithub, extra: str) -> AsyncIterator[Dockyard]:
    data = tmp_path / "data"
    await asyncio.to_thread(initialised, data, "http://127.0.0.1:9")  # it runs its own loop
    with (data / "dockyard.toml").open("a") as toml:
        toml.write(f"""
[oidc.github]
kind = "github"
client_id = "gh-client"
client_secret = "gh-secret"
authorize_url = "{github.url}/login/oauth/authorize"
token_url = "{github.url}/login/oauth/access_token"
api_url = "{github.url}/api"
{extra}
[[oidc.github.groups]]
group = "acme/web"
team = "web"
role = "contributor"
""")
    async with running_dockyard(load_config(data / "dockyard.toml", env={})) as running:
        await running.app[IDENTITY].create_team(ADMIN, "web", owner="admin")
        yield running


async def authorize(github: FakeGithub, url: str, code: str = "code-1") -> dict[str, str]:
    """What github.com does when the person approves: a code bound to the PKCE challenge."""
    sent = {key: values[0] for key, values in parse_qs(urlsplit(url).query).items()}
    github.codes[code] = sent["code_challenge"]
    return {"code": code, "state": sent["state"]}


async def test_sign_in_maps_teams(tmp_path: Path, github: FakeGithub) -> None:
    async for dockyard in start(tmp_path, github, 'organizations = ["acme"]'):
        providers = dockyard.app[DIRECTORY].providers
        url, pending = await providers.begin("github")
        assert url.startswith(f"{github.url}/login/oauth/authorize?")
        user = await providers.finish("github", pending, await authorize(github, url))
        assert user.name == "octo-cat"
        assert user.email == "octo@acme.test"
        members = {m.user: m.role for m in await dockyard.app[IDENTITY].members(ADMIN, "web")}
        assert members["octo-cat"] == "contributor"
        # a rename on GitHub keeps the account: it is linked by the numeric id
        link = await dockyard.app[DIRECTORY].directory.links.by_external_id("oidc:github",
                                                                           "4242")
        assert link is not None
        assert link.name == "octo-cat"


async def test_teams_on_later_pages_count(tmp_path: Path, github: FakeGithub) -> None:
    """Someone in many teams: the mapped one is on the third page of 100."""
    github.teams = [{"slug": f"t{n}", "organization": {"login": "big"}} for n in range(250)]
    github.teams.append({"slug": "web", "organization": {"login": "acme"}})
    async for dockyard in start(tmp_path, github, 'organizations = ["acme"]'):
        providers = dockyard.app[DIRECTORY].providers
        url, pending = await providers.begin("github")
        user = await providers.finish("github", pending, await authorize(github, url))
        members = {m.user: m.role for m in await dockyard.app[IDENTITY].members(ADMIN, "web")}
        assert members[user.name] == "contributor"


async def test_organisation_restriction(tmp_path: Path, github: FakeGithub) -> None:
    async for dockyard in start(tmp_path, github, 'organizations = ["initech"]'):
        providers = dockyard.app[DIRECTORY].providers
        url, pending = await providers.begin("github")
        with pytest.raises(Forbidden) as caught:
            await providers.finish("github", pending, await authorize(github, url))
        assert caught.value.code == "not_a_member"
        assert await dockyard.app[IDENTITY].store.get_user("octo-cat") is None


async def test_leaving_the_allowed_organisation_suspends_the_account(
    tmp_path: Path, github: FakeGithub
) -> None:
    async for dockyard in start(tmp_path, github, 'organizations = ["acme"]'):
        providers = dockyard.app[DIRECTORY].providers
        url, pending = await providers.begin("github")
        await providers.finish("github", pending, await authorize(github, url))
        github.orgs, github.teams = [{"login": "other"}], []
        url, pending = await providers.begin("github")
        with pytest.raises(Forbidden) as caught:
            await providers.finish("github", pending, await authorize(github, url, "code-2"))
        assert caught.value.code == "not_a_member"
        found = await dockyard.app[IDENTITY].store.get_user("octo-cat")
        assert found is not None
        assert not found[0].enabled  # and with it, its app tokens


async def test_a_code_without_its_verifier_is_refused(tmp_path: Path, github: FakeGithub) -> None:
    async for dockyard in start(tmp_path, github, 'github_users = ["octo-cat"]'):
        providers = dockyard.app[DIRECTORY].providers
        url, pending = await providers.begin("github")
        callback = await authorize(github, url)
        _, other = await providers.begin("github")
        with pytest.raises(Unauthorized) as caught:  # another sign-in's state
            await providers.finish("github", other, callback)
        assert caught.value.code == "invalid_login_state"
        # The right state but another verifier: the (fake) provider refuses the code.
        stolen = dataclasses.replace(pending, verifier=other.verifier)
        with pytest.raises(Unauthorized) as caught:
            await providers.finish("github", stolen, callback)
        assert caught.value.code == "token_exchange_failed"
        assert github.token_requests[-1]["code_verifier"] == other.verifier
