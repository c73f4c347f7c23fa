"""Who may pull, push and delete, proven through the real registry verifying Dockyard's JWTs.

One registry (run from the registry.yml `dockyard init` wrote, so it demands our tokens) and one
Dockyard serve the whole module. A team owns three namespaces, one per visibility; every actor
(owner, contributor, viewer, outsider, anonymous, disabled, a bot, a user's application token)
tries every action on each with skopeo, and the outcome is checked against a table written out
by hand (policy.py's docstring in table form), then against the registry's own state.

skopeo always runs in a thread: Dockyard shares this event loop and must answer the token
requests the registry sends skopeo to while skopeo waits.
"""

from __future__ import annotations

import asyncio
import itertools
import re
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest
import pytest_asyncio

from services.auth.access import AUTHORITY, IDENTITY
from services.auth.policy import Principal, Role, Visibility
from services.auth.tokens import Grant
from services.core.config import Config
from services.core.registry import ManifestNotFound
from services.core.web import REGISTRY
from tests.support.dockyard import (
    ADMIN_PASSWORD,
    Dockyard,
    initialised,
    registry_for,
    running_dockyard,
)
from tests.support.images import build_oci_image
from tests.support.openapi import assert_matches_openapi
from tests.support.registry import (
    RegistryProcess,
    SkopeoError,
    free_port,
    require_registry_tools,
    skopeo_copy,
    skopeo_delete,
)
from tests.support.tokens import unverified
from tests.support.waiting import eventually

pytestmark = [pytest.mark.registry, pytest.mark.asyncio(loop_scope="module")]

T = TypeVar("T")

ADMIN = Principal("admin", "user", admin=True)
ADMIN_CREDS = f"admin:{ADMIN_PASSWORD}"
PASSWORD = "e2e-password-42"
TEAM = "acme"
VISIBILITIES: tuple[Visibility, ...] = ("private", "protected", "public")
# One shared layer keeps pushes small; each image differs by its salt (a config label), so no
# two cases share a manifest digest and deleting one never takes another's tag with it.
LAYERS = [{"etc/os-release": b"ID=debian\n"}, {"srv/app": b"app"}]

# What each actor may do in the team's namespace of each visibility, with the default policy
# (anonymous_pull on, delete_contributors off, push_policy allow-teams). "disabled" was a
# contributor; "bot" is a contributor bot using its token; "app-token" is the owner's token.
#                  private               protected             public
EXPECTED: dict[str, tuple[str, str, str]] = {
    "owner":       ("pull push delete",  "pull push delete",  "pull push delete"),
    "contributor": ("pull push",         "pull push",         "pull push"),
    "viewer":      ("pull",              "pull",              "pull"),
    "outsider":    ("",                  "pull",              "pull"),
    "anonymous":   ("",                  "",                  "pull"),
    "disabled":    ("",                  "",                  ""),
    "bot":         ("pull push",         "pull push",         "pull push"),
    "app-token":   ("pull push delete",  "pull push delete",  "pull push delete"),
}
ACTIONS = ("pull", "push", "delete")
CASES = [
    (actor, visibility, action, action in EXPECTED[actor][VISIBILITIES.index(visibility)].split())
    for actor, visibility, action in itertools.product(EXPECTED, VISIBILITIES, ACTIONS)
]

# skopeo's wording varies by step ("unauthorized: authentication required", "denied: …",
# "invalid username/password"); any of them says the registry or Dockyard refused, which tells
# a refusal apart from a broken setup (connection refused, manifest unknown).
REFUSED = re.compile(r"unauthori[sz]ed|denied|authentication required|invalid username",
                     re.IGNORECASE)


