"""OpenID Connect sign-in against a real provider (oidc-provider-mock, tests/support/oidc.py):
the code flow with PKCE, state and nonce, ID token checks (nonce, audience, expiry), groups →
teams, onboarding, the browser routes, and app tokens that outlive the ID token."""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import hashlib
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from aiohttp import web

from services.auth.access import IDENTITY
from services.auth.directory_app import DIRECTORY, suspend_inactive
from services.auth.oidc import OidcProvider, PendingLogin, pkce_challenge
from services.auth.policy import Principal
from services.auth.sessions import COOKIE, SESSIONS
from services.core.config import load_config
from services.core.errors import Forbidden, NotFound, Unauthorized
from services.core.web import JOBS
from services.ingest.api import CATALOG_STORE
from services.ingest.models import PutManifest, PutTag
from services.server import build_app
from tests.factories import DIGEST_A, OCI_MANIFEST
from tests.support.dockyard import Dockyard, initialised, running_dockyard
from tests.support.oidc import OidcProviderProcess, require_oidc_provider
from tests.support.waiting import eventually

ADMIN = Principal("admin", "user", admin=True)


@pytest.fixture(scope="module")
def provider() -> Iterator[OidcProviderProcess]:
    require_oidc_provider()
    with OidcProviderProcess() as process:
        yield process


def provider_toml(name: str, issuer: str, *, client_id: str = "dockyard",
                  extra: str = "") -> str:
    return f"""
[oidc.{name}]
issuer = "{issuer}"
client_id = "{client_id}"
client_secret = "dockyard-client-secret"
admin_group = "registry-admins"
clock_skew_seconds = 0
{extra}
[[oidc.{name}.groups]]
group = "devs"
team = "web"
role = "contributor"
"""


async def start(tmp_path: Path, toml: str) -> AsyncIterator[Dockyard]:
    data = tmp_path / "data"
    await asyncio.to_thread(initialised, data, "http://127.0.0.1:9")  # it runs its own loop
    with (data / "dockyard.toml").open("a") as file:
        file.write(toml)
    async with running_dockyard(load_config(data / "dockyard.toml", env={})) as running:
        await running.app[IDENTITY].create_team(ADMIN, "web", owner="admin")
        yield running


@pytest.fixture
async def dockyard(tmp_path: Path, provider: OidcProviderProcess) -> AsyncIterator[Dockyard]:
    toml = provider_toml("corp", provider.issuer) + provider_toml(
        "closed", provider.issuer, extra="auto_onboard = false")
    async for running in start(tmp_path, toml):
        yield running


def corp(dockyard: Dockyard, name: str = "corp") -> OidcProvider:
    found = dockyard.app[DIRECTORY].providers.get(name)
    assert isinstance(found, OidcProvider)
    return found


async def sign_in(dockyard: Dockyard, provider: OidcProviderProcess, sub: str,
                  name: str = "corp") -> tuple[PendingLogin, dict[str, str]]:
    url, pending = await dockyard.app[DIRECTORY].providers.begin(name)
    return pending, await provider.authorize(url, sub)


async def test_code_flow_with_pkce_creates_the_account_and_maps_groups(
    dockyard: Dockyard, provider: OidcProviderProcess
) -> None:
    provider.set_user("sub-olga", {"preferred_username": "olga", "email": "olga@corp.test",
                                   "groups": ["devs", "registry-admins"]})
    url, pending = await dockyard.app[DIRECTORY].providers.begin("corp")
    sent = {key: values[0] for key, values in parse_qs(urlsplit(url).query).items()}
    assert sent["code_challenge_method"] == "S256"
    assert sent["code_challenge"] == pkce_challenge(pending.verifier)
    assert sent["nonce"] == pending.nonce
    assert sent["state"] == pending.state
    assert sent["redirect_uri"].endswith("/auth/oidc/corp/callback")
    callback = await provider.authorize(url, "sub-olga")
    user = await dockyard.app[DIRECTORY].providers.finish("corp", pending, callback)
    assert user.name == "olga"
    assert user.email == "olga@corp.test"
    assert user.admin
    members = {m.user: m.role for m in await dockyard.app[IDENTITY].members(ADMIN, "web")}
    assert members["olga"] == "contributor"
    # Leaving the group removes the membership at the next sign-in.
    provider.set_user("sub-olga", {"preferred_username": "olga", "groups": []})
    pending, callback = await sign_in(dockyard, provider, "sub-olga")
    user = await dockyard.app[DIRECTORY].providers.finish("corp", pending, callback)
    assert not user.admin
    members = {m.user: m.role for m in await dockyard.app[IDENTITY].members(ADMIN, "web")}
    assert "olga" not in members


