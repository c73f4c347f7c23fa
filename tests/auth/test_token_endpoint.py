"""``GET``/``POST /v2/token`` as the docker CLI and the registry see them.

distribution docs/spec/auth/token.md, jwt.md and oauth.md, as PROTOCOLS.md summarises them:
the response shape, the JWT header (x5c, libtrust kid) and claims (``aud`` a string, ``sub``
the authenticated account), partial grants, the refresh flow, 401/400/429 cases, the verified
credential cache, and that no secret reaches a log line or a file.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import re
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec

from services.auth import service as auth_service
from services.auth.access import AUTHENTICATOR, AUTHORITY, IDENTITY
from services.auth.app import keyring
from services.auth.audit import IDENTITY_EVENTS
from services.auth.identity import IdentityService
from services.auth.keys import libtrust_key_id
from services.auth.policy import Principal, Visibility
from services.auth.token_api import RateLimits
from services.auth.tokens import Grant, IssuedToken, RecentTokens
from services.cli import main
from services.core.config import Config
from services.core.errors import TooManyRequests
from services.core.web import EVENT_LOG
from tests.support.dockyard import ADMIN_PASSWORD, Dockyard, initialised, running_dockyard
from tests.support.tokens import cheap_hashing, error_of, unverified

ADMIN = Principal("admin", "user", admin=True)
TTL = 120
RFC3339_UTC = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d+)?Z")
PASSWORDS = {
    "alice": "alice-secret-password",
    "bob": "bob-secret-password",
    "olivia": "olivia-secret-password",
    "carl": "carl-secret-password",
    "vera": "vera-secret-password",
    "john.doe": "john-secret-password",
}


async def identity_events(world: World) -> list[dict[str, Any]]:
    """The identity events published so far (the audit log)."""
    subscription = await world.dockyard.app[EVENT_LOG].subscribe(
        IDENTITY_EVENTS, f"reader-{uuid.uuid4()}")
    try:
        return [json.loads(r.value)
                for r in await subscription.fetch(max_records=10_000, timeout=0.05)]
    finally:
        await subscription.close()


@asynccontextmanager
async def from_address(world: World, address: str) -> AsyncIterator[httpx.AsyncClient]:
    """A client whose connections come from another loopback address."""
    transport = httpx.AsyncHTTPTransport(local_address=address)
    async with httpx.AsyncClient(base_url=world.dockyard.url, transport=transport,
                                 timeout=30) as client:
        yield client


@dataclass
class World:
    """Who exists: team ``devs`` (owner olivia, contributor carl, viewer vera, bot robot)
    owns the namespaces ``team`` (private), ``inner`` (protected) and ``open`` (public);
    alice, bob and john.doe have only their personal namespaces; alice and robot hold app
    tokens."""

    dockyard: Dockyard
    client: httpx.AsyncClient  # no credentials of its own
    alice_token: str
    robot_token: str

    @property
    def identity(self) -> IdentityService:
        return self.dockyard.app[IDENTITY]

    @property
    def service(self) -> str:
        return self.dockyard.config.auth.service

    async def get(
        self,
        *scopes: str,
        auth: tuple[str, str] | None = None,
        headers: dict[str, str] | None = None,
        **params: str,
    ) -> httpx.Response:
        query = [("service", self.service), *(("scope", s) for s in scopes), *params.items()]
        return await self.client.get("/v2/token", params=query, auth=auth, headers=headers)

    async def post(self, **form: str) -> httpx.Response:
        fields = {"service": self.service, "client_id": "docker", **form}
        return await self.client.post("/v2/token", data=fields)

    async def claims(self, *scopes: str, auth: tuple[str, str] | None = None,
                     **params: str) -> dict[str, Any]:
        response = await self.get(*scopes, auth=auth, **params)
        assert response.status_code == 200, response.text
        return unverified(response.json()["token"])

    async def access(
        self, *scopes: str, auth: tuple[str, str] | None = None
    ) -> dict[str, list[str]]:
        """``name → actions`` of the token's access entries."""
        claims = await self.claims(*scopes, auth=auth)
        return {entry["name"]: entry["actions"] for entry in claims["access"]}


def login(name: str) -> tuple[str, str]:
    return (name, PASSWORDS[name])


async def populate(dockyard: Dockyard) -> tuple[str, str]:
    identity = dockyard.app[IDENTITY]
    with cheap_hashing():
        for name, password in PASSWORDS.items():
            await identity.create_user(ADMIN, name, email="", password=password)
    await identity.create_team(ADMIN, "devs", owner="olivia")
    await identity.set_member(ADMIN, "devs", "carl", "contributor")
    await identity.set_member(ADMIN, "devs", "vera", "viewer")
    namespaces: list[tuple[str, Visibility]] = [
        ("team", "private"), ("inner", "protected"), ("open", "public")]
    for namespace, visibility in namespaces:
        await identity.create_namespace(ADMIN, namespace, team="devs", visibility=visibility)
    await identity.create_bot(ADMIN, "robot", team="devs", role="contributor")
    _, alice_token = await identity.create_token(ADMIN, "alice", "laptop")
    _, robot_token = await identity.create_token(ADMIN, "robot", "ci")
    return alice_token, robot_token


@asynccontextmanager
async def world_of(tmp_path: Path, **overrides: str) -> AsyncIterator[World]:
    # initialise() runs its own event loop: not on this one
    config = await asyncio.to_thread(initialised, tmp_path, "http://127.0.0.1:9",
                                     auth_token_ttl_seconds=str(TTL), **overrides)
    async with running_dockyard(config) as dockyard, \
            httpx.AsyncClient(base_url=dockyard.url, timeout=30) as client:
        alice_token, robot_token = await populate(dockyard)
        yield World(dockyard, client, alice_token, robot_token)


@pytest.fixture
async def world(tmp_path: Path) -> AsyncIterator[World]:
    async with world_of(tmp_path) as running:
        yield running


def error_code(response: httpx.Response) -> str:
    """The error's code, once both error shapes are checked: Dockyard's ``error`` object (GET)
    or RFC 6749 §5.2's ``error`` and ``error_description`` (the OAuth2 POST), and
    distribution's ``errors`` list (which the docker CLI prints), with the same message."""
    (code, message), body = error_of(response), response.json()
    assert message
    if response.request.method == "POST":  # the OAuth2 shape, not Dockyard's object
        assert isinstance(body["error"], str), body
    (first,) = body["errors"]
    assert first["message"] == message
    assert first["code"]
    assert first["code"] == first["code"].upper()
    return code