@dataclass
class World:
    dockyard: Dockyard
    registry: RegistryProcess
    layout: Path
    creds: dict[str, str | None]  # actor -> skopeo credentials ("user:secret"), None: anonymous
    seeded: dict[str, str]  # visibility -> digest of acme-<visibility>/app:seed
    digests: dict[str, str]  # layout tag -> manifest digest
    pushed: set[tuple[str, str]] = field(default_factory=set)  # (repository, tag) pushed here
    deleted: set[tuple[str, str]] = field(default_factory=set)  # (repository, tag) deleted here

    def ref(self, repository: str, tag: str) -> str:
        return f"docker://{self.registry.host}/{repository}:{tag}"


def team_repository(visibility: str) -> str:
    return f"{TEAM}-{visibility}/app"


# fixtures ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def config(tmp_path_factory: pytest.TempPathFactory) -> Config:
    require_registry_tools()
    data_dir = tmp_path_factory.mktemp("registry-e2e") / "data"
    return initialised(data_dir, f"http://127.0.0.1:{free_port()}")


@pytest.fixture(scope="module")
def registry(config: Config) -> Iterator[RegistryProcess]:
    with registry_for(config) as process:
        yield process


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def dockyard(config: Config, registry: RegistryProcess) -> AsyncIterator[Dockyard]:
    async with running_dockyard(config) as running:
        yield running


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def world(
    dockyard: Dockyard, registry: RegistryProcess, tmp_path_factory: pytest.TempPathFactory
) -> World:
    identity = dockyard.app[IDENTITY]
    for name in ("owner", "contributor", "viewer", "outsider", "disabled"):
        await identity.create_user(ADMIN, name, email=f"{name}@example.test", password=PASSWORD)
    await identity.create_team(ADMIN, TEAM, owner="owner")
    members: list[tuple[str, Role]] = [
        ("contributor", "contributor"), ("viewer", "viewer"), ("disabled", "contributor")]
    for name, role in members:
        await identity.set_member(ADMIN, TEAM, name, role)
    for visibility in VISIBILITIES:
        await identity.create_namespace(ADMIN, f"{TEAM}-{visibility}", team=TEAM,
                                        visibility=visibility)
    await identity.create_bot(ADMIN, "ci-bot", team=TEAM, role="contributor")
    _, bot_secret = await identity.create_token(ADMIN, "ci-bot", "ci")
    # The owner makes their own token: a token carries its user's rights, whoever made it.
    _, owner_secret = await identity.create_token(Principal("owner", "user"), "owner", "laptop")
    await identity.set_enabled(ADMIN, "disabled", enabled=False)
    creds: dict[str, str | None] = {
        name: f"{name}:{PASSWORD}" for name in ("owner", "contributor", "viewer", "outsider",
                                                "disabled")
    }
    creds |= {"anonymous": None, "bot": f"ci-bot:{bot_secret}",
              "app-token": f"owner:{owner_secret}"}

    layout = tmp_path_factory.mktemp("layout") / "oci"
    digests: dict[str, str] = {}
    pushes: list[tuple[str, str]] = []  # (layout tag, repository:tag) seeded as admin
    for visibility in VISIBILITIES:
        for tag in ["seed", *(f"delete-{actor}" for actor in EXPECTED)]:
            source = f"{visibility}-{tag}"
            digests[source] = build_oci_image(layout, source, LAYERS, salt=source)
            pushes.append((source, f"{team_repository(visibility)}:{tag}"))
        for actor in EXPECTED:
            source = f"{visibility}-push-{actor}"
            digests[source] = build_oci_image(layout, source, LAYERS, salt=source)
    for source in ("personal-1", "personal-delete", "global-1", "global-2"):
        digests[source] = build_oci_image(layout, source, LAYERS, salt=source)

    limit = asyncio.Semaphore(4)

    async def seed(source: str, target: str) -> None:
        async with limit:
            await asyncio.to_thread(skopeo_copy, f"oci:{layout}:{source}",
                                    f"docker://{registry.host}/{target}", creds=ADMIN_CREDS)

    # The seeds go first and bring the shared layer into each repository; the delete targets
    # then only add a config and a manifest each, a few at a time.
    firsts = [(s, t) for s, t in pushes if t.endswith(":seed")]
    await asyncio.gather(*(seed(s, t) for s, t in firsts))
    await asyncio.gather(*(seed(s, t) for s, t in pushes if (s, t) not in firsts))
    seeded: dict[str, str] = {v: digests[f"{v}-seed"] for v in VISIBILITIES}
    return World(dockyard, registry, layout, creds, seeded, digests)