def test_pkce_challenge_matches_rfc_7636_appendix_b() -> None:
    assert pkce_challenge("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk") == \
        "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"


async def test_state_must_match(dockyard: Dockyard, provider: OidcProviderProcess) -> None:
    provider.set_user("sub-s", {"preferred_username": "sam"})
    pending, callback = await sign_in(dockyard, provider, "sub-s")
    with pytest.raises(Unauthorized) as caught:
        await dockyard.app[DIRECTORY].providers.finish(
            "corp", pending, {**callback, "state": "forged"})
    assert caught.value.code == "invalid_login_state"
    assert await dockyard.app[IDENTITY].store.get_user("sam") is None


async def test_wrong_nonce_is_refused(dockyard: Dockyard, provider: OidcProviderProcess) -> None:
    provider.set_user("sub-n", {"preferred_username": "nina"})
    pending, callback = await sign_in(dockyard, provider, "sub-n")
    replayed = dataclasses.replace(pending, nonce="another-sign-in")
    with pytest.raises(Unauthorized) as caught:
        await dockyard.app[DIRECTORY].providers.finish("corp", replayed, callback)
    assert caught.value.code == "id_token_nonce"
    assert await dockyard.app[IDENTITY].store.get_user("nina") is None


async def test_an_id_token_for_another_client_is_refused(
    tmp_path: Path, dockyard: Dockyard, provider: OidcProviderProcess
) -> None:
    provider.set_user("sub-a", {"preferred_username": "ann"})
    # A real ID token, issued by the same provider to another client ("other-app").
    other = OidcProvider("other", corp(dockyard).settings.model_copy(
        update={"client_id": "other-app"}), corp(dockyard).redirect_uri,
        corp(dockyard)._directory, corp(dockyard)._http)
    url, pending = await other.begin()
    callback = await provider.authorize(url, "sub-a")
    token = await other._id_token(await other._discover(), callback["code"], pending)
    assert (await other.claims(token, pending.nonce))["aud"] in ("other-app", ["other-app"])
    with pytest.raises(Unauthorized) as caught:
        await corp(dockyard).claims(token, pending.nonce)
    assert caught.value.code == "id_token_audience"


async def test_an_expired_id_token_is_refused(tmp_path: Path) -> None:
    require_oidc_provider()
    with OidcProviderProcess(token_max_age=1) as short:
        short.set_user("sub-e", {"preferred_username": "eve"})
        async for dockyard in start(tmp_path, provider_toml("corp", short.issuer)):
            provider = corp(dockyard)
            url, pending = await provider.begin()
            callback = await short.authorize(url, "sub-e")
            token = await provider._id_token(await provider._discover(), callback["code"],
                                             pending)
            await asyncio.sleep(2.2)  # the provider's tokens live 1 s; no leeway configured
            with pytest.raises(Unauthorized) as caught:
                await provider.claims(token, pending.nonce)
            assert caught.value.code == "id_token_expired"


async def test_without_onboarding_only_existing_accounts_sign_in(
    dockyard: Dockyard, provider: OidcProviderProcess
) -> None:
    provider.set_user("sub-p", {"preferred_username": "pat", "email": "pat@corp.test",
                                "email_verified": True})
    pending, callback = await sign_in(dockyard, provider, "sub-p", "closed")
    with pytest.raises(Forbidden) as caught:
        await dockyard.app[DIRECTORY].providers.finish("closed", pending, callback)
    assert caught.value.code == "not_onboarded"
    await dockyard.app[DIRECTORY].directory.precreate(ADMIN, "pat", source="oidc:closed",
                                                      email="pat@corp.test")
    pending, callback = await sign_in(dockyard, provider, "sub-p", "closed")
    user = await dockyard.app[DIRECTORY].providers.finish("closed", pending, callback)
    assert user.name == "pat"
    link = await dockyard.app[DIRECTORY].directory.links.account("pat")
    assert link is not None
    assert link.external_id == "sub-p"