def distribution_code(response: httpx.Response) -> str:
    code: str = response.json()["errors"][0]["code"]
    return code


# the response and the JWT ------------------------------------------------------------------

async def test_the_response_shape(world):
    before = datetime.now(UTC).replace(microsecond=0)
    response = await world.get("repository:team/app:pull", auth=login("olivia"))
    after = datetime.now(UTC)

    assert response.status_code == 200, response.text
    assert response.headers["Content-Type"].startswith("application/json")
    body = response.json()
    assert set(body) == {"token", "access_token", "expires_in", "issued_at"}
    assert body["token"] == body["access_token"]
    assert body["expires_in"] == TTL
    assert RFC3339_UTC.fullmatch(body["issued_at"]), body["issued_at"]
    issued_at = datetime.fromisoformat(body["issued_at"])
    assert before <= issued_at <= after
    assert int(issued_at.timestamp()) == unverified(body["token"])["iat"]


async def test_the_header_names_the_active_key_and_carries_its_certificate(world):
    config: Config = world.dockyard.config
    token = (await world.get("repository:team/app:pull", auth=login("olivia"))).json()["token"]
    header = jwt.get_unverified_header(token)
    active = keyring(config).active()

    assert header["typ"] == "JWT"
    assert header["alg"] == "ES256"
    assert header["x5c"] == active.x5c
    certificate = x509.load_der_x509_certificate(base64.b64decode(header["x5c"][0]))
    public_key = certificate.public_key()
    assert isinstance(public_key, ec.EllipticCurvePublicKey)
    assert header["kid"] == active.kid == libtrust_key_id(public_key)
    # the certificate is the one the registry trusts (auth.token.rootcertbundle)
    bundle = x509.load_pem_x509_certificates(config.path(config.auth.certificate_bundle)
                                              .read_bytes())
    assert certificate in bundle
    # and the signature verifies with it, as the registry checks it
    claims = jwt.decode(token, public_key, algorithms=["ES256"], audience=config.auth.service,
                        issuer=config.auth.issuer)
    assert claims["sub"] == "olivia"
    with pytest.raises(jwt.InvalidSignatureError):
        jwt.decode(token[:-4] + ("AAAA" if token[-4:] != "AAAA" else "BBBB"), public_key,
                   algorithms=["ES256"], audience=config.auth.service)


async def test_the_claims(world):
    config: Config = world.dockyard.config
    now = int(datetime.now(UTC).timestamp())
    claims = await world.claims("repository:team/app:pull,push", auth=login("carl"))

    assert claims["iss"] == config.auth.issuer
    assert claims["aud"] == config.auth.service
    assert isinstance(claims["aud"], str)  # registry 2.8 refuses an array
    assert claims["sub"] == "carl"
    for name in ("exp", "nbf", "iat"):
        assert type(claims[name]) is int
    assert abs(claims["iat"] - now) <= 2
    assert claims["exp"] - claims["iat"] == TTL
    assert claims["nbf"] <= claims["iat"]
    assert claims["iat"] - claims["nbf"] < 60  # within the registry's clock skew allowance
    assert isinstance(claims["jti"], str)
    assert len(claims["jti"]) >= 16
    assert claims["access"] == [
        {"type": "repository", "name": "team/app", "actions": ["pull", "push"]},
    ]


async def test_every_token_has_its_own_jti(world):
    tokens = await asyncio.gather(*(world.claims(f"repository:team/app{i}:pull",
                                                 auth=login("vera")) for i in range(20)))
    assert len({claims["jti"] for claims in tokens}) == 20


async def test_the_same_request_within_a_second_gets_the_same_token(world):
    """Only the signature is saved (RecentTokens): the same token, not a new one sharing a jti,
    and only for the same subject and access."""
    async def token(auth: tuple[str, str]) -> str:
        response = await world.get("repository:team/app:pull", auth=auth)
        assert response.status_code == 200, response.text
        value: str = response.json()["token"]
        return value

    while True:  # two requests that fell in the same second
        first, second = await token(login("vera")), await token(login("vera"))
        if unverified(first)["iat"] == unverified(second)["iat"]:
            break
    assert first == second
    assert await token(login("carl")) != first  # another subject
    await world.identity.set_member(ADMIN, "devs", "vera", "contributor")
    renewed = await world.claims("repository:team/app:pull,push", auth=login("vera"))
    assert renewed["jti"] != unverified(first)["jti"]
    assert renewed["access"][0]["actions"] == ["pull", "push"]


async def test_a_revoked_app_token_gets_no_token_it_had_a_moment_ago(world):
    alice = ("alice", world.alice_token)
    assert await world.access("repository:alice/app:pull", auth=alice) == {"alice/app": ["pull"]}
    await world.identity.revoke_token(ADMIN, "alice", "laptop")
    await assert_401(await world.get("repository:alice/app:pull", auth=alice))


def test_recent_tokens_last_one_second() -> None:
    recent, signed = RecentTokens(), []

    def sign() -> IssuedToken:
        signed.append(IssuedToken(f"token-{len(signed)}", 300, 0))
        return signed[-1]

    grants = (Grant("repository", "a/b", frozenset({"pull"})),)
    tokens = [recent.get(now, "alice", grants, 300, sign) for now in (10, 10, 11, 11)]
    assert [t.token for t in tokens] == ["token-0", "token-0", "token-1", "token-1"]
    assert recent.get(11, "alice", grants, 120, sign).token == "token-2"  # another ttl
    assert recent.get(11, "alice", (), 300, sign).token == "token-3"  # other grants


async def test_access_entries_carry_the_plain_type(world):
    claims = await world.claims("repository(plugin):team/app:pull", auth=login("olivia"))
    assert claims["access"] == [{"type": "repository", "name": "team/app", "actions": ["pull"]}]


async def test_several_scopes_repeated_and_space_separated(world):
    access = await world.access("repository:team/app:pull,push repository:open/lib:pull",
                                "repository:inner/x:pull", "repository:team/app:delete",
                                auth=login("carl"))
    assert access == {"team/app": ["pull", "push"], "open/lib": ["pull"], "inner/x": ["pull"]}


async def test_a_host_in_the_scope_name(world):
    access = await world.access("repository:localhost:5000/team/app:pull,push",
                                auth=login("carl"))
    assert access == {"localhost:5000/team/app": ["pull", "push"]}
    assert await world.access("repository:localhost:5000/team/app:pull",
                              auth=login("alice")) == {}


async def test_the_configured_ttl_is_expires_in(tmp_path):
    async with world_of(tmp_path) as world:
        body = (await world.get("repository:open/app:pull")).json()
        assert body["expires_in"] == TTL
        claims = unverified(body["token"])
        assert claims["exp"] - claims["iat"] == TTL