# helpers -----------------------------------------------------------------------------------


async def attempt(
    operation: Callable[..., T], *args: Any, allowed: bool, **options: Any
) -> T | None:
    """Run a skopeo operation in a thread; it must succeed, or fail with a refusal."""
    if allowed:
        return await asyncio.to_thread(operation, *args, **options)
    with pytest.raises(SkopeoError) as refused:
        await asyncio.to_thread(operation, *args, **options)
    assert REFUSED.search(str(refused.value)), str(refused.value)
    return None


async def pull(world: World, creds: str | None, repository: str, tag: str, out: Path,
               *, allowed: bool) -> str | None:
    return await attempt(skopeo_copy, world.ref(repository, tag), f"oci:{out}:{tag}",
                         creds=creds, allowed=allowed)


async def push(world: World, creds: str | None, source: str, repository: str, tag: str,
               *, allowed: bool) -> None:
    await attempt(skopeo_copy, f"oci:{world.layout}:{source}", world.ref(repository, tag),
                  creds=creds, allowed=allowed)
    if allowed:
        world.pushed.add((repository, tag))


async def delete(world: World, creds: str | None, repository: str, tag: str,
                 *, allowed: bool) -> None:
    await attempt(skopeo_delete, world.ref(repository, tag), creds=creds, allowed=allowed)
    if allowed:
        world.deleted.add((repository, tag))


async def digest_in_registry(world: World, repository: str, tag: str) -> str | None:
    """What the registry holds under the tag (read with Dockyard's own service tokens)."""
    try:
        return (await world.dockyard.app[REGISTRY].get_manifest(repository, tag)).digest
    except ManifestNotFound:
        return None


async def catalog_tags(dockyard: Dockyard, repository: str) -> dict[str, dict[str, Any]]:
    response = await dockyard.client.get("/api/v1/tags", params={"repository": repository})
    if response.status_code == 404:
        return {}
    response.raise_for_status()
    return {tag["name"]: tag for tag in response.json()["items"]}


def has_exactly(expected: set[str], tags: dict[str, Any]) -> bool:
    return set(tags) == expected


# the matrix --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("actor", "visibility", "action", "allowed"),
    CASES,
    ids=[f"{a}-{v}-{op}-{'ok' if ok else 'refused'}" for a, v, op, ok in CASES],
)
async def test_actor_visibility_action(
    world: World, actor: str, visibility: str, action: str, allowed: bool, tmp_path: Path
) -> None:
    creds = world.creds[actor]
    repository = team_repository(visibility)
    if action == "pull":
        digest = await pull(world, creds, repository, "seed", tmp_path / "out", allowed=allowed)
        if allowed:
            assert digest == world.seeded[visibility]
    elif action == "push":
        source, tag = f"{visibility}-push-{actor}", f"push-{actor}"
        await push(world, creds, source, repository, tag, allowed=allowed)
        expected = world.digests[source] if allowed else None
        assert await digest_in_registry(world, repository, tag) == expected
    else:
        tag = f"delete-{actor}"
        await delete(world, creds, repository, tag, allowed=allowed)
        expected = None if allowed else world.digests[f"{visibility}-{tag}"]
        assert await digest_in_registry(world, repository, tag) == expected


# namespaces outside the team ---------------------------------------------------------------