@pytest.mark.parametrize("claims", [
    {"preferred_username": "pia"},  # the name alone
    {"preferred_username": "pia", "email": "pia@corp.test"},  # an email nobody verified
    {"preferred_username": "pia", "email": "pia@corp.test", "email_verified": "true"},
    {"preferred_username": "pia", "email": "mallory@corp.test", "email_verified": True},
])
async def test_a_precreated_account_is_not_claimed_by_its_name(
    dockyard: Dockyard, provider: OidcProviderProcess, claims: dict[str, object]
) -> None:
    """Issue 15: a pre-created account went to the first sign-in whose preferred_username
    matched, a name the person chooses at many providers."""
    directory = dockyard.app[DIRECTORY].directory
    await directory.precreate(ADMIN, "pia", source="oidc:closed", email="Pia@corp.test")
    provider.set_user("sub-mallory", claims)
    pending, callback = await sign_in(dockyard, provider, "sub-mallory", "closed")
    with pytest.raises(Forbidden) as caught:
        await dockyard.app[DIRECTORY].providers.finish("closed", pending, callback)
    assert caught.value.code == "account_conflict"
    link = await directory.links.account("pia")
    assert link is not None
    assert link.external_id == ""  # still waiting for its person
    provider.set_user("sub-pia", {"preferred_username": "pia", "email": "pia@corp.test",
                                  "email_verified": True})
    pending, callback = await sign_in(dockyard, provider, "sub-pia", "closed")
    assert (await dockyard.app[DIRECTORY].providers.finish("closed", pending,
                                                           callback)).name == "pia"


async def test_a_sign_in_does_not_create_an_account_over_repositories_pushed_before(
    dockyard: Dockyard, provider: OidcProviderProcess
) -> None:
    """Issue 15 item 4, found again by the attacker's review: an account's personal namespace
    is created with it, so signing in under the name of repositories pushed before namespaces
    had to exist (a provider's user name is the person's choice) took them over. Only an
    admin creates such an account, and its user.create says what it adopted."""
    now = datetime.now(UTC)
    await dockyard.app[CATALOG_STORE].apply([("seed-relic", [
        PutManifest("relic/app", DIGEST_A, OCI_MANIFEST, "image", None, 1, (), None, "admin",
                    now),
        PutTag("relic/app", "1", DIGEST_A, "admin", now)])])
    provider.set_user("sub-relic", {"preferred_username": "relic", "email": "relic@corp.test",
                                    "email_verified": True})
    pending, callback = await sign_in(dockyard, provider, "sub-relic")
    with pytest.raises(Forbidden) as caught:
        await dockyard.app[DIRECTORY].providers.finish("corp", pending, callback)
    assert caught.value.code == "namespace_has_repositories"
    assert await dockyard.app[IDENTITY].store.get_user("relic") is None

    created = await dockyard.client.post("/api/v1/directory/accounts", json={
        "name": "relic", "source": "oidc:corp", "email": "relic@corp.test"})
    assert created.status_code == 201, created.text

    async def creations() -> list[dict[str, Any]]:
        response = await dockyard.client.get(
            "/api/v1/activities", params={"type": "user.create", "namespace": "relic"})
        return list(response.json()["items"])

    (event,) = await eventually(creations, bool, what="user.create of relic")
    assert event["details"]["adopted_repositories"] == 1
    pending, callback = await sign_in(dockyard, provider, "sub-relic")
    assert (await dockyard.app[DIRECTORY].providers.finish("corp", pending,
                                                           callback)).name == "relic"


async def test_precreating_a_provider_account_needs_its_email(dockyard: Dockyard) -> None:
    response = await dockyard.client.post("/api/v1/directory/accounts",
                                          json={"name": "noemail", "source": "oidc:closed"})
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "email_required"
    assert await dockyard.app[IDENTITY].store.get_user("noemail") is None