# who gets what -----------------------------------------------------------------------------

async def test_anonymous_callers_get_public_pulls_only(world):
    claims = await world.claims("repository:open/app:pull,push", "repository:inner/app:pull",
                                "repository:team/app:pull", "repository:nginx:pull",
                                "repository:alice/app:pull", "registry:catalog:*")
    assert claims["sub"] == ""
    assert claims["access"] == [{"type": "repository", "name": "open/app", "actions": ["pull"]}]


async def test_anonymous_pull_can_be_switched_off(tmp_path):
    async with world_of(tmp_path, auth_anonymous_pull="false") as world:
        assert await world.access("repository:open/app:pull") == {}
        assert await world.access("repository:open/app:pull", auth=login("alice")) == {
            "open/app": ["pull"]}


async def test_partial_grants(world):
    scopes = ("repository:team/app:pull,push,delete", "repository:nowhere/app:pull",
              "repository:inner/app:pull,push", "repository:bob/app:pull")
    assert await world.access(*scopes, auth=login("vera")) == {
        "team/app": ["pull"], "inner/app": ["pull"]}
    assert await world.access(*scopes, auth=login("carl")) == {
        "team/app": ["pull", "push"], "inner/app": ["pull", "push"]}
    assert await world.access(*scopes, auth=login("olivia")) == {
        "team/app": ["delete", "pull", "push"], "inner/app": ["pull", "push"]}
    assert await world.access(*scopes, auth=login("alice")) == {"inner/app": ["pull"]}
    assert await world.access(*scopes, auth=login("bob")) == {
        "inner/app": ["pull"], "bob/app": ["pull"]}
    assert await world.access(*scopes, auth=("admin", ADMIN_PASSWORD)) == {
        "team/app": ["delete", "pull", "push"], "nowhere/app": ["pull"],
        "inner/app": ["pull", "push"], "bob/app": ["pull"]}


async def test_a_token_granting_nothing_is_still_a_token(world):
    response = await world.get("repository:team/app:push", auth=login("alice"))
    assert response.status_code == 200
    assert unverified(response.json()["token"])["access"] == []


async def test_no_scope_is_a_login_check(world):
    claims = await world.claims(auth=login("alice"))
    assert claims["sub"] == "alice"
    assert claims["access"] == []


async def test_star_asks_for_everything_allowed(world):
    assert await world.access("repository:team/app:*", auth=login("carl")) == {
        "team/app": ["pull", "push"]}


async def test_personal_namespaces(world):
    assert await world.access("repository:alice/app:pull,push,delete",
                              auth=login("alice")) == {"alice/app": ["delete", "pull", "push"]}
    assert await world.access("repository:alice/app:pull", auth=login("bob")) == {}


async def test_a_namespace_with_a_dot_is_not_a_registry_host(world):
    """``john.doe/app`` is john.doe's repository (the registry asks for it by that name), not
    ``app`` on a registry called john.doe: another user must not be judged by the global
    namespace's visibility (protected: anyone signed in pulls)."""
    assert await world.access("repository:john.doe/secret:pull", auth=login("bob")) == {}
    assert await world.access("repository:john.doe/secret:pull") == {}
    assert await world.access("repository:john.doe/secret:pull,push",
                              auth=login("john.doe")) == {"john.doe/secret": ["pull", "push"]}


async def test_bots_with_app_tokens(world):
    access = await world.access("repository:team/app:pull,push,delete",
                                auth=("robot", world.robot_token))
    assert access == {"team/app": ["pull", "push"]}


async def test_the_catalog_is_for_admins_only(world):
    admin = await world.claims("registry:catalog:*", auth=("admin", ADMIN_PASSWORD))
    assert admin["access"] == [{"type": "registry", "name": "catalog", "actions": ["*"]}]
    for auth in (login("alice"), login("olivia"), ("robot", world.robot_token), None):
        assert (await world.claims("registry:catalog:*", auth=auth))["access"] == []


async def test_a_forged_account_changes_nothing(world):
    claims = await world.claims("repository:team/app:pull,push", "registry:catalog:*",
                                auth=login("alice"), account="admin")
    assert claims["sub"] == "alice"
    assert claims["access"] == []
    claims = await world.claims("repository:open/app:pull", account="olivia")
    assert claims["sub"] == ""


async def test_dockyards_own_tokens(world):
    authority = world.dockyard.app[AUTHORITY]
    pull = unverified(await authority.service_token("repository:team/app:pull,push,delete"))
    assert pull["sub"] == "dockyard:internal"
    assert pull["access"] == [{"type": "repository", "name": "team/app", "actions": ["pull"]}]
    assert pull["exp"] - pull["iat"] <= TTL
    catalog = unverified(await authority.service_token("registry:catalog:*"))
    assert catalog["access"] == [{"type": "registry", "name": "catalog", "actions": ["*"]}]


# authentication failures -------------------------------------------------------------------

async def assert_401(response: httpx.Response, code: str = "unauthorized") -> None:
    assert response.status_code == 401, response.text
    assert error_code(response) == code
    assert distribution_code(response) == "UNAUTHORIZED"
    assert "token" not in response.json()


async def test_wrong_password(world):
    await assert_401(await world.get("repository:open/app:pull", auth=("alice", "wrong")))


async def test_unknown_user(world):
    await assert_401(await world.get("repository:open/app:pull", auth=("mallory", "whatever")))


async def test_empty_credentials(world):
    await assert_401(await world.get("repository:open/app:pull", auth=("", "")))


async def test_disabled_user(world):
    await world.identity.set_enabled(ADMIN, "alice", enabled=False)
    await assert_401(await world.get(auth=login("alice")), "account_disabled")
    await assert_401(await world.get(auth=("alice", world.alice_token)), "account_disabled")


async def test_locked_after_max_failures(tmp_path):
    async with world_of(tmp_path, auth_max_failed_logins="3") as world:
        for _ in range(3):
            await assert_401(await world.get(auth=("alice", "wrong")))
        await assert_401(await world.get(auth=login("alice")), "account_locked")
        # the lock is on the password: other accounts and app tokens are not affected
        assert (await world.get(auth=login("bob"))).status_code == 200
        assert (await world.get(auth=("alice", world.alice_token))).status_code == 200


async def test_failures_below_the_limit_are_forgiven_by_a_success(tmp_path):
    async with world_of(tmp_path, auth_max_failed_logins="3") as world:
        for _ in range(2):
            await assert_401(await world.get(auth=("alice", "wrong")))
        assert (await world.get(auth=login("alice"))).status_code == 200
        for _ in range(2):
            await assert_401(await world.get(auth=("alice", "wrong")))
        assert (await world.get(auth=login("alice"))).status_code == 200