async def test_personal_namespace_is_its_owners_until_made_protected(
    world: World, tmp_path: Path
) -> None:
    mine = "outsider/tool"  # every user has a personal namespace named after them, private
    me = world.creds["outsider"]
    # skopeo has usually seen the layer in the team's repositories and asks to mount it: a token
    # request with two scopes, pull there and push here.
    await push(world, me, "personal-1", mine, "1", allowed=True)
    assert await pull(world, me, mine, "1", tmp_path / "own", allowed=True) == (
        world.digests["personal-1"])
    # A team owner, a bot and anonymous callers have no business here.
    for other in ("owner", "bot", "anonymous"):
        await pull(world, world.creds[other], mine, "1", tmp_path / other, allowed=False)
    await push(world, world.creds["owner"], "personal-1", mine, "theirs", allowed=False)

    await world.dockyard.app[IDENTITY].update_namespace(
        Principal("outsider", "user"), "outsider", visibility="protected")
    for other in ("viewer", "bot"):
        await pull(world, world.creds[other], mine, "1", tmp_path / f"{other}2", allowed=True)
    await pull(world, None, mine, "1", tmp_path / "anonymous2", allowed=False)
    await push(world, world.creds["viewer"], "personal-1", mine, "theirs", allowed=False)
    assert await digest_in_registry(world, mine, "theirs") is None

    # The namespace's own user also deletes there.
    await push(world, me, "personal-delete", mine, "old", allowed=True)
    await delete(world, me, mine, "old", allowed=True)
    assert await digest_in_registry(world, mine, "old") is None

    # Registry to registry: what the user may read elsewhere they may copy in, nothing more.
    source = world.ref(team_repository("protected"), "seed")
    copied = await attempt(skopeo_copy, source, world.ref(mine, "copied"), creds=me,
                           allowed=True)
    assert copied == world.seeded["protected"]
    assert await digest_in_registry(world, mine, "copied") == copied
    source = world.ref(team_repository("private"), "seed")
    await attempt(skopeo_copy, source, world.ref(mine, "stolen"), creds=me, allowed=False)
    assert await digest_in_registry(world, mine, "stolen") is None


async def test_global_namespace_admins_push_signed_in_users_pull(
    world: World, tmp_path: Path
) -> None:
    repository = "e2e-base"  # no "/": the global namespace, protected by default
    await push(world, ADMIN_CREDS, "global-1", repository, "1", allowed=True)
    await push(world, world.creds["owner"], "global-2", repository, "2", allowed=False)
    assert await digest_in_registry(world, repository, "2") is None
    assert await pull(world, world.creds["outsider"], repository, "1", tmp_path / "outsider",
                      allowed=True) == world.digests["global-1"]
    await pull(world, None, repository, "1", tmp_path / "anonymous", allowed=False)
    await delete(world, world.creds["owner"], repository, "1", allowed=False)
    assert await digest_in_registry(world, repository, "1") == world.digests["global-1"]


# namespaces nobody created (issue 15) -----------------------------------------------------


async def test_nobody_pushes_into_a_namespace_nobody_created(
    world: World, caplog: pytest.LogCaptureFixture
) -> None:
    """An admin's push into a name no namespace holds used to succeed, and whoever created the
    namespace later inherited what was there. Now it is refused with the name, admins first."""
    repository = "unclaimed/app"
    with pytest.raises(SkopeoError) as refused:
        await asyncio.to_thread(skopeo_copy, f"oci:{world.layout}:global-1",
                                world.ref(repository, "1"), creds=ADMIN_CREDS)
    assert "403" in str(refused.value)  # skopeo prints the status of a refused token request
    # … and the docker CLI the token endpoint's distribution-style error, naming the namespace.
    scope = f"repository:{repository}:pull,push"
    asked = await world.dockyard.client.get("/v2/token", params={
        "service": world.dockyard.config.auth.service, "scope": scope})
    assert asked.status_code == 403
    (error,) = asked.json()["errors"]
    assert error["code"] == "DENIED"
    assert error["message"].startswith("namespace 'unclaimed' does not exist: create it first")
    # Anyone else is refused as for a namespace they may not see; the operator's log says why.
    with caplog.at_level("INFO", logger="dockyard.token"):
        await push(world, world.creds["owner"], "global-2", repository, "2", allowed=False)
    assert any(r.getMessage() == "push refused" and getattr(r, "namespace", None) == "unclaimed"
               and getattr(r, "sub", None) == "owner" for r in caplog.records)
    assert await digest_in_registry(world, repository, "1") is None
    assert await digest_in_registry(world, repository, "2") is None

    # Once the namespace exists, its team pushes there.
    await world.dockyard.app[IDENTITY].create_namespace(
        Principal("owner", "user"), "unclaimed", team=TEAM)
    await push(world, world.creds["contributor"], "global-2", repository, "3", allowed=True)
    assert await digest_in_registry(world, repository, "3") == world.digests["global-2"]