async def test_a_local_account_is_not_taken_over(
    dockyard: Dockyard, provider: OidcProviderProcess
) -> None:
    provider.set_user("sub-admin", {"preferred_username": "admin"})
    pending, callback = await sign_in(dockyard, provider, "sub-admin")
    with pytest.raises(Forbidden) as caught:
        await dockyard.app[DIRECTORY].providers.finish("corp", pending, callback)
    assert caught.value.code == "account_conflict"


async def test_the_same_username_from_another_subject_is_refused(
    dockyard: Dockyard, provider: OidcProviderProcess
) -> None:
    provider.set_user("sub-quinn", {"preferred_username": "quinn", "groups": ["devs"]})
    pending, callback = await sign_in(dockyard, provider, "sub-quinn")
    await dockyard.app[DIRECTORY].providers.finish("corp", pending, callback)
    # preferred_username is not unique (OIDC Core §5.7): another subject may claim the same
    provider.set_user("sub-mallory", {"preferred_username": "quinn"})
    pending, callback = await sign_in(dockyard, provider, "sub-mallory")
    with pytest.raises(Forbidden) as caught:
        await dockyard.app[DIRECTORY].providers.finish("corp", pending, callback)
    assert caught.value.code == "account_conflict"
    link = await dockyard.app[DIRECTORY].directory.links.account("quinn")
    assert link is not None
    assert link.external_id == "sub-quinn"


async def test_unknown_provider(dockyard: Dockyard) -> None:
    with pytest.raises(NotFound):
        await dockyard.app[DIRECTORY].providers.begin("nope")
    response = await dockyard.client.get("/auth/oidc/nope/login")
    assert response.status_code == 404


async def test_browser_routes_start_a_portal_session(
    dockyard: Dockyard, provider: OidcProviderProcess
) -> None:
    provider.set_user("sub-r", {"preferred_username": "rita", "groups": ["devs"]})
    async with httpx.AsyncClient(base_url=dockyard.url, timeout=10) as browser:
        start_login = await browser.get("/auth/oidc/corp/login")
        assert start_login.status_code == 302
        callback = await provider.authorize(start_login.headers["Location"], "sub-r")
        done = await browser.get("/auth/oidc/corp/callback", params=callback)
        assert done.status_code == 303, done.text
        assert "dockyard_session" in done.cookies or "dockyard_session" in browser.cookies
        # Replaying the callback fails: the provider's code is single-use.
        again = await browser.get("/auth/oidc/corp/callback", params=callback)
        assert again.status_code == 401


async def test_the_sign_in_state_has_its_own_key(
    dockyard: Dockyard, provider: OidcProviderProcess
) -> None:
    """Issue 15: the key was derived from the webhook secret, which the registry holds too
    (registry.yml): whoever reads that file could forge a pending sign-in."""
    provider.set_user("sub-k", {"preferred_username": "kim"})
    webhook = dockyard.config.webhook.secret.encode()
    derived = hashlib.sha256(b"dockyard-oidc-pending\0" + webhook).digest()
    async with httpx.AsyncClient(base_url=dockyard.url, timeout=10) as browser:
        start_login = await browser.get("/auth/oidc/corp/login")
        callback = await provider.authorize(start_login.headers["Location"], "sub-k")
        pending = PendingLogin.decode(browser.cookies["dockyard_oidc"],
                                      dockyard.app[DIRECTORY].state_key)
        browser.cookies.set("dockyard_oidc", pending.encode(derived), path="/auth/oidc/")
        forged = await browser.get("/auth/oidc/corp/callback", params=callback)
        assert forged.status_code == 401
        assert "tampered with" in forged.text
    assert dockyard.config.auth.login_state_secret  # dockyard init wrote one
    assert dockyard.config.auth.login_state_secret != dockyard.config.webhook.secret
    assert await dockyard.app[IDENTITY].store.get_user("kim") is None