async def test_the_lock_backs_off(tmp_path):
    async with world_of(tmp_path, auth_max_failed_logins="2",
                        auth_lockout_seconds="1") as world:
        for _ in range(2):
            await assert_401(await world.get(auth=("alice", "wrong")))
        await assert_401(await world.get(auth=login("alice")), "account_locked")
        await asyncio.sleep(1.1)
        # past the limit, each failure locks again, for twice as long
        await assert_401(await world.get(auth=("alice", "wrong")))
        await asyncio.sleep(1.1)
        await assert_401(await world.get(auth=login("alice")), "account_locked")
        await asyncio.sleep(1)
        assert (await world.get(auth=login("alice"))).status_code == 200
        # a success forgives: the count starts again from nothing
        await assert_401(await world.get(auth=("alice", "wrong")))
        assert (await world.get(auth=login("alice"))).status_code == 200


async def test_parallel_guesses_verify_at_most_the_limit(tmp_path, verifications):
    # the address's budget out of the way: this is the account's count
    async with world_of(tmp_path, auth_max_failed_logins="3",
                        auth_max_failed_logins_per_address="1000") as world:
        guesses = await asyncio.gather(*(world.get(auth=("alice", f"guess-{i}"))
                                         for i in range(60)))
        assert sorted({r.status_code for r in guesses}) == [401]
        # each guess was refused before its verification, but the limit's worth of them
        assert len(verifications) == 3
        codes = [error_code(r) for r in guesses]
        assert (codes.count("unauthorized"), codes.count("account_locked")) == (3, 57)
        failures = [e for e in await identity_events(world) if e["type"] == "user.login_failed"]
        assert [e["details"]["reason"] for e in failures].count(
            "wrong password; locked after 3 failures") == 1
        assert len(failures) == 3
        await assert_401(await world.get(auth=login("alice")), "account_locked")


async def test_unknown_names_lock_like_accounts(tmp_path):
    # a lock does not tell which names have an account
    async with world_of(tmp_path, auth_max_failed_logins="2") as world:
        for _ in range(2):
            await assert_401(await world.get(auth=("nobody", "wrong")))
        await assert_401(await world.get(auth=("nobody", "wrong")), "account_locked")


async def test_failures_from_one_address_are_throttled(tmp_path):
    async with world_of(tmp_path, auth_max_failed_logins_per_address="3") as world:
        for name in ("alice", "bob", "nobody"):
            await assert_401(await world.get(auth=(name, "wrong")))
        # password spraying: the address waits, right passwords included; app tokens do not
        throttled = await world.get(auth=login("carl"))
        assert throttled.status_code == 429
        assert error_code(throttled) == "too_many_failures"
        assert distribution_code(throttled) == "TOOMANYREQUESTS"
        assert 1 <= int(throttled.headers["Retry-After"]) <= 600
        assert (await world.get(auth=("alice", world.alice_token))).status_code == 200
        # the throttled attempt never reached carl's account, and other addresses are served
        found = await world.identity.store.get_user("carl")
        assert found is not None
        assert found[0].failed_logins == 0
        async with from_address(world, "127.0.0.2") as other:
            assert (await other.get("/v2/token", params={"service": world.service},
                                    auth=login("carl"))).status_code == 200


async def test_behind_a_trusted_proxy_failures_count_by_the_forwarded_address(tmp_path):
    async with world_of(tmp_path, auth_max_failed_logins_per_address="2",
                        server_trusted_proxies="127.0.0.1") as world:
        def via(client: str) -> dict[str, str]:
            return {"X-Forwarded-For": f"198.51.100.9, {client}"}
        for name in ("alice", "bob"):
            await assert_401(await world.get(auth=(name, "wrong"), headers=via("203.0.113.7")))
        throttled = await world.get(auth=login("carl"), headers=via("203.0.113.7"))
        assert error_code(throttled) == "too_many_failures"
        # the proxy's other clients keep signing in
        assert (await world.get(auth=login("carl"), headers=via("203.0.113.8"))).status_code \
            == 200


async def test_without_trusted_proxies_a_forwarded_address_escapes_nothing(tmp_path):
    async with world_of(tmp_path, auth_max_failed_logins_per_address="2") as world:
        for i, name in enumerate(("alice", "bob")):
            await assert_401(await world.get(auth=(name, "wrong"),
                                             headers={"X-Forwarded-For": f"203.0.113.{i}"}))
        throttled = await world.get(auth=login("carl"),
                                    headers={"X-Forwarded-For": "203.0.113.99"})
        assert error_code(throttled) == "too_many_failures"


async def test_parallel_guesses_from_one_address_verify_at_most_its_budget(
        tmp_path, verifications):
    async with world_of(tmp_path, auth_max_failed_logins_per_address="4") as world:
        names = [*PASSWORDS, "nobody", "robot"]
        guesses = await asyncio.gather(*(world.get(auth=(names[i % len(names)], f"guess-{i}"))
                                         for i in range(60)))
        assert len(verifications) == 4
        assert sorted(r.status_code for r in guesses) == [401] * 4 + [429] * 56


async def test_a_right_password_gives_the_address_its_slot_back(tmp_path):
    async with world_of(tmp_path, auth_max_failed_logins_per_address="2") as world:
        await assert_401(await world.get(auth=("alice", "wrong")))
        for name in ("bob", "olivia", "carl", "vera"):
            assert (await world.get(auth=login(name))).status_code == 200
        await assert_401(await world.get(auth=("alice", "wrong")))
        assert (await world.get(auth=login("john.doe"))).status_code == 429


async def test_the_operator_unlocks_from_the_cli(tmp_path):
    # break-glass: the CLI needs no password, so no lock or throttle stands in its way
    async with world_of(tmp_path, auth_max_failed_logins="2") as world:
        for _ in range(2):
            await assert_401(await world.get(auth=("admin", "wrong")))
        await assert_401(await world.get(auth=("admin", ADMIN_PASSWORD)), "account_locked")
        config = world.dockyard.config
        await asyncio.to_thread(main, ["user", "unlock", "admin", "--config",
                                       str(config.server.data_dir / "dockyard.toml")])
        await asyncio.sleep(float(config.auth.identity_cache_seconds))
        assert (await world.get(auth=("admin", ADMIN_PASSWORD))).status_code == 200