async def token_access(world: World, creds: str, scope: str) -> tuple[int, list[Any]]:
    user, _, secret = creds.partition(":")
    response = await world.dockyard.client.get(
        "/v2/token", params={"service": world.dockyard.config.auth.service, "scope": scope},
        auth=(user, secret))
    claims = unverified(response.json()["token"])
    return response.status_code, claims["access"]


async def test_a_missing_namespace_looks_like_a_private_one_to_non_admins(world: World) -> None:
    for actor in ("outsider", "owner", "bot", "app-token"):
        creds = world.creds[actor]
        assert creds is not None
        for actions in ("pull", "pull,push", "*"):
            missing = await token_access(world, creds, f"repository:nowhere/app:{actions}")
            hidden = await token_access(world, creds, f"repository:{TEAM}-private/app:{actions}"
                                        ) if actor == "outsider" else missing
            assert missing == hidden == (200, []), (actor, actions)
    # Admins pull (and delete) what may be there already; they only may not push.
    assert await token_access(world, ADMIN_CREDS, "repository:nowhere/app:pull") == (
        200, [{"type": "repository", "name": "nowhere/app", "actions": ["pull"]}])


async def test_only_admins_adopt_repositories_pushed_before_their_namespace(
    world: World
) -> None:
    """Repositories pushed into a name before namespaces had to exist (simulated with the token
    the old rule gave an admin) are nobody's: invisible to everyone but admins, and taken over
    only by a namespace an admin creates, which says so on the log."""
    old_token = world.dockyard.app[AUTHORITY].sign(
        Principal("admin", "user", admin=True),
        [Grant("repository", "relic/app", frozenset({"pull", "push"}))]).token
    digest = await asyncio.to_thread(skopeo_copy, f"oci:{world.layout}:global-1",
                                     world.ref("relic/app", "1"), dest_token=old_token)
    await eventually(partial(catalog_tags, world.dockyard, "relic/app"), lambda t: "1" in t,
                     what="relic/app:1 in the catalog")
    owner = ("owner", PASSWORD)
    seen = await world.dockyard.client.get("/api/v1/tags", params={"repository": "relic/app"},
                                           auth=owner)
    assert seen.status_code == 404

    refused = await world.dockyard.client.post(
        "/api/v1/namespaces", json={"name": "relic", "team": TEAM}, auth=owner)
    assert refused.status_code == 403
    assert refused.json()["error"]["code"] == "namespace_has_repositories"
    created = await world.dockyard.client.post(
        "/api/v1/namespaces", json={"name": "relic", "team": TEAM})
    assert created.status_code == 201, created.text

    async def creations() -> list[dict[str, Any]]:
        response = await world.dockyard.client.get(
            "/api/v1/activities", params={"type": "namespace.create", "namespace": "relic"})
        return list(response.json()["items"])

    (event,) = await eventually(creations, bool, what="namespace.create of relic")
    assert (event["actor"], event["team"]) == ("admin", TEAM)
    assert event["details"]["adopted_repositories"] == 1
    # Now the team's, as any of its repositories.
    assert await pull(world, world.creds["viewer"], "relic/app", "1", world.layout.parent / "r",
                      allowed=True) == digest


