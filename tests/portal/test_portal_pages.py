"""The portal's pages through HTTP, as a browser without JavaScript uses them.

The catalog is seeded through the catalog store's ``apply`` with the operations the catalog
consumer would derive from registry events; accounts, teams and namespaces through
IdentityService, as the API and CLI make them.
"""

from __future__ import annotations

import asyncio
import csv
import io
import json
from datetime import UTC, datetime
from pathlib import Path

import pytest
from aiohttp import ClientSession, web
from aiohttp.test_utils import TestServer

from services.auth.access import AUTHENTICATOR, IDENTITY
from services.auth.policy import Principal
from services.core.config import Config
from services.ingest.api import CATALOG_STORE
from services.ingest.models import PutManifest, PutTag
from services.scanner.api import SCAN_STORE
from services.scanner.models import Distribution, Finding, Inventory, Package, Severity
from services.search.api import SEARCH_INDEX
from services.server import build_app
from tests.portal.conftest import (
    ADMIN,
    DIGEST_A,
    DIGEST_B,
    DIGEST_SIG,
    OCI,
    PASSWORD,
    browser,
    csrf_of,
    make_user,
    seed_tag,
    sign_in,
    team_namespace,
    visiting,
)
from tests.support.dockyard import initialised
from tests.support.registry import free_port


async def form_post(client: ClientSession, page: str, action: str,
                    data: dict[str, str]) -> tuple[int, str]:
    """Open ``page``, take its form token, post ``data`` to ``action``; status and HTML."""
    token = csrf_of(await (await client.get(page)).text())
    response = await client.post(action, data={**data, "csrf": token})
    return response.status, await response.text()


async def test_every_page_opens_for_an_admin(admin: ClientSession, app: web.Application) -> None:
    await make_user(app, "alice")
    for path in ("/", "/explore", "/teams", "/tokens", "/namespaces", "/profile", "/activity",
                 "/admin/users", "/admin/bots", "/n/alice", "/explore?q=a&partial=1"):
        response = await admin.get(path)
        assert response.status == 200, (path, await response.text())
    response = await admin.get("/admin/health")
    assert response.status == 503  # no registry listens here
    assert "failing" in await response.text()


# signing in -----------------------------------------------------------------------------------


async def test_sign_in_sets_a_session_cookie_that_scripts_cannot_read(
        anonymous: ClientSession) -> None:
    page = await anonymous.get("/login")
    token = csrf_of(await page.text())
    response = await anonymous.post("/login", allow_redirects=False, data={
        "username": "admin", "password": "correct-horse-battery-staple", "csrf": token,
        "next": "/teams"})
    assert response.status == 303
    assert response.headers["Location"] == "/teams"
    cookie = response.cookies["dockyard_session"]
    assert cookie["httponly"] is True
    assert cookie["samesite"] == "Lax"
    assert not cookie["secure"]  # the external URL is http here
    assert len(cookie.value) >= 43  # 256 random bits


async def test_wrong_password_says_so_and_signs_nobody_in(anonymous: ClientSession) -> None:
    page = await anonymous.get("/login")
    response = await anonymous.post("/login", data={
        "username": "admin", "password": "wrong-password", "csrf": csrf_of(await page.text())})
    assert response.status == 401
    assert "Wrong username or password." in await response.text()
    assert (await anonymous.get("/", allow_redirects=False)).headers["Location"] == "/explore"


async def test_a_locked_account_is_told_for_how_long(
        anonymous: ClientSession, app: web.Application) -> None:
    await make_user(app, "alice")
    token = csrf_of(await (await anonymous.get("/login")).text())
    for _ in range(10):  # [auth] max_failed_logins
        response = await anonymous.post("/login", data={
            "username": "alice", "password": "not-her-password", "csrf": token})
        assert response.status == 401
    response = await anonymous.post("/login", data={
        "username": "alice", "password": PASSWORD, "csrf": token})
    text = await response.text()
    assert response.status == 401
    assert "locked after too many failed sign-ins. Try again in 10 minutes" in text


async def test_a_locked_name_reads_the_same_whether_or_not_it_has_an_account(
        anonymous: ClientSession, app: web.Application) -> None:
    """Found by the attacker's review (issue 15): names without an account are locked like
    accounts (services/auth/lockout.py), but the sign-in page said "locked" only for accounts,
    so ten guesses told which names exist."""
    await make_user(app, "alice")
    token = csrf_of(await (await anonymous.get("/login")).text())
    answers = []
    for name in ("alice", "nobody-here"):
        for _ in range(10):  # [auth] max_failed_logins
            await anonymous.post("/login", data={
                "username": name, "password": "not-the-password", "csrf": token})
        response = await anonymous.post("/login", data={
            "username": name, "password": "not-the-password", "csrf": token})
        answers.append((response.status, (await response.text()).replace(name, "NAME")))
    assert answers[0] == answers[1]
    assert "locked after too many failed sign-ins" in answers[0][1]