async def test_bots_cannot_sign_in_with_a_password(world):
    await assert_401(await world.get(auth=("robot", "")))
    await assert_401(await world.get(auth=("robot", "any-password-at-all")))


async def test_revoked_app_token(world):
    # Used first, so the revocation has to reach the token endpoint's cached read at once.
    assert (await world.get(auth=("alice", world.alice_token))).status_code == 200
    await world.identity.revoke_token(ADMIN, "alice", "laptop")
    await assert_401(await world.get(auth=("alice", world.alice_token)))


async def test_a_membership_change_applies_to_the_next_token(world):
    carl = ("carl", PASSWORDS["carl"])
    assert await world.access("repository:team/app:pull,push", auth=carl) == {
        "team/app": ["pull", "push"]}
    await world.identity.set_member(ADMIN, "devs", "carl", "viewer")
    assert await world.access("repository:team/app:pull,push", auth=carl) == {
        "team/app": ["pull"]}
    await world.identity.remove_member(ADMIN, "devs", "carl")
    assert await world.access("repository:team/app:pull,push", auth=carl) == {}


async def test_a_visibility_change_applies_to_the_next_token(world):
    """Grants are cached per principal and scopes: a namespace change drops them at once."""
    for _ in range(2):  # the second answer comes from the cache
        assert await world.access("repository:team/app:pull") == {}
    await world.identity.update_namespace(ADMIN, "team", visibility="public")
    assert await world.access("repository:team/app:pull") == {"team/app": ["pull"]}
    await world.identity.update_namespace(ADMIN, "team", visibility="private")
    assert await world.access("repository:team/app:pull") == {}


async def test_an_admin_flag_change_applies_to_the_next_token(world):
    alice = login("alice")
    for _ in range(2):
        assert await world.access("registry:catalog:*", auth=alice) == {}
    await world.identity.set_admin(ADMIN, "alice", admin=True)
    assert await world.access("registry:catalog:*", auth=alice) == {"catalog": ["*"]}
    await world.identity.set_admin(ADMIN, "alice", admin=False)
    assert await world.access("registry:catalog:*", auth=alice) == {}


async def test_expired_app_token(world):
    expires = datetime.now(UTC) + timedelta(seconds=1)
    _, secret = await world.identity.create_token(ADMIN, "bob", "brief", expires_at=expires)
    assert (await world.get(auth=("bob", secret))).status_code == 200
    await asyncio.sleep(max(0.0, (expires - datetime.now(UTC)).total_seconds()) + 0.1)
    await assert_401(await world.get(auth=("bob", secret)))


async def test_an_app_token_with_another_username(world):
    await assert_401(await world.get(auth=("bob", world.alice_token)))
    await assert_401(await world.get(auth=("admin", world.alice_token)))


async def test_an_unknown_app_token(world):
    await assert_401(await world.get(auth=("alice", "dyat_" + "x" * 43)))


async def test_the_token_endpoint_takes_basic_only(world):
    response = await world.get(headers={"Authorization": f"Bearer {world.alice_token}"})
    await assert_401(response)


async def test_a_401_challenges_for_basic(world):
    response = await world.get(auth=("alice", "wrong"))
    assert response.headers["WWW-Authenticate"].startswith("Basic ")


# application tokens ------------------------------------------------------------------------

async def test_an_app_token_is_a_docker_password(world):
    before = datetime.now(UTC)
    (token,) = await world.identity.tokens(ADMIN, "alice")
    assert token.last_used_at is None

    claims = await world.claims("repository:alice/app:push", auth=("alice", world.alice_token))

    assert claims["sub"] == "alice"
    assert claims["access"] == [{"type": "repository", "name": "alice/app", "actions": ["push"]}]
    (token,) = await world.identity.tokens(ADMIN, "alice")
    assert token.last_used_at is not None
    assert before - timedelta(seconds=1) <= token.last_used_at <= datetime.now(UTC)


async def test_an_app_token_on_the_api(world):
    """Bearer (and Basic) app tokens are API credentials: who they prove, and that the API's
    handlers take them (a bad one is a 401, never a fall-back to anonymous)."""
    authenticator = world.dockyard.app[AUTHENTICATOR]
    bearer = f"Bearer {world.alice_token}"
    assert await authenticator.from_header(bearer) == Principal(
        "alice", "user", credential="app_token")
    assert await authenticator.from_header(f"bearer {world.robot_token}") == Principal(
        "robot", "bot", credential="app_token")

    for headers in ({"Authorization": bearer},
                    {"Authorization": "Basic " + base64.b64encode(
                        f"alice:{world.alice_token}".encode()).decode()}):
        response = await world.client.get("/api/v1/repositories", headers=headers)
        assert response.status_code == 200, response.text
    await world.identity.revoke_token(ADMIN, "alice", "laptop")
    for header in (bearer, "Bearer dyat_unknown", f"Bearer {PASSWORDS['alice']}"):
        response = await world.client.get("/api/v1/repositories",
                                          headers={"Authorization": header})
        assert response.status_code == 401, header
        assert response.headers["WWW-Authenticate"].startswith("Basic ")


# refresh tokens ----------------------------------------------------------------------------

async def docker_login(world: World, name: str = "carl", **params: str) -> str:
    """The refresh token ``docker login`` gets (and keeps as its identity token)."""
    response = await world.get(auth=login(name), offline_token="true", client_id="docker",
                               **params)
    assert response.status_code == 200, response.text
    secret: str = response.json()["refresh_token"]
    return secret


async def refreshed(world: World, refresh_token: str, **form: str) -> httpx.Response:
    return await world.post(grant_type="refresh_token", refresh_token=refresh_token, **form)


async def assert_invalid_grant(response: httpx.Response, says: str = "") -> None:
    assert response.status_code == 400, response.text
    assert error_code(response) == "invalid_grant"
    assert says in error_of(response)[1]


async def test_the_refresh_flow(world):
    first = await world.get("repository:team/app:pull", auth=login("carl"),
                            offline_token="true", client_id="docker")
    assert first.status_code == 200, first.text
    refresh_token = first.json()["refresh_token"]
    assert refresh_token not in {PASSWORDS["carl"], first.json()["token"]}

    response = await refreshed(world, refresh_token,
                               scope="repository:team/app:pull,push repository:team/x:delete")

    assert response.status_code == 200, response.text
    body = response.json()
    assert body["expires_in"] == TTL
    assert RFC3339_UTC.fullmatch(body["issued_at"])
    assert body["scope"] == "repository:team/app:pull,push"  # what was granted
    # rotated: the answer carries the token that replaces the one presented
    assert body["refresh_token"].startswith("dyrt_")
    assert body["refresh_token"] != refresh_token
    claims = unverified(body["access_token"])
    assert claims["sub"] == "carl"
    assert claims["aud"] == world.service
    assert claims["access"] == [
        {"type": "repository", "name": "team/app", "actions": ["pull", "push"]}]