@pytest.fixture
def on_push_config(tmp_path: Path) -> Config:
    """``[auth] create_namespace_on_push`` on, through the environment as an operator would."""
    require_registry_tools()
    return initialised(tmp_path / "data", f"http://127.0.0.1:{free_port()}",
                       auth_create_namespace_on_push="true")


@pytest_asyncio.fixture(loop_scope="module")
async def on_push(on_push_config: Config, tmp_path: Path) -> AsyncIterator[World]:
    """A second registry and Dockyard, running with ``on_push_config``: team ``crew`` is owned
    by lead, with member a contributor."""
    config = on_push_config
    with registry_for(config) as registry:
        async with running_dockyard(config) as dockyard:
            identity = dockyard.app[IDENTITY]
            for name in ("lead", "member"):
                await identity.create_user(ADMIN, name, email=f"{name}@example.test",
                                           password=PASSWORD)
            await identity.create_team(ADMIN, "crew", owner="lead")
            await identity.set_member(ADMIN, "crew", "member", "contributor")
            layout = tmp_path / "oci"
            digests = {"seed": build_oci_image(layout, "seed", LAYERS, salt="on-push")}
            creds: dict[str, str | None] = {name: f"{name}:{PASSWORD}"
                                            for name in ("lead", "member")}
            yield World(dockyard, registry, layout, creds, {}, digests)


async def test_with_create_namespace_on_push_the_push_creates_and_audits_it(
    on_push: World
) -> None:
    client = on_push.dockyard.client
    # An admin's push creates a private namespace no team owns (admins hand it to one later).
    await push(on_push, ADMIN_CREDS, "seed", "fresh/app", "1", allowed=True)
    fresh = (await client.get("/api/v1/namespaces/fresh")).json()
    assert (fresh["team"], fresh["visibility"]) == (None, "private")
    # A team owner's push creates their team's namespace, and only that one.
    await push(on_push, on_push.creds["lead"], "seed", "crew/app", "1", allowed=True)
    assert (await client.get("/api/v1/namespaces/crew")).json()["team"] == "crew"
    await push(on_push, on_push.creds["lead"], "seed", "elsewhere/app", "1", allowed=False)
    # A contributor's push creates nothing, not even their team's namespace-to-be.
    await push(on_push, on_push.creds["member"], "seed", "other/app", "1", allowed=False)
    for name in ("elsewhere", "other"):
        assert (await client.get(f"/api/v1/namespaces/{name}")).status_code == 404
        assert await digest_in_registry(on_push, f"{name}/app", "1") is None
    assert await digest_in_registry(on_push, "crew/app", "1") == on_push.digests["seed"]

    async def creations() -> list[tuple[str, str, str | None, bool]]:
        response = await client.get("/api/v1/activities", params={"type": "namespace.create"})
        assert_matches_openapi(response, "/api/v1/activities", "get")
        return sorted((a["subject"], a["actor"], a["team"], a["details"].get("on_push"))
                      for a in response.json()["items"])

    assert await eventually(creations, lambda c: len(c) >= 2, what="namespace.create") == [
        ("crew", "lead", "crew", True), ("fresh", "admin", None, True)]


# credentials that stop working -------------------------------------------------------------


async def test_revoked_app_token_stops_working(world: World, tmp_path: Path) -> None:
    identity = world.dockyard.app[IDENTITY]
    _, secret = await identity.create_token(ADMIN, "viewer", "short-lived")
    repository = team_repository("private")
    await pull(world, f"viewer:{secret}", repository, "seed", tmp_path / "before", allowed=True)
    await identity.revoke_token(Principal("viewer", "user"), "viewer", "short-lived")
    await pull(world, f"viewer:{secret}", repository, "seed", tmp_path / "after", allowed=False)
    # The account itself is untouched.
    await pull(world, world.creds["viewer"], repository, "seed", tmp_path / "pw", allowed=True)