async def test_application_tokens_do_not_sign_in_to_the_portal(
        anonymous: ClientSession, app: web.Application) -> None:
    await make_user(app, "alice")
    _, secret = await app[IDENTITY].create_token(ADMIN, "alice", "ci")
    token = csrf_of(await (await anonymous.get("/login")).text())
    response = await anonymous.post("/login", data={
        "username": "alice", "password": secret, "csrf": token})
    assert response.status == 401


async def test_sign_out_ends_the_session_for_good(
        anonymous: ClientSession, server: TestServer) -> None:
    await sign_in(anonymous, "admin", "correct-horse-battery-staple")
    session = anonymous.cookie_jar.filter_cookies(server.make_url("/"))["dockyard_session"].value
    status, _ = await form_post(anonymous, "/", "/logout", {})
    assert status == 200  # followed to the sign-in page
    async with browser(server) as thief:  # the old cookie, replayed, opens nothing
        thief.cookie_jar.update_cookies({"dockyard_session": session})
        response = await thief.get("/tokens", allow_redirects=False)
        assert response.status == 303
        assert response.headers["Location"].startswith("/login")


async def test_disabling_an_account_signs_it_out(
        admin: ClientSession, server: TestServer, app: web.Application) -> None:
    await make_user(app, "alice")
    async with browser(server) as alice:
        await sign_in(alice, "alice", PASSWORD)
        assert (await alice.get("/tokens")).status == 200
        status, _ = await form_post(admin, "/admin/users", "/admin/users/alice",
                                    {"action": "disable"})
        assert status == 200
        response = await alice.get("/tokens", allow_redirects=False)
        assert response.status == 303
    users = await app[IDENTITY].users(ADMIN, after=None, limit=10)
    assert not next(u for u in users if u.name == "alice").enabled


async def test_a_password_change_demotion_or_signing_out_everywhere_ends_sessions(
        server: TestServer, app: web.Application) -> None:
    """Each moves the account's credential epoch on; its sessions end at their next request,
    in every browser (not the session of the admin who made the change)."""
    await make_user(app, "alice", admin=True)
    identity = app[IDENTITY]
    changes = [
        lambda: identity.set_admin(ADMIN, "alice", admin=False),
        lambda: identity.change_password(ADMIN, "alice", PASSWORD),
        lambda: identity.sign_out_everywhere(ADMIN, "alice"),
    ]
    for change in changes:
        async with browser(server) as alice, browser(server) as other:
            await sign_in(alice, "alice", PASSWORD)
            await sign_in(other, "alice", PASSWORD)
            assert (await alice.get("/tokens")).status == 200
            await change()
            for client in (alice, other):
                response = await client.get("/tokens", allow_redirects=False)
                assert response.status == 303, change
                assert response.headers["Location"].startswith("/login")
            await sign_in(alice, "alice", PASSWORD)  # a new session is of the new epoch
            assert (await alice.get("/tokens", allow_redirects=False)).status == 200


async def test_a_new_password_needs_the_current_one_once_the_sign_in_is_not_recent(
        tmp_path: Path) -> None:
    """[portal] reauthenticate_seconds = 0: no sign-in is recent enough."""
    config = await asyncio.to_thread(  # initialised runs an event loop of its own
        initialised, tmp_path / "data", f"http://127.0.0.1:{free_port()}",
        sync_interval_seconds="0", portal_reauthenticate_seconds="0")
    server = TestServer(build_app(config))
    await server.start_server()
    try:
        app = server.app
        await make_user(app, "alice")
        async with browser(server) as alice:
            await sign_in(alice, "alice", PASSWORD)
            new = {"password": "a-new-password-1", "password_again": "a-new-password-1"}
            for current, says in (("", "type your current password"),
                                  ("wrong-password", "current password is not that")):
                status, page = await form_post(alice, "/profile", "/profile",
                                               {**new, "current_password": current})
                assert (status, says in page) == (403, True), page
            assert (await app[AUTHENTICATOR].authenticate("alice", PASSWORD)).name == "alice"
            status, page = await form_post(alice, "/profile", "/profile",
                                           {**new, "current_password": PASSWORD})
            assert status == 200, page
            assert (await app[AUTHENTICATOR].authenticate("alice", "a-new-password-1")).name
    finally:
        await server.close()


async def test_wrong_current_passwords_spend_the_addresss_failure_budget(
        tmp_path: Path) -> None:
    """A signed-in session guessing its account's password is throttled like a sign-in."""
    config = await asyncio.to_thread(
        initialised, tmp_path / "data", f"http://127.0.0.1:{free_port()}",
        sync_interval_seconds="0", portal_reauthenticate_seconds="0",
        auth_max_failed_logins_per_address="2")
    server = TestServer(build_app(config))
    await server.start_server()
    try:
        await make_user(server.app, "alice")
        async with browser(server) as alice:
            await sign_in(alice, "alice", PASSWORD)
            new = {"password": "a-new-password-1", "password_again": "a-new-password-1"}
            statuses = [(await form_post(alice, "/profile", "/profile",
                                         {**new, "current_password": f"guess-{i}"}))[0]
                        for i in range(3)]
            assert statuses == [403, 403, 429]
    finally:
        await server.close()


