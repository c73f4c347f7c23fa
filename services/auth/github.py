"""Portal sign-in with GitHub (OAuth 2.0 web application flow; GitHub is not an OIDC provider).

The browser goes to ``authorize_url`` with ``state`` and a PKCE challenge and comes back with a
code, which is exchanged at ``token_url`` for an access token; the account is then read from
the REST API (``GET /user``, ``/user/orgs``, ``/user/teams``, ``/user/emails``; scopes
``read:org user:email``). Groups are the organisations (``acme``) and teams (``acme/web``) the
user belongs to, mapped to Dockyard teams like LDAP groups; ``organizations`` /
``github_teams`` / ``github_users`` say who may sign in at all (one of them is required:
GitHub admits anyone).
GitHub logins are case-insensitive, so the account name is the login lower-cased; the account
is linked by GitHub's numeric user id, which survives a rename.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any
from urllib.parse import urlencode

import httpx

from services.auth.directory import Directory, Identity
from services.auth.models import User
from services.auth.oidc import (
    PendingLogin,
    ProviderUnavailable,
    check_return,
    pkce_challenge,
    rules_of,
)
from services.core.config import OidcProviderConfig
from services.core.errors import Forbidden, Unauthorized

__all__ = ["GithubProvider", "github_groups", "may_sign_in"]

# GitHub's list endpoints return 30 items a page unless asked (at most 100), and say where the
# next page is in a Link header (docs.github.com, "Using pagination in the REST API"). Every
# page is read: a group missed would make the sync remove a membership.
PER_PAGE = 100
MAX_PAGES = 10


def github_groups(orgs: Iterable[Mapping[str, Any]],
                  teams: Iterable[Mapping[str, Any]]) -> frozenset[str]:
    """``org`` for each organisation and ``org/team-slug`` for each team (lower-cased)."""
    groups = {str(org.get("login", "")).lower() for org in orgs}
    for team in teams:
        org = str((team.get("organization") or {}).get("login", "")).lower()
        groups.add(org)
        groups.add(f"{org}/{str(team.get('slug', '')).lower()}")
    groups.discard("")
    return frozenset(groups)


def may_sign_in(groups: frozenset[str], login: str, settings: OidcProviderConfig) -> bool:
    """A member of one of the allowed organisations or teams, or an allowed login. Nothing
    allowed admits nobody (the configuration refuses that: GitHub itself admits anyone)."""
    allowed = {name.lower() for name in (*settings.organizations, *settings.github_teams)}
    return bool(allowed & groups) or login.lower() in {
        user.lower() for user in settings.github_users}


class GithubProvider:
    def __init__(self, name: str, settings: OidcProviderConfig, redirect_uri: str,
                 directory: Directory, http: httpx.AsyncClient) -> None:
        self.name = name
        self.display_name = settings.display_name or "GitHub"
        self.settings = settings
        self.redirect_uri = redirect_uri
        self._directory = directory
        self._http = http

    async def begin(self) -> tuple[str, PendingLogin]:
        pending = PendingLogin.new(self.name)
        query = urlencode({
            "client_id": self.settings.client_id,
            "redirect_uri": self.redirect_uri,
            "scope": "read:org user:email",
            "state": pending.state,
            "code_challenge": pkce_challenge(pending.verifier),
            "code_challenge_method": "S256",
        })
        return f"{self.settings.authorize_url}?{query}", pending

    async def finish(self, pending: PendingLogin, query: Mapping[str, str]) -> User:
        code = check_return(pending, self.name, query)
        answer = await self._call("POST", self.settings.token_url, data={
            "client_id": self.settings.client_id, "client_secret": self.settings.client_secret,
            "code": code, "redirect_uri": self.redirect_uri, "code_verifier": pending.verifier,
        }, headers={"Accept": "application/json"})
        token = answer.get("access_token") if isinstance(answer, dict) else None
        if not isinstance(token, str):
            raise Unauthorized("token_exchange_failed", "GitHub did not accept the code")
        headers = {"Authorization": f"Bearer {token}",
                   "Accept": "application/vnd.github+json"}
        api = self.settings.api_url.rstrip("/")
        profile = await self._call("GET", f"{api}/user", headers=headers)
        if not isinstance(profile, dict) or "id" not in profile or "login" not in profile:
            raise Unauthorized("github_api", "GitHub did not say who signed in")
        groups = github_groups(await self._list(f"{api}/user/orgs", headers),
                               await self._list(f"{api}/user/teams", headers))
        source = f"oidc:{self.name}"
        if not may_sign_in(groups, str(profile["login"]), self.settings):
            # GitHub says they are no longer allowed: their account (and tokens) stop too.
            link = await self._directory.links.by_external_id(source, str(profile["id"]))
            if link is not None:
                await self._directory.suspend(link.name, source, "not allowed by GitHub")
            raise Forbidden("not_a_member", "your GitHub account is not in an organisation or"
                            " team allowed to sign in here")
        email = str(profile.get("email") or "")
        # Which of the account's emails GitHub verified (scope user:email).
        verified = {str(item.get("email", "")).casefold()
                    for item in await self._list(f"{api}/user/emails", headers)
                    if item.get("verified") is True}
        identity = Identity(source, str(profile["id"]),
                            str(profile["login"]).lower(), email, groups,
                            email_verified=email.casefold() in verified)
        user = await self._directory.apply(identity, rules_of(self.settings))
        if not user.enabled:
            raise Forbidden("account_disabled", f"the account {user.name!r} is disabled")
        return user

    async def _call(self, method: str, url: str, **options: Any) -> Any:
        """The JSON GitHub answers; Unauthorized when it refuses, 503 when unreachable."""
        return (await self._send(method, url, **options))[0]

    async def _list(self, url: str, headers: dict[str, str]) -> list[Mapping[str, Any]]:
        """Every item of a paginated list endpoint, following its ``next`` links."""
        items: list[Mapping[str, Any]] = []
        page: str | None = f"{url}?per_page={PER_PAGE}"
        for _ in range(MAX_PAGES):
            if page is None:
                return items
            body, response = await self._send("GET", page, headers=headers)
            items.extend(item for item in (body if isinstance(body, list) else [])
                         if isinstance(item, dict))
            page = response.links.get("next", {}).get("url")
        if page is not None:
            raise Forbidden("too_many_groups", f"GitHub lists more than"
                            f" {PER_PAGE * MAX_PAGES} at {url}; Dockyard cannot map them all")
        return items

    async def _send(self, method: str, url: str, **options: Any) -> tuple[Any, httpx.Response]:
        try:
            response = await self._http.request(method, url, **options)
        except httpx.HTTPError as exc:
            raise ProviderUnavailable("provider_unavailable", f"GitHub cannot be reached"
                                      f" ({type(exc).__name__})") from None
        try:
            body = response.json()
        except ValueError:
            body = None
        if not response.is_success:
            raise Unauthorized("github_api", f"GitHub refused {url}: {response.status_code}")
        return body, response