async def test_disabling_a_user_stops_their_password_and_tokens(
    world: World, tmp_path: Path
) -> None:
    identity = world.dockyard.app[IDENTITY]
    await identity.create_user(ADMIN, "leaver", email="leaver@example.test", password=PASSWORD)
    await identity.set_member(ADMIN, TEAM, "leaver", "contributor")
    _, secret = await identity.create_token(ADMIN, "leaver", "ci")
    repository = team_repository("private")
    # Both work, and the password is now in the verified-credential cache.
    for label, creds in (("password", f"leaver:{PASSWORD}"), ("token", f"leaver:{secret}")):
        await pull(world, creds, repository, "seed", tmp_path / label, allowed=True)

    await identity.set_enabled(ADMIN, "leaver", enabled=False)
    for label, creds in (("password", f"leaver:{PASSWORD}"), ("token", f"leaver:{secret}")):
        await pull(world, creds, repository, "seed", tmp_path / f"{label}2", allowed=False)
        await push(world, creds, "private-push-contributor", repository, f"leaver-{label}",
                   allowed=False)


async def docker_pull_manifest(client: httpx.AsyncClient, world: World, repository: str,
                               identity_token: str) -> tuple[int, str]:
    """What the docker daemon does with the identity token of ``docker login``: the registry's
    challenge, then the OAuth2 refresh grant at its realm (distribution's
    registry/client/auth/session.go), then the manifest with the access token. Returns the
    manifest's status and the refresh grant's error code ("" when it succeeded)."""
    url = f"http://{world.registry.host}/v2/{repository}/manifests/seed"
    accept = {"Accept": "application/vnd.oci.image.manifest.v1+json"}
    challenge = await client.get(url, headers=accept)
    assert challenge.status_code == 401
    params = dict(re.findall(r'(\w+)="([^"]*)"', challenge.headers["WWW-Authenticate"]))
    grant = await client.post(params["realm"], data={
        "grant_type": "refresh_token", "refresh_token": identity_token, "client_id": "docker",
        "service": params["service"], "scope": params["scope"]})
    if grant.status_code != 200:
        return 401, grant.json()["error"]
    manifest = await client.get(url, headers={
        **accept, "Authorization": f"Bearer {grant.json()['access_token']}"})
    return manifest.status_code, ""


async def test_a_docker_login_identity_token_through_the_registry(world: World) -> None:
    """docker login keeps a refresh token instead of the password and presents that same
    token for every pull and push (it never stores the rotated one): it goes on working
    through the registry until the password changes."""
    identity = world.dockyard.app[IDENTITY]
    await identity.create_user(ADMIN, "docker-user", email="d@example.test", password=PASSWORD)
    await identity.set_member(ADMIN, TEAM, "docker-user", "viewer")
    repository = team_repository("private")
    async with httpx.AsyncClient(timeout=30) as client:
        login = await client.get(f"{world.dockyard.url}/v2/token", auth=(
            "docker-user", PASSWORD), params={"offline_token": "true", "client_id": "docker",
                                              "service": world.dockyard.config.auth.service})
        identity_token = login.json()["refresh_token"]
        for _ in range(3):
            assert await docker_pull_manifest(client, world, repository, identity_token) == (
                200, "")
        await identity.change_password(ADMIN, "docker-user", "another-password-1")
        assert await docker_pull_manifest(client, world, repository, identity_token) == (
            401, "invalid_grant")


# the policy switches ---------------------------------------------------------------------


@pytest.fixture
def strict_config(tmp_path: Path) -> Config:
    """Every [auth] switch flipped, through the environment as an operator would: no anonymous
    pulls, contributors delete, pushes to personal namespaces only."""
    require_registry_tools()
    return initialised(tmp_path / "data", f"http://127.0.0.1:{free_port()}",
                       auth_anonymous_pull="false", auth_delete_contributors="true",
                       auth_push_policy="allow-personal")