async def test_a_recent_sign_in_changes_the_password_without_the_current_one(
        anonymous: ClientSession, app: web.Application) -> None:
    await make_user(app, "alice")
    await sign_in(anonymous, "alice", PASSWORD)
    status, page = await form_post(anonymous, "/profile", "/profile", {
        "password": "a-new-password-1", "password_again": "a-new-password-1"})
    assert status == 200, page
    assert (await app[AUTHENTICATOR].authenticate("alice", "a-new-password-1")).name == "alice"


# CSRF -----------------------------------------------------------------------------------------


async def test_forms_without_their_token_are_refused_and_change_nothing(
        admin: ClientSession, anonymous: ClientSession, app: web.Application) -> None:
    response = await admin.post("/tokens", data={"label": "sneaky"})
    assert response.status == 403
    assert "did not come from this site" in await response.text()
    response = await admin.post("/tokens", data={"label": "sneaky", "csrf": "forged"})
    assert response.status == 403
    assert await app[IDENTITY].tokens(ADMIN, "admin") == []
    # Another browser's token is no good either: tokens belong to their session.
    await sign_in(anonymous, "admin", "correct-horse-battery-staple")
    other = csrf_of(await (await anonymous.get("/tokens")).text())
    mine = csrf_of(await (await admin.get("/tokens")).text())
    assert other != mine
    response = await admin.post("/tokens", data={"label": "sneaky", "csrf": other})
    assert response.status == 403
    assert await app[IDENTITY].tokens(ADMIN, "admin") == []


async def test_the_sign_in_form_needs_its_token_too(anonymous: ClientSession) -> None:
    response = await anonymous.post("/login", data={
        "username": "admin", "password": "correct-horse-battery-staple"})
    assert response.status == 403
    assert "dockyard_session" not in {c.key for c in anonymous.cookie_jar}


# error pages ---------------------------------------------------------------------------------


async def test_portal_errors_are_pages_and_api_errors_stay_json(
        admin: ClientSession) -> None:
    response = await admin.get("/no/such/page")
    assert response.status == 404
    assert response.content_type == "text/html"
    assert "404 · Not found" in await response.text()
    response = await admin.get("/r/team/nothing-here")
    assert response.status == 404
    assert "There is no repository named" in await response.text()
    response = await admin.get("/api/v1/no-such-thing")
    assert response.status == 404
    assert response.content_type == "application/json"


async def test_admin_pages_are_refused_to_others(
        anonymous: ClientSession, app: web.Application) -> None:
    await make_user(app, "alice")
    await sign_in(anonymous, "alice", PASSWORD)
    for path in ("/admin/users", "/admin/bots", "/admin/health"):
        response = await anonymous.get(path)
        assert response.status == 403, path
        assert "This page is for administrators." in await response.text()
    status, _ = await form_post(anonymous, "/tokens", "/admin/users",
                                {"name": "mallory", "password": "whatever-long"})
    assert status == 403
    assert await app[IDENTITY].store.get_user("mallory") is None


async def test_every_page_carries_a_strict_content_security_policy(
        admin: ClientSession) -> None:
    for path in ("/", "/explore", "/login", "/missing"):
        response = await admin.get(path)
        policy = response.headers["Content-Security-Policy"]
        assert "script-src 'self'" in policy
        assert "'unsafe-inline'" not in policy
        assert response.headers["X-Frame-Options"] == "DENY"


# who sees what ---------------------------------------------------------------------------------


async def test_a_private_namespace_is_invisible_to_outsiders(
        anonymous: ClientSession, app: web.Application) -> None:
    await make_user(app, "alice")
    await make_user(app, "bob")
    await team_namespace(app, "alice", "secret", "private")
    await seed_tag(app, "secret/app", "1.0")
    await sign_in(anonymous, "bob", PASSWORD)
    for path in ("/n/secret", "/r/secret/app", "/r/secret/app/-/tags/1.0"):
        response = await anonymous.get(path)
        assert response.status == 404, path
    explore = await (await anonymous.get("/explore")).text()
    assert "secret/app" not in explore
    search = await (await anonymous.get("/explore?q=app")).text()
    assert "secret/app" not in search


async def test_anonymous_visitors_see_public_namespaces_only(
        anonymous: ClientSession, app: web.Application) -> None:
    await make_user(app, "alice")
    await team_namespace(app, "alice", "open", "public", "Open *source*")
    await team_namespace(app, "alice", "inside", "protected")
    await seed_tag(app, "open/tool", "1.0")
    await seed_tag(app, "inside/tool", "1.0")
    text = await (await anonymous.get("/explore")).text()
    assert "open/tool" in text
    assert "inside/tool" not in text
    assert (await anonymous.get("/n/open")).status == 200
    assert "<em>source</em>" in await (await anonymous.get("/n/open")).text()
    assert (await anonymous.get("/r/inside/tool")).status == 404