async def test_a_client_that_keeps_its_first_token_goes_on_like_docker(world):
    """The docker daemon presents the token of docker login every time (it stores no rotated
    one): that stays valid as long as none of its successors is used."""
    identity_token = await docker_login(world)
    for _ in range(3):
        response = await refreshed(world, identity_token, scope="repository:team/app:pull")
        assert response.status_code == 200, response.text
        assert unverified(response.json()["access_token"])["sub"] == "carl"


async def test_a_rotating_client_ends_each_token_it_replaced(world):
    first = await docker_login(world)
    second = (await refreshed(world, first)).json()["refresh_token"]
    third = (await refreshed(world, second)).json()["refresh_token"]  # the successor used
    assert (await refreshed(world, third)).status_code == 200


async def test_a_reused_refresh_token_revokes_its_whole_family(world):
    """A thief and the owner both using one sign-in: the first to present an ended token
    ends the family for both; other sign-ins are not touched."""
    stolen = await docker_login(world)
    other_login = await docker_login(world)
    owners = (await refreshed(world, stolen)).json()["refresh_token"]
    newest = (await refreshed(world, owners)).json()["refresh_token"]  # ``stolen`` ends
    await assert_invalid_grant(await refreshed(world, stolen), "already exchanged")
    for token in (owners, newest):
        await assert_invalid_grant(await refreshed(world, token))
    assert (await refreshed(world, other_login)).status_code == 200


async def test_a_refresh_token_is_for_the_client_it_was_issued_to(world):
    refresh_token = await docker_login(world)
    await assert_invalid_grant(await refreshed(world, refresh_token, client_id="skopeo"),
                               "another client")
    assert (await refreshed(world, refresh_token)).status_code == 200


async def test_offline_tokens_need_a_client_id(world):
    response = await world.get(auth=login("carl"), offline_token="true")
    assert response.status_code == 400
    assert error_code(response) == "invalid_request"
    assert "client_id" in error_of(response)[1]


async def test_no_refresh_token_unless_asked(world):
    body = (await world.get(auth=login("carl"))).json()
    assert "refresh_token" not in body
    anonymous = (await world.get(offline_token="true", client_id="docker")).json()
    assert "refresh_token" not in anonymous


async def test_refresh_is_refused_once_the_user_is_disabled(world):
    refresh_token = await docker_login(world)
    await world.identity.set_enabled(ADMIN, "carl", enabled=False)
    await assert_invalid_grant(await refreshed(world, refresh_token), "disabled")
    await world.identity.set_enabled(ADMIN, "carl", enabled=True)
    # disabling ended it for good
    await assert_invalid_grant(await refreshed(world, refresh_token), "credentials changed")


@pytest.mark.parametrize("change", ["password", "demotion", "sign-out"])
async def test_credential_changes_end_refresh_tokens(world, change):
    await world.identity.set_admin(ADMIN, "carl", admin=True)
    refresh_token = await docker_login(world)
    if change == "password":
        await world.identity.change_password(ADMIN, "carl", "a-brand-new-password")
    elif change == "demotion":
        await world.identity.set_admin(ADMIN, "carl", admin=False)
    else:
        await world.identity.sign_out_everywhere(ADMIN, "carl")
    await assert_invalid_grant(await refreshed(world, refresh_token), "credentials changed")


async def test_a_lockout_ends_refresh_tokens(tmp_path):
    async with world_of(tmp_path, auth_max_failed_logins="3") as world:
        refresh_token = await docker_login(world)
        for _ in range(3):
            await assert_401(await world.get(auth=("carl", "wrong")))
        await assert_invalid_grant(await refreshed(world, refresh_token), "credentials changed")


async def test_refresh_tokens_minted_with_an_app_token_end_with_it(world):
    from_token = (await world.post(grant_type="password", username="alice",
                                   password=world.alice_token, access_type="offline")
                  ).json()["refresh_token"]
    from_password = await docker_login(world, "alice")
    rotated = (await refreshed(world, from_token)).json()["refresh_token"]
    await world.identity.revoke_token(ADMIN, "alice", "laptop")
    for token in (from_token, rotated):
        await assert_invalid_grant(await refreshed(world, token))
    assert (await refreshed(world, from_password)).status_code == 200


async def test_refresh_tokens_expire(tmp_path):
    async with world_of(tmp_path, auth_refresh_token_sliding_seconds="2",
                        auth_refresh_token_absolute_seconds="4") as world:
        unused = await docker_login(world)
        used = await docker_login(world)
        await asyncio.sleep(1.5)
        assert (await refreshed(world, used)).status_code == 200  # slides on
        await asyncio.sleep(1)
        await assert_invalid_grant(await refreshed(world, unused), "expired unused")
        assert (await refreshed(world, used)).status_code == 200
        await asyncio.sleep(1.6)
        await assert_invalid_grant(await refreshed(world, used), "has expired")


async def test_an_app_tokens_refresh_tokens_do_not_outlive_it(world):
    _, secret = await world.identity.create_token(
        ADMIN, "bob", "short", expires_at=datetime.now(UTC) + timedelta(seconds=1.5))
    refresh_token = (await world.post(grant_type="password", username="bob", password=secret,
                                      access_type="offline")).json()["refresh_token"]
    await asyncio.sleep(1.6)
    await assert_invalid_grant(await refreshed(world, refresh_token), "has expired")


async def test_an_unknown_refresh_token(world):
    for secret in ("dyrt_unknown", "", world.alice_token):
        await assert_invalid_grant(await refreshed(world, secret), "unknown")


async def test_the_password_grant(world):
    response = await world.post(grant_type="password", username="olivia",
                                password=PASSWORDS["olivia"], access_type="offline",
                                scope="repository:team/app:pull,delete")
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["scope"] == "repository:team/app:delete,pull"
    assert body["refresh_token"].startswith("dyrt_")
    assert unverified(body["access_token"])["sub"] == "olivia"
    refreshed = await world.post(grant_type="refresh_token",
                                 refresh_token=body["refresh_token"])
    assert refreshed.status_code == 200, refreshed.text
    online = await world.post(grant_type="password", username="olivia",
                              password=PASSWORDS["olivia"])
    assert "refresh_token" not in online.json()