async def test_an_auth_service_running_alone_finishes_the_sign_in(
    tmp_path: Path, provider: OidcProviderProcess
) -> None:
    """``dockyard serve --service auth`` serves the callback, so it owns the session store."""
    data = tmp_path / "data"
    await asyncio.to_thread(initialised, data, "http://127.0.0.1:9")
    with (data / "dockyard.toml").open("a") as file:
        file.write(provider_toml("corp", provider.issuer))
    config = load_config(data / "dockyard.toml", env={})
    runner = web.AppRunner(build_app(config, ["auth"]))
    await runner.setup()
    await web.TCPSite(runner, config.server.host, config.server.port).start()
    provider.set_user("sub-alone", {"preferred_username": "alone"})
    try:
        async with httpx.AsyncClient(base_url=f"http://{config.server.listen}",
                                     timeout=10) as browser:
            start_login = await browser.get("/auth/oidc/corp/login")
            callback = await provider.authorize(start_login.headers["Location"], "sub-alone")
            done = await browser.get("/auth/oidc/corp/callback", params=callback)
            assert done.status_code == 303, done.text
            signed_in = await runner.app[SESSIONS].resume(done.cookies[COOKIE])
        assert signed_in is not None
        assert (signed_in.user.name, signed_in.session.method) == ("alone", "oidc")
    finally:
        await runner.cleanup()


async def test_app_tokens_of_oidc_users_work_after_the_id_token(
    dockyard: Dockyard, provider: OidcProviderProcess
) -> None:
    provider.set_user("sub-t", {"preferred_username": "tom"})
    pending, callback = await sign_in(dockyard, provider, "sub-t")
    await dockyard.app[DIRECTORY].providers.finish("corp", pending, callback)
    tom = Principal("tom", "user")
    _, secret = await dockyard.app[IDENTITY].create_token(tom, "tom", "docker")
    provider_revokes = httpx.post(f"{provider.issuer}/users/sub-t/revoke-tokens", timeout=10)
    assert provider_revokes.status_code < 300
    auth = "Basic " + base64.b64encode(f"tom:{secret}".encode()).decode()
    response = await dockyard.client.get(
        "/v2/token", params={"service": dockyard.config.auth.service,
                             "scope": "repository:tom/app:push,pull"},
        headers={"Authorization": auth})
    assert response.status_code == 200, response.text
    # An OIDC account has no password docker could use.
    response = await dockyard.client.get(
        "/v2/token", params={"service": dockyard.config.auth.service},
        headers={"Authorization": "Basic " + base64.b64encode(b"tom:anything").decode()})
    assert response.status_code == 401


async def test_an_account_not_signed_in_for_inactive_days_is_suspended(
    dockyard: Dockyard, provider: OidcProviderProcess
) -> None:
    """Issue 15: OIDC users were never deprovisioned; their app tokens lived on forever."""
    provider.set_user("sub-ida", {"preferred_username": "ida"})
    pending, callback = await sign_in(dockyard, provider, "sub-ida")
    await dockyard.app[DIRECTORY].providers.finish("corp", pending, callback)
    _, secret = await dockyard.app[IDENTITY].create_token(Principal("ida", "user"), "ida", "ci")
    directory = dockyard.app[DIRECTORY].directory
    link = await directory.links.account("ida")
    assert link is not None
    assert link.seen_at is not None
    assert "directory-inactivity" in [job.name for job in dockyard.app[JOBS]]
    assert await suspend_inactive(dockyard.config, directory) == 0  # seen just now
    await directory.links.link(dataclasses.replace(
        link, seen_at=datetime.now(UTC) - timedelta(days=91)))  # the default: 90 days
    assert await suspend_inactive(dockyard.config, directory) == 1
    assert (await app_token_login(dockyard, "ida", secret)).status_code == 401
    # Signing in through the provider again vouches for the account anew.
    pending, callback = await sign_in(dockyard, provider, "sub-ida")
    assert (await dockyard.app[DIRECTORY].providers.finish("corp", pending, callback)).enabled
    assert (await app_token_login(dockyard, "ida", secret)).status_code == 200


async def app_token_login(dockyard: Dockyard, user: str, secret: str) -> httpx.Response:
    auth = "Basic " + base64.b64encode(f"{user}:{secret}".encode()).decode()
    return await dockyard.client.get("/v2/token", params={"service": dockyard.config.auth.service},
                                     headers={"Authorization": auth})