@pytest.fixture
def closed_config(tmp_path: Path) -> Config:
    return initialised(tmp_path / "closed", f"http://127.0.0.1:{free_port()}",
                       sync_interval_seconds="0", portal_anonymous_explore="false")


async def test_explore_needs_sign_in_when_anonymous_explore_is_off(
        closed_config: Config) -> None:
    async with visiting(closed_config) as visitor:
        response = await visitor.get("/explore", allow_redirects=False)
        assert response.status == 303
        assert response.headers["Location"] == "/login?next=/explore"
        response = await visitor.get("/", allow_redirects=False)
        assert response.headers["Location"] == "/login"


# XSS ------------------------------------------------------------------------------------------


async def test_script_in_a_description_and_in_names_is_inert(
        admin: ClientSession, app: web.Application) -> None:
    await make_user(app, "alice")
    attack = '<script>alert("x")</script><img src=x onerror=alert(1)>[a](javascript:alert(2))'
    await team_namespace(app, "alice", "web", "public", attack)
    await app[IDENTITY].create_team(ADMIN, "evil", owner="alice",
                                    description='"><script>alert(3)</script>')
    await seed_tag(app, "web/app", "latest")
    page = await (await admin.get("/n/web")).text()
    assert "<script>alert" not in page
    assert "<img src=x" not in page
    assert 'href="javascript' not in page
    assert "&lt;script&gt;" in page
    teams = await (await admin.get("/teams")).text()
    assert "<script>alert(3)" not in teams
    assert "&#34;&gt;&lt;script&gt;" in teams


async def test_a_namespace_description_saved_through_the_form_renders_inert(
        admin: ClientSession, app: web.Application) -> None:
    await team_namespace(app, "admin", "docs", "protected")
    status, page = await form_post(admin, "/n/docs", "/n/docs", {
        "visibility": "public", "description": "**bold** <script>alert(1)</script>"})
    assert status == 200
    assert "<strong>bold</strong>" in page
    assert "<script>alert(1)" not in page
    namespace = await app[IDENTITY].get_namespace(ADMIN, "docs")
    assert namespace.visibility == "public"


# repository, tag, delete ------------------------------------------------------------------------


async def test_repository_page_shows_tags_commands_and_marks(
        admin: ClientSession, app: web.Application, server: TestServer) -> None:
    await team_namespace(app, "admin", "charts", "public")
    await seed_tag(app, "charts/web", "1.0", DIGEST_A, kind="helm_chart",
                   artifact_type="application/vnd.cncf.helm.config.v1+json")
    await seed_tag(app, "charts/web", "latest", DIGEST_A, kind="helm_chart",
                   artifact_type="application/vnd.cncf.helm.config.v1+json")
    await seed_tag(app, "charts/web", "", DIGEST_SIG, kind="signature", subject=DIGEST_A)
    await seed_tag(app, "charts/web", "2.0", DIGEST_B)
    page = await (await admin.get("/r/charts/web")).text()
    assert "helm pull oci://" in page
    assert "application/vnd.cncf.helm.config.v1+json" in page  # the artifact type
    assert "/charts/web --version 1.0" in page
    assert "docker pull " in page
    assert "/charts/web:2.0" in page
    assert "sha256:aaaaaaaaaaaa" in page
    assert "linux/arm64/v8" in page
    assert "2.0 KiB" in page
    # Both tags of the manifest a signature refers to, saying no more than that.
    assert page.count(">signature present (not verified)</span>") == 2
    assert ">signed<" not in page
    tag = await (await admin.get("/r/charts/web/-/tags/1.0")).text()
    assert DIGEST_A in tag
    assert "The registry did not give the manifest" in tag  # no registry runs here


async def test_the_global_namespace_has_a_page_its_repositories_link_to(
        admin: ClientSession, anonymous: ClientSession, app: web.Application) -> None:
    await seed_tag(app, "nginx", "1.27")
    repository = await (await admin.get("/r/nginx")).text()
    assert '<a href="/n/">the global namespace</a>' in repository
    page = await admin.get("/n/")
    text = await page.text()
    assert page.status == 200, text
    assert "Global namespace" in text
    assert '<a href="/r/nginx">nginx</a>' in text
    status, text = await form_post(admin, "/n/", "/n/", {"visibility": "public",
                                                         "description": "Base *images*"})
    assert status == 200, text
    assert "<em>images</em>" in text
    namespaces = await app[IDENTITY].store.namespaces(None, [""])
    assert namespaces[0][0].visibility == "public"
    # Public now: visitors see it too (anonymous explore is on by default), but cannot change it.
    assert (await anonymous.get("/n/")).status == 200
    await make_user(app, "alice")
    await sign_in(anonymous, "alice", PASSWORD)
    status, text = await form_post(anonymous, "/n/", "/n/", {"visibility": "protected"})
    assert status == 403, text