async def test_the_password_grant_takes_app_tokens_and_refuses_bad_passwords(world):
    ok = await world.post(grant_type="password", username="robot", password=world.robot_token)
    assert ok.status_code == 200, ok.text
    bad = await world.post(grant_type="password", username="olivia", password="wrong")
    assert bad.status_code == 401
    assert error_code(bad) == "unauthorized"


async def test_oauth_requests_need_a_client_id(world):
    response = await world.post(client_id="", grant_type="password", username="olivia",
                                password=PASSWORDS["olivia"])
    assert response.status_code == 400
    assert error_code(response) == "invalid_request"
    assert "client_id" in error_of(response)[1]


@pytest.mark.parametrize("grant_type", ["client_credentials", "authorization_code", ""])
async def test_unsupported_grant_types(world, grant_type):
    response = await world.post(grant_type=grant_type, username="olivia",
                                password=PASSWORDS["olivia"])
    assert response.status_code == 400
    assert error_code(response) == "unsupported_grant_type"


# request errors ----------------------------------------------------------------------------

async def test_another_service_is_a_400(world):
    response = await world.client.get("/v2/token", params={"service": "someone-else"},
                                      auth=login("alice"))
    assert response.status_code == 400
    assert error_code(response) == "invalid_request"
    assert "someone-else" in response.json()["error"]["message"]
    posted = await world.post(service="someone-else", grant_type="password",
                              username="alice", password=PASSWORDS["alice"])
    assert posted.status_code == 400


async def test_a_missing_service_is_the_configured_one(world):
    response = await world.client.get("/v2/token", auth=login("alice"))
    assert response.status_code == 200
    assert unverified(response.json()["token"])["aud"] == world.service


@pytest.mark.parametrize("scope", ["repository:team/app", "repository::pull",
                                   "Repository:team/app:pull", "repository:team/app:pull;rm"])
async def test_a_malformed_scope_is_a_400_naming_it(world, scope):
    response = await world.get("repository:open/app:pull", scope, auth=login("alice"))
    assert response.status_code == 400
    assert error_code(response) == "invalid_scope"
    assert scope in response.json()["error"]["message"]
    posted = await world.post(grant_type="password", username="alice",
                              password=PASSWORDS["alice"], scope=scope)
    assert posted.status_code == 400
    assert scope in posted.json()["errors"][0]["message"]


async def test_too_many_scopes_is_a_400(world):
    scopes = [f"repository:open/app{i}:pull" for i in range(100)]
    response = await world.get(*scopes)
    assert response.status_code == 400
    assert error_code(response) == "invalid_scope"


# rate limits -------------------------------------------------------------------------------

async def test_requests_per_address_are_limited(tmp_path):
    async with world_of(tmp_path, auth_rate_per_ip_per_minute="5") as world:
        for _ in range(5):
            assert (await world.get("repository:open/app:pull")).status_code == 200
        response = await world.get("repository:open/app:pull")
        assert response.status_code == 429
        assert error_code(response) == "too_many_requests"
        assert distribution_code(response) == "TOOMANYREQUESTS"
        assert 1 <= int(response.headers["Retry-After"]) <= 61
        # the limit holds whatever the credentials
        assert (await world.get(auth=login("alice"))).status_code == 429
        assert (await world.post(grant_type="password", username="alice",
                                 password=PASSWORDS["alice"])).status_code == 429


async def test_requests_per_account_are_limited(tmp_path):
    async with world_of(tmp_path, auth_rate_per_user_per_minute="3") as world:
        # wrong passwords are the lockout's to count: anyone may claim alice's name, and
        # must not spend her budget that way
        for _ in range(3):
            await assert_401(await world.get(auth=("alice", "wrong")))
        for _ in range(3):
            assert (await world.get(auth=login("alice"))).status_code == 200
        response = await world.get(auth=login("alice"))
        assert response.status_code == 429
        assert int(response.headers["Retry-After"]) >= 1
        # the account's budget, whatever the credential; other accounts are not affected
        assert (await world.get(auth=("alice", world.alice_token))).status_code == 429
        await assert_401(await world.get(auth=("alice", "wrong")))
        assert (await world.get(auth=login("bob"))).status_code == 200
        assert (await world.get()).status_code == 200


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def test_the_rate_window_moves():
    clock = FakeClock()
    limits = RateLimits(per_ip=3, per_user=100, clock=clock)
    for step in (0, 10, 20):
        clock.now = 1000.0 + step
        await limits.check_address("10.0.0.1")
    clock.now = 1030.0
    with pytest.raises(TooManyRequests) as refused:
        await limits.check_address("10.0.0.1")
    assert refused.value.headers == {"Retry-After": "30"}  # when the first request leaves
    await limits.check_address("10.0.0.2")  # another address has its own window
    clock.now = 1060.0
    await limits.check_address("10.0.0.1")  # the first request has left the window
    with pytest.raises(TooManyRequests):
        await limits.check_address("10.0.0.1")
    clock.now = 1070.0
    await limits.check_address("10.0.0.1")


async def test_refused_requests_use_no_budget():
    clock = FakeClock()
    limits = RateLimits(per_ip=100, per_user=1, clock=clock)
    await limits.check_account("alice")
    for _ in range(5):
        with pytest.raises(TooManyRequests):
            await limits.check_account("alice")
    clock.now += 60
    await limits.check_account("alice")


async def test_idle_clients_are_forgotten():
    clock = FakeClock()
    limits = RateLimits(per_ip=10, per_user=10, clock=clock)
    for i in range(1000):
        await limits.check_address(f"10.0.{i // 256}.{i % 256}")
        await limits.check_account(f"user{i}")
    assert len(limits._hits) == 2000
    clock.now += 61
    await limits.check_address("10.1.0.1")
    assert len(limits._hits) == 1


# the verified-credential cache -------------------------------------------------------------