@pytest_asyncio.fixture(loop_scope="module")
async def strict(strict_config: Config, tmp_path: Path) -> AsyncIterator[World]:
    """A second registry and Dockyard, running with ``strict_config``."""
    config = strict_config
    with registry_for(config) as registry:
        async with running_dockyard(config) as dockyard:
            identity = dockyard.app[IDENTITY]
            for name in ("member", "stranger"):
                await identity.create_user(ADMIN, name, email=f"{name}@example.test",
                                           password=PASSWORD)
            await identity.create_team(ADMIN, TEAM, owner="admin")
            await identity.set_member(ADMIN, TEAM, "member", "contributor")
            await identity.create_namespace(ADMIN, f"{TEAM}-public", team=TEAM,
                                            visibility="public")
            layout = tmp_path / "oci"
            digests = {source: build_oci_image(layout, source, LAYERS, salt=f"strict-{source}")
                       for source in ("seed", "doomed", "mine")}
            for source in ("seed", "doomed"):
                await asyncio.to_thread(
                    skopeo_copy, f"oci:{layout}:{source}",
                    f"docker://{registry.host}/{team_repository('public')}:{source}",
                    creds=ADMIN_CREDS)
            creds: dict[str, str | None] = {
                "member": f"member:{PASSWORD}", "stranger": f"stranger:{PASSWORD}",
                "anonymous": None,
            }
            yield World(dockyard, registry, layout, creds, {"public": digests["seed"]}, digests)


async def test_policy_switches_change_what_the_registry_allows(
    strict: World, tmp_path: Path
) -> None:
    repository = team_repository("public")
    # anonymous_pull = false: public needs a signed-in user.
    await pull(strict, None, repository, "seed", tmp_path / "anonymous", allowed=False)
    assert await pull(strict, strict.creds["stranger"], repository, "seed",
                      tmp_path / "stranger", allowed=True) == strict.seeded["public"]
    # push_policy = allow-personal: a contributor pushes to their own namespace only.
    await push(strict, strict.creds["member"], "mine", repository, "mine", allowed=False)
    await push(strict, strict.creds["member"], "mine", "member/app", "mine", allowed=True)
    assert await digest_in_registry(strict, "member/app", "mine") == strict.digests["mine"]
    # delete_contributors = true.
    await delete(strict, strict.creds["member"], repository, "doomed", allowed=True)
    assert await digest_in_registry(strict, repository, "doomed") is None
    assert await digest_in_registry(strict, repository, "seed") == strict.seeded["public"]


# the catalog behind a protected registry ---------------------------------------------------


async def test_catalog_consumer_reads_the_protected_registry(world: World) -> None:
    """Runs last: every tag seeded or pushed above is in the catalog, every deleted one gone.

    The catalog consumer fetches each pushed manifest from the registry with Dockyard's own
    service tokens; a tag only appears once that fetch succeeded.
    """
    for visibility in VISIBILITIES:
        repository = team_repository(visibility)
        seeded = {"seed", *(f"delete-{actor}" for actor in EXPECTED)}
        pushed = {tag for repo, tag in world.pushed if repo == repository}
        deleted = {tag for repo, tag in world.deleted if repo == repository}
        expected = (seeded | pushed) - deleted

        found = await eventually(partial(catalog_tags, world.dockyard, repository),
                                 partial(has_exactly, expected),
                                 what=f"the tags of {repository} in the catalog")
        assert found["seed"]["digest"] == world.seeded[visibility]
        assert all(tag["kind"] == "image" and tag["size"] > 0 for tag in found.values())
        for tag in pushed - deleted:
            assert found[tag]["digest"] == world.digests[f"{visibility}-{tag}"]