async def test_delete_confirmation_names_the_tags_that_go_with_it(
        admin: ClientSession, app: web.Application) -> None:
    await team_namespace(app, "admin", "team", "private")
    await seed_tag(app, "team/app", "1.0", DIGEST_A)
    await seed_tag(app, "team/app", "latest", DIGEST_A)
    await seed_tag(app, "team/app", "2.0", DIGEST_B)
    page = await (await admin.get("/r/team/app/-/tags/latest/delete")).text()
    assert "will be deleted too: <strong>1.0</strong>" in page
    assert "Delete 2 tags" in page
    alone = await (await admin.get("/r/team/app/-/tags/2.0/delete")).text()
    assert "No other tag points at it." in alone


async def test_delete_refuses_a_stale_digest_and_those_without_the_right(
        admin: ClientSession, anonymous: ClientSession, app: web.Application) -> None:
    await make_user(app, "viewer")
    await team_namespace(app, "admin", "team", "protected")
    await seed_tag(app, "team/app", "1.0", DIGEST_A)
    status, page = await form_post(admin, "/r/team/app/-/tags/1.0/delete",
                                   "/r/team/app/-/tags/1.0/delete", {"digest": DIGEST_B})
    assert status == 400
    assert "no longer points at" in page
    await sign_in(anonymous, "viewer", PASSWORD)
    page = await (await anonymous.get("/r/team/app/-/tags/1.0/delete")).text()
    assert "You may not delete from team/app" in page
    status, page = await form_post(anonymous, "/r/team/app", "/r/team/app/-/tags/1.0/delete",
                                   {"digest": DIGEST_A})
    assert status == 403
    assert await app[CATALOG_STORE].tag_digests("team/app") == {"1.0": DIGEST_A}


# teams, namespaces, tokens, profile --------------------------------------------------------------


async def test_a_user_builds_a_team_and_a_namespace(
        anonymous: ClientSession, app: web.Application) -> None:
    await make_user(app, "alice")
    await make_user(app, "bob")
    await sign_in(anonymous, "alice", PASSWORD)
    status, page = await form_post(anonymous, "/teams", "/teams",
                                   {"name": "web", "description": "The web team"})
    assert status == 200
    assert "Team web created." in page
    status, page = await form_post(anonymous, "/teams/web", "/teams/web/members",
                                   {"user": "bob", "role": "contributor"})
    assert "bob is now contributor of web." in page
    status, page = await form_post(anonymous, "/namespaces", "/namespaces", {
        "name": "frontend", "team": "web", "visibility": "protected", "description": "hi"})
    assert status == 200
    assert "Namespace frontend created." in page
    namespace = await app[IDENTITY].get_namespace(Principal("alice", "user"), "frontend")
    assert (namespace.team, namespace.visibility) == ("web", "protected")
    status, page = await form_post(anonymous, "/teams/web", "/teams/web/members",
                                   {"user": "nobody-here", "role": "viewer"})
    assert status == 404
    assert "There is no account named" in page


async def test_crafted_posts_on_other_teams_and_accounts_are_refused(
        anonymous: ClientSession, app: web.Application) -> None:
    """Forms a page did not offer, posted anyway: refused, nothing changed, nothing told."""
    await make_user(app, "alice")
    await make_user(app, "mallory")
    await team_namespace(app, "alice", "web", "private")
    _, alices = await app[IDENTITY].create_token(Principal("alice", "user"), "alice", "ci")
    await sign_in(anonymous, "mallory", PASSWORD)
    refusals = [
        ("/teams/web-team/members", {"user": "mallory", "role": "owner"}),
        ("/teams/web-team/members", {"user": "no-such-account", "role": "viewer"}),
        ("/teams/web-team/members", {"user": "alice", "remove": "1"}),
        ("/n/web", {"visibility": "public"}),
        ("/tokens", {"user": "alice", "label": "stolen"}),
        ("/tokens/revoke", {"user": "alice", "label": "ci"}),
    ]
    for action, data in refusals:
        status, page = await form_post(anonymous, "/profile", action, data)
        assert status in {403, 404}, (action, data, page)
        assert "There is no account named" not in page
    identity = app[IDENTITY]
    assert {m.user: m.role for m in await identity.members(ADMIN, "web-team")} == {
        "alice": "owner"}
    assert (await identity.get_namespace(ADMIN, "web")).visibility == "private"
    assert [(t.label, t.revoked) for t in await identity.tokens(ADMIN, "alice")] == [
        ("ci", False)]
    assert (await app[AUTHENTICATOR].authenticate("alice", alices)).name == "alice"