@pytest.fixture
def verifications(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The argon2 verifications that really run, by password."""
    calls: list[str] = []
    real = auth_service.verify_password

    def counting(password_hash: str | None, password: str) -> bool:
        calls.append(password)
        return real(password_hash, password)

    monkeypatch.setattr(auth_service, "verify_password", counting)
    return calls


async def test_a_repeated_login_skips_argon2(world, verifications):
    for _ in range(5):
        assert (await world.get("repository:team/app:pull", auth=login("vera"))).status_code \
            == 200
    assert verifications == [PASSWORDS["vera"]]
    # other credentials are verified on their own
    assert (await world.get(auth=("vera", "wrong"))).status_code == 401
    assert verifications == [PASSWORDS["vera"], "wrong"]
    assert (await world.get(auth=("vera", "wrong"))).status_code == 401
    assert verifications == [PASSWORDS["vera"], "wrong", "wrong"]  # failures are never cached


async def test_a_password_change_invalidates_the_cache(world, verifications):
    assert (await world.get(auth=login("vera"))).status_code == 200
    await world.identity.change_password(ADMIN, "vera", "vera-new-password")

    await assert_401(await world.get(auth=login("vera")))
    assert (await world.get(auth=("vera", "vera-new-password"))).status_code == 200
    assert (await world.get(auth=("vera", "vera-new-password"))).status_code == 200
    assert verifications == [PASSWORDS["vera"], PASSWORDS["vera"], "vera-new-password"]


async def test_disabling_invalidates_the_cache(world, verifications):
    assert (await world.get(auth=login("vera"))).status_code == 200
    await world.identity.set_enabled(ADMIN, "vera", enabled=False)
    await assert_401(await world.get(auth=login("vera")), "account_disabled")
    await world.identity.set_enabled(ADMIN, "vera", enabled=True)
    assert (await world.get(auth=login("vera"))).status_code == 200
    # the refused attempt was verified (a disabled account is told so only once its password
    # checks out), and the first login after re-enabling is verified anew
    assert verifications == [PASSWORDS["vera"]] * 3


async def test_signing_out_everywhere_and_demotion_invalidate_the_cache(world, verifications):
    """Both increment the credential epoch, which the cached verification is keyed on."""
    assert (await world.get(auth=login("vera"))).status_code == 200
    response = await world.client.delete("/api/v1/users/vera/sessions", auth=login("vera"))
    assert response.status_code == 204, response.text
    assert (await world.get(auth=login("vera"))).status_code == 200
    assert verifications == [PASSWORDS["vera"]] * 2

    await world.identity.set_admin(ADMIN, "vera", admin=True)
    assert (await world.get(auth=login("vera"))).status_code == 200
    await world.identity.set_admin(ADMIN, "vera", admin=False)
    assert (await world.get(auth=login("vera"))).status_code == 200
    assert verifications == [PASSWORDS["vera"]] * 3


async def test_a_lockout_applies_to_cached_credentials(tmp_path, verifications):
    async with world_of(tmp_path, auth_max_failed_logins="3") as world:
        assert (await world.get(auth=login("vera"))).status_code == 200
        for _ in range(3):
            await assert_401(await world.get(auth=("vera", "wrong")))
        await assert_401(await world.get(auth=login("vera")), "account_locked")
        assert verifications == [PASSWORDS["vera"], "wrong", "wrong", "wrong"]


async def test_the_cache_can_be_turned_off(tmp_path, verifications):
    async with world_of(tmp_path, auth_credential_cache_seconds="0") as world:
        for _ in range(3):
            assert (await world.get(auth=login("vera"))).status_code == 200
        assert verifications == [PASSWORDS["vera"]] * 3


async def test_unknown_accounts_pay_a_verification(world, verifications):
    await assert_401(await world.get(auth=("nobody", "some-password")))
    assert verifications == ["some-password"]


async def test_concurrent_misses_share_one_verification(world, verifications, monkeypatch):
    # Each verification takes long enough that every request arrives while the first one
    # runs, however busy the machine: what is measured is sharing, not speed.
    counting = auth_service.verify_password

    def slow(password_hash: str | None, password: str) -> bool:
        time.sleep(1)
        return counting(password_hash, password)

    monkeypatch.setattr(auth_service, "verify_password", slow)
    responses = await asyncio.gather(*(world.get(auth=login("vera")) for _ in range(20)))
    assert {r.status_code for r in responses} == {200}
    assert verifications == [PASSWORDS["vera"]]
    # one sign-in recorded, not one per token request
    logins = [e for e in await identity_events(world) if e["type"] == "user.login"]
    assert [e["subject"] for e in logins] == ["vera"]
    # wrong guesses that arrive together are one failure, too
    wrong = await asyncio.gather(*(world.get(auth=("vera", "wrong")) for _ in range(5)))
    assert {r.status_code for r in wrong} == {401}
    assert verifications == [PASSWORDS["vera"], "wrong"]


# no secret in the logs, none at rest -------------------------------------------------------

def leaks(records: list[logging.LogRecord], secrets: dict[str, str]) -> list[str]:
    found = []
    for record in records:
        texts = [record.getMessage(), *(repr(v) for v in vars(record).values())]
        found.extend(f"{what} in {record.name}: {record.getMessage()!r}"
                     for what, secret in secrets.items() if any(secret in t for t in texts))
    return found


async def test_no_secret_is_logged_or_stored(world, caplog):
    caplog.set_level(logging.DEBUG)
    password = PASSWORDS["olivia"]
    ok = await world.get("repository:team/app:pull", auth=("olivia", password),
                         offline_token="true", client_id="docker")
    assert ok.status_code == 200
    refresh_token = ok.json()["refresh_token"]
    assert (await world.get("repository:team/app:pull", auth=("alice", world.alice_token))
            ).status_code == 200
    assert (await world.post(grant_type="refresh_token", refresh_token=refresh_token,
                             scope="repository:team/app:pull")).status_code == 200
    assert (await world.post(grant_type="password", username="olivia",
                             password=password)).status_code == 200
    assert (await world.get(auth=("olivia", password + "-typo"))).status_code == 401
    assert (await world.get(auth=("alice", world.alice_token + "x"))).status_code == 401
    assert (await world.get(headers={"Authorization": f"Bearer {refresh_token}"})
            ).status_code == 401
    assert caplog.records, "the token endpoint logs something; this test must see it"

    secrets = {
        "the password": password,
        "the app token": world.alice_token,
        "the app token's random part": world.alice_token.removeprefix("dyat_"),
        "the refresh token": refresh_token,
        "the Basic credentials": base64.b64encode(f"olivia:{password}".encode()).decode(),
    }
    assert leaks(caplog.records, secrets) == []
    # nor are they stored: only hashes are
    data_dir: Path = world.dockyard.data_dir
    for path in data_dir.rglob("*"):
        if path.is_file():
            content = path.read_bytes()
            for what, secret in secrets.items():
                assert secret.encode() not in content, f"{what} in {path}"


def test_leaks_finds_secrets_in_messages_and_extra_fields():
    """The detector of the test above detects."""
    record = logging.LogRecord("x", logging.INFO, __file__, 1, "login %s", ("pw",), None)
    assert leaks([record], {"p": "pw"})
    record = logging.LogRecord("x", logging.INFO, __file__, 1, "login", None, None)
    record.user = {"password": "pw"}
    assert leaks([record], {"p": "pw"})