async def test_the_live_feed_carries_only_activity_the_viewer_may_see(
        anonymous: ClientSession, app: web.Application) -> None:
    await make_user(app, "alice")
    await team_namespace(app, "admin", "hidden", "private")
    await team_namespace(app, "alice", "mine", "private")
    await sign_in(anonymous, "alice", PASSWORD)
    async with asyncio.timeout(20):
        stream = await anonymous.get("/activity/stream")
        assert stream.headers["Content-Type"].startswith("text/event-stream")
        for name in ("hidden", "mine"):  # in this order: "hidden" would come first
            await app[IDENTITY].update_namespace(ADMIN, name, description="changed")
        seen = []
        while "mine" not in seen:
            line = (await stream.content.readline()).decode()
            if line.startswith("data: "):
                seen.append(json.loads(line[len("data: "):])["namespace"])
        stream.close()
    assert "hidden" not in seen


async def test_bad_input_is_refused_with_a_reason(
        anonymous: ClientSession, app: web.Application) -> None:
    await make_user(app, "alice")
    await sign_in(anonymous, "alice", PASSWORD)
    status, page = await form_post(anonymous, "/teams", "/teams", {"name": "Not Valid!"})
    assert status == 400
    assert "team names are lowercase letters and digits" in page
    status, page = await form_post(anonymous, "/profile", "/profile",
                                   {"password": "new-password-1", "password_again": "other"})
    assert status == 400
    assert "The two passwords differ" in page


async def test_a_token_is_shown_once_then_listed_and_revoked(
        anonymous: ClientSession, app: web.Application) -> None:
    await make_user(app, "alice")
    await sign_in(anonymous, "alice", PASSWORD)
    token = csrf_of(await (await anonymous.get("/tokens")).text())
    response = await anonymous.post("/tokens", data={"label": "laptop", "csrf": token},
                                    allow_redirects=False)
    # POST-redirect-GET: a reload shows the page again, it does not post the form again; and
    # the secret is not in the address.
    assert response.status == 303
    assert response.headers["Location"] == "/tokens"
    shown = await anonymous.get("/tokens")
    page = await shown.text()
    assert shown.headers["Cache-Control"] == "no-store"
    secret = page.split('id="new-token">')[1].split("<")[0]
    assert secret.startswith("dyat_")
    principal = await app[AUTHENTICATOR].authenticate("alice", secret)
    assert principal.name == "alice"
    listing = await (await anonymous.get("/tokens")).text()
    assert "laptop" in listing
    assert secret not in listing
    _status, page = await form_post(anonymous, "/tokens", "/tokens/revoke", {"label": "laptop"})
    assert "Token laptop revoked." in page
    assert [t.revoked for t in await app[IDENTITY].tokens(ADMIN, "alice")] == [True]


async def test_admin_creates_users_and_bots(admin: ClientSession, app: web.Application) -> None:
    _, page = await form_post(admin, "/admin/users", "/admin/users", {
        "name": "carol", "email": "carol@example.test", "password": "carol-password",
        "admin": "on"})
    assert "Account carol created." in page
    user = await app[IDENTITY].get_user(ADMIN, "carol")
    assert user.admin
    await app[IDENTITY].create_team(ADMIN, "ops", owner="carol")
    _status, page = await form_post(admin, "/admin/bots", "/admin/bots",
                                   {"name": "ci-bot", "team": "ops", "role": "contributor"})
    assert "Bot ci-bot created" in page
    assert "Application tokens of ci-bot" in page
    async with admin.get("/admin/bots") as response:
        listing = await response.text()
    assert "<td>ci-bot</td><td>team ops</td>" in listing


# activity -----------------------------------------------------------------------------------------


async def test_activity_filters_and_csv_export(admin: ClientSession, app: web.Application) -> None:
    from services.ingest.api import ACTIVITY_STORE  # noqa: PLC0415
    from services.ingest.models import Activity  # noqa: PLC0415

    at = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    await app[ACTIVITY_STORE].record([
        Activity(f"a{i}", "tag.pushed", actor, "team/app", "team", f"v{i}", DIGEST_A, at,
                 "10.0.0.1", "skopeo") for i, actor in enumerate(["alice", "bob", "=cmd"])])
    page = await (await admin.get("/activity?actor=bob")).text()
    assert "team/app:v1" in page
    assert "team/app:v0" not in page
    response = await admin.get("/activity.csv?type=tag.pushed")
    assert response.headers["Content-Type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(await response.text())))
    assert sorted(row["actor"] for row in rows) == ["'=cmd", "alice", "bob"]
    response = await admin.get("/activity?type=nonsense")
    assert response.status == 400


@pytest.mark.parametrize("path", ["/activity?since=yesterday", "/activity?before=1.x"])
async def test_broken_activity_links_are_a_clear_400(admin: ClientSession, path: str) -> None:
    response = await admin.get(path)
    assert response.status == 400
    assert response.content_type == "text/html"


# scans ----------------------------------------------------------------------------------------


async def test_tag_page_shows_findings_filters_them_and_offers_the_sbom(
        admin: ClientSession, anonymous: ClientSession, app: web.Application) -> None:
    await make_user(app, "bob")
    await team_namespace(app, "admin", "team", "private")
    await seed_tag(app, "team/app", "1.0", DIGEST_A)
    store = app[SCAN_STORE]
    await store.queue(DIGEST_A, "team/app")
    assert (await store.claim()) is not None
    openssl = Package("deb", "openssl", "3.0.1", source_name="openssl", layer=DIGEST_B)
    await store.finish(DIGEST_A, "done", inventory=Inventory(
        Distribution("debian", "12", "Debian GNU/Linux 12"), (openssl,)), findings=[
        Finding("CVE-2026-0001", (), openssl, "3.0.2", Severity.CRITICAL, "bad <b>bug</b>"),
        Finding("CVE-2026-0002", (), openssl, None, Severity.LOW, "minor"),
    ])
    repository = await (await admin.get("/r/team/app")).text()
    assert "1 Critical, 1 Low" in repository
    page = await (await admin.get("/r/team/app/-/tags/1.0")).text()
    assert "CVE-2026-0001" in page
    assert "CVE-2026-0002" in page
    assert "bad &lt;b&gt;bug&lt;/b&gt;" in page
    assert "Debian GNU/Linux 12" in page
    fixable = await (await admin.get("/r/team/app/-/tags/1.0?fixable=1")).text()
    assert "CVE-2026-0001" in fixable
    assert "CVE-2026-0002" not in fixable
    low = await (await admin.get("/r/team/app/-/tags/1.0?severity=Low")).text()
    assert "CVE-2026-0001" not in low
    response = await admin.get(f"/r/team/app/-/sbom/{DIGEST_A}")
    assert response.status == 200
    assert "attachment" in response.headers["Content-Disposition"]
    sbom = await response.json(content_type=None)
    assert sbom["bomFormat"] == "CycloneDX"
    assert any(c["name"] == "openssl" for c in sbom["components"])
    await sign_in(anonymous, "bob", PASSWORD)
    assert (await anonymous.get(f"/r/team/app/-/sbom/{DIGEST_A}")).status == 404
    assert (await admin.get("/r/team/app/-/tags/1.0?severity=Awful")).status == 400


async def test_vulnerability_database_status_page(admin: ClientSession) -> None:
    page = await (await admin.get("/admin/vulndb")).text()
    assert "No vulnerability data loaded" in page


# the rest of signing in -------------------------------------------------------------------------


async def test_signing_in_again_ends_the_previous_session(
        anonymous: ClientSession, server: TestServer, app: web.Application) -> None:
    from services.auth.sessions import SESSIONS  # noqa: PLC0415

    await sign_in(anonymous, "admin", "correct-horse-battery-staple")
    first = anonymous.cookie_jar.filter_cookies(server.make_url("/"))["dockyard_session"].value
    await sign_in(anonymous, "admin", "correct-horse-battery-staple")
    second = anonymous.cookie_jar.filter_cookies(server.make_url("/"))["dockyard_session"].value
    assert first != second
    assert await app[SESSIONS].resume(first) is None
    assert await app[SESSIONS].resume(second) is not None


@pytest.fixture
def tls_config(tmp_path: Path) -> Config:
    """Behind a TLS-terminating proxy, with one OIDC provider configured."""
    config = initialised(tmp_path / "tls", f"http://127.0.0.1:{free_port()}",
                         sync_interval_seconds="0",
                         server_external_url="https://dockyard.example")
    toml = config.server.data_dir / "dockyard.toml"
    toml.write_text(toml.read_text() + '\n[oidc.corp]\ndisplay_name = "Corp <SSO>"\n'
                    'issuer = "http://127.0.0.1:9"\nclient_id = "dockyard"\n')
    return initialised(tmp_path / "tls", "unused", sync_interval_seconds="0",
                       server_external_url="https://dockyard.example")


async def test_behind_tls_the_cookie_is_secure_and_providers_are_offered(
        tls_config: Config) -> None:
    async with visiting(tls_config) as visitor:
        login = await visitor.get("/login")
        page = await login.text()
        assert 'href="/auth/oidc/corp/login"' in page
        assert "Sign in with Corp &lt;SSO&gt;" in page
        assert login.cookies["dockyard_login_csrf"]["secure"] is True
        # The client speaks plain HTTP to the app (the proxy's side), so it does not send
        # Secure cookies back by itself.
        token = csrf_of(page)
        response = await visitor.post("/login", allow_redirects=False, data={
            "username": "admin", "password": "correct-horse-battery-staple",
            "csrf": token}, headers={"Cookie": f"dockyard_login_csrf={token}"})
        assert response.status == 303
        assert response.cookies["dockyard_session"]["secure"] is True
        # The one-time notice after a form is a Secure cookie too.
        cookie = {"Cookie": f"dockyard_session={response.cookies['dockyard_session'].value}"}
        profile = await visitor.get("/profile", headers=cookie)
        saved = await visitor.post("/profile", allow_redirects=False, headers=cookie, data={
            "csrf": csrf_of(await profile.text()), "email": "admin@example.test"})
        assert saved.status == 303, await saved.text()
        assert saved.cookies["dockyard_flash"]["secure"] is True


async def test_an_unexpected_failure_is_a_plain_500_page(
        admin: ClientSession, app: web.Application, monkeypatch: pytest.MonkeyPatch) -> None:
    async def broken(*_: object, **__: object) -> None:
        raise RuntimeError("secret internals")

    # A stand-in for a store that fails: no real store can be made to fail on cue here.
    monkeypatch.setattr(app[CATALOG_STORE], "repositories", broken)
    response = await admin.get("/explore")
    text = await response.text()
    assert response.status == 500
    assert response.content_type == "text/html"
    assert "Something went wrong on our side" in text
    assert "secret internals" not in text


async def test_star_a_repository_and_find_it_on_the_dashboard(
        anonymous: ClientSession, app: web.Application) -> None:
    await make_user(app, "alice")
    await team_namespace(app, "admin", "open", "public")
    await seed_tag(app, "open/tool", "1.0")
    at = datetime(2026, 1, 2, tzinfo=UTC)
    # The search service keeps stars beside its index, which its consumer fills from events.
    await app[SEARCH_INDEX].apply([("index-1", [
        PutManifest("open/tool", DIGEST_A, OCI, "image", None, 1, (), None, "alice", at),
        PutTag("open/tool", "1.0", DIGEST_A, "alice", at)])])
    await sign_in(anonymous, "alice", PASSWORD)
    assert "Nothing starred yet." in await (await anonymous.get("/")).text()
    status, page = await form_post(anonymous, "/r/open/tool", "/r/open/tool/-/star",
                                   {"star": "1"})
    assert status == 200
    assert "Starred open/tool." in page
    assert 'aria-pressed="true"' in page
    dashboard = await (await anonymous.get("/")).text()
    assert '<a href="/r/open/tool">open/tool</a>' in dashboard
    _, page = await form_post(anonymous, "/r/open/tool", "/r/open/tool/-/star", {"star": "0"})
    assert 'aria-pressed="false"' in page
    assert "Nothing starred yet." in await (await anonymous.get("/")).text()


async def test_the_portal_runs_alone_on_the_modules_it_reads_through(config: Config) -> None:
    """``dockyard serve --service portal``: auth, ingest, search and scanner are opened for
    their module APIs, without their routes."""
    async with visiting(config, ["portal"]) as visitor:
        await sign_in(visitor, "admin", "correct-horse-battery-staple")
        assert (await visitor.get("/explore")).status == 200
        assert (await visitor.get("/r/none/such")).status == 404
        assert (await visitor.get("/api/v1/repositories")).status == 404


@pytest.fixture
def limited_config(tmp_path: Path) -> Config:
    return initialised(tmp_path / "limited", f"http://127.0.0.1:{free_port()}",
                       sync_interval_seconds="0", auth_max_failed_logins_per_address="3")


async def test_sign_in_attempts_share_the_lockouts_address_budget(
        limited_config: Config) -> None:
    async with visiting(limited_config) as visitor:
        token = csrf_of(await (await visitor.get("/login")).text())
        statuses = []
        for _ in range(4):
            response = await visitor.post("/login", data={
                "username": "admin", "password": "wrong-password", "csrf": token})
            statuses.append(response.status)
        assert statuses == [401, 401, 401, 429]
        assert "Too many sign-in attempts; try again in" in await response.text()
        assert int(response.headers["Retry-After"]) > 0


async def test_notices_carry_any_text(anonymous: ClientSession, app: web.Application) -> None:
    await make_user(app, "alice")
    await app[IDENTITY].create_token(ADMIN, "alice", "ключ — laptop")
    await sign_in(anonymous, "alice", PASSWORD)
    _, page = await form_post(anonymous, "/tokens", "/tokens/revoke",
                              {"label": "ключ — laptop"})
    assert "Token ключ — laptop revoked." in page


async def test_the_live_feed_ends_with_the_session(
        anonymous: ClientSession, app: web.Application) -> None:
    await make_user(app, "alice")
    await sign_in(anonymous, "alice", PASSWORD)
    async with asyncio.timeout(20):
        stream = await anonymous.get("/activity/stream")
        assert stream.headers["Content-Type"].startswith("text/event-stream")
        await app[IDENTITY].set_enabled(ADMIN, "alice", enabled=False)
        # The server ends the stream (at its next check, within STREAM_RECHECK_SECONDS).
        while await stream.content.readline():
            pass
        stream.close()
