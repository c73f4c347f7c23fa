"""Who reads what: every read path, every kind of caller, every visibility, black-box.

The rule (services/auth/policy.py, TokenAuthority.read_scope): a namespace's repositories,
tags, activity and search hits are seen by whoever may pull from it: public ones by everyone
(anonymous callers too), protected ones by anyone signed in, private ones by the owning team's
members and admins. Whatever a caller may not see answers exactly as what does not exist (an
empty list, or a 404 with the same code). Addresses and user agents in the activity are for
the namespace's managers only: admins and the owning team's owners.

One Dockyard serves the module, with no registry: the catalog and the search index are filled
through their own stores, as their consumers would, and the activity through the webhook.
Team ``crew`` (owner owen, contributor cora, viewer vic, the bot robo as a viewer) owns the
namespaces ``pub`` (public), ``prot`` (protected) and ``priv`` (private), each holding
``app``; olga is in no team. People call the API with a Bearer application token and the
portal with a session; the admin with its password.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
import pytest_asyncio

from services.auth.access import IDENTITY
from services.auth.policy import Principal, Visibility
from services.core.config import Config
from services.ingest.api import CATALOG_STORE
from services.ingest.models import PutManifest, PutTag
from services.search.api import SEARCH_INDEX
from tests.factories import DIGEST_A, OCI_MANIFEST, event_dict
from tests.search.indexing import Changes
from tests.support.dockyard import ADMIN_PASSWORD, Dockyard, initialised, running_dockyard
from tests.support.portal import portal_session
from tests.support.waiting import eventually

pytestmark = pytest.mark.asyncio(loop_scope="module")

ADMIN = Principal("admin", "user", admin=True, credential="password")
PASSWORD = "matrix-password-1"
ADDRESS, USER_AGENT = "10.0.0.7:5123", "skopeo/1.9"  # what tests.factories' events carry

NAMESPACES: dict[str, Visibility] = {"pub": "public", "prot": "protected", "priv": "private"}
ALL = set(NAMESPACES)
# caller → (the account, its role in crew); None: anonymous
CALLERS: dict[str, tuple[str | None, str | None]] = {
    "anonymous": (None, None),
    "outsider": ("olga", None),
    "viewer": ("vic", "viewer"),
    "contributor": ("cora", "contributor"),
    "owner": ("owen", "owner"),
    "admin": ("admin", None),
    "bot": ("robo", "viewer"),
}
# What each caller may read and manage, written out by hand from the rule above.
READS = {"anonymous": {"pub"}, "outsider": {"pub", "prot"}, "viewer": ALL,
         "contributor": ALL, "owner": ALL, "admin": ALL, "bot": ALL}
MANAGES = {"owner": ALL, "admin": ALL}
PEOPLE = [caller for caller in CALLERS if caller not in {"anonymous", "bot"}]

MATRIX = [(caller, namespace) for caller in CALLERS for namespace in NAMESPACES]


@dataclass
class World:
    dockyard: Dockyard
    headers: dict[str, dict[str, str]] = field(default_factory=dict)  # caller → API auth
    cookies: dict[str, httpx.Cookies] = field(default_factory=dict)  # caller → portal session

    def api(self, caller: str) -> httpx.AsyncClient:
        return httpx.AsyncClient(base_url=self.dockyard.url, timeout=30,
                                 headers=self.headers.get(caller, {}))

    def portal(self, caller: str) -> httpx.AsyncClient:
        return httpx.AsyncClient(base_url=self.dockyard.url, timeout=30,
                                 cookies=self.cookies.get(caller))


@pytest.fixture(scope="module")
def config(tmp_path_factory: pytest.TempPathFactory) -> Config:
    return initialised(tmp_path_factory.mktemp("matrix"), "http://127.0.0.1:9",
                       sync_interval_seconds="0")


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def world(config: Config) -> AsyncIterator[World]:
    async with running_dockyard(config) as dockyard:
        app = dockyard.app
        identity = app[IDENTITY]
        for name in ("olga", "vic", "cora", "owen"):
            await identity.create_user(ADMIN, name, email="", password=PASSWORD)
        await identity.create_team(ADMIN, "crew", owner="owen")
        await identity.set_member(ADMIN, "crew", "vic", "viewer")
        await identity.set_member(ADMIN, "crew", "cora", "contributor")
        await identity.create_bot(ADMIN, "robo", team="crew", role="viewer")
        for namespace, visibility in NAMESPACES.items():
            await identity.create_namespace(ADMIN, namespace, team="crew", visibility=visibility)
        world = World(dockyard)
        world.headers["admin"] = {"Authorization": dockyard.client.headers["Authorization"]}
        for caller, (account, _) in CALLERS.items():
            if account is not None and caller != "admin":
                _, secret = await identity.create_token(ADMIN, account, "matrix")
                world.headers[caller] = {"Authorization": f"Bearer {secret}"}
        for caller in PEOPLE:
            password = ADMIN_PASSWORD if caller == "admin" else PASSWORD
            world.cookies[caller] = await portal_session(dockyard.url, CALLERS[caller][0] or "",
                                                         password)

        repositories = [f"{namespace}/app" for namespace in NAMESPACES]
        now = datetime.now(UTC)
        await app[CATALOG_STORE].apply([
            (f"seed-{name}", [PutManifest(name, DIGEST_A, OCI_MANIFEST, "image", None, 1, (),
                                          None, "owen", now),
                              PutTag(name, "1", DIGEST_A, "owen", now)])
            for name in repositories])
        changes = Changes()
        for name in repositories:
            changes.push(name, "1")
        await changes.apply(app[SEARCH_INDEX])
        # Activity of a tag that never was: the tags "1" stay.
        events = [event_dict("delete", name, tag="gone", actor="owen") for name in repositories]
        # Last, so that a stream read from the start has seen everything once it comes.
        events.append(event_dict("delete", "pub/app", tag="end", actor="owen"))
        response = await dockyard.client.post("/v2/webhooks/events", json={"events": events},
                                              headers=dockyard.webhook_headers)
        assert response.status_code == 200, response.text
        await eventually(lambda: dockyard.client.get("/api/v1/activities?type=tag.deleted"),
                         lambda r: len(r.json()["items"]) == len(events))
        yield world


def _entries(items: list[dict[str, Any]], namespace: str) -> list[dict[str, Any]]:
    return [item for item in items if item["namespace"] == namespace and item["tag"] == "gone"]


def _check_activity(entries: list[dict[str, Any]], caller: str, namespace: str) -> None:
    """One entry if the caller may read the namespace; its address and user agent only for
    its managers."""
    if namespace not in READS[caller]:
        assert entries == []
        return
    (entry,) = entries
    manager = namespace in MANAGES.get(caller, set())
    expected = (ADDRESS, USER_AGENT) if manager else (None, None)
    assert (entry["address"] or None, entry["user_agent"] or None) == expected


# --- the REST API -------------------------------------------------------------------------


@pytest.mark.parametrize(("caller", "namespace"), MATRIX)
async def test_repository_list(world: World, caller: str, namespace: str) -> None:
    async with world.api(caller) as client:
        response = await client.get("/api/v1/repositories", params={"namespace": namespace})
    assert response.status_code == 200
    names = [item["name"] for item in response.json()["items"]]
    assert names == ([f"{namespace}/app"] if namespace in READS[caller] else [])


@pytest.mark.parametrize(("caller", "namespace"), MATRIX)
async def test_tags(world: World, caller: str, namespace: str) -> None:
    async with world.api(caller) as client:
        response = await client.get("/api/v1/tags", params={"repository": f"{namespace}/app"})
        missing = await client.get("/api/v1/tags", params={"repository": f"{namespace}/none"})
    assert missing.status_code == 404
    if namespace in READS[caller]:
        assert response.status_code == 200
        assert [tag["name"] for tag in response.json()["items"]] == ["1"]
    else:  # exactly as a repository that does not exist
        assert response.status_code == 404
        assert response.json()["error"]["code"] == missing.json()["error"]["code"]


@pytest.mark.parametrize(("caller", "namespace"), MATRIX)
async def test_activity_list(world: World, caller: str, namespace: str) -> None:
    async with world.api(caller) as client:
        response = await client.get("/api/v1/activities",
                                    params={"type": "tag.deleted", "limit": 500})
    assert response.status_code == 200
    _check_activity(_entries(response.json()["items"], namespace), caller, namespace)


@pytest.mark.parametrize(("caller", "namespace"), MATRIX)
async def test_activity_csv_export(world: World, caller: str, namespace: str) -> None:
    async with world.api(caller) as client:
        response = await client.get("/api/v1/activities", params={"type": "tag.deleted"},
                                    headers={"Accept": "text/csv"})
    assert response.status_code == 200
    rows = list(csv.DictReader(io.StringIO(response.text)))
    _check_activity(_entries(rows, namespace), caller, namespace)


@pytest.mark.parametrize(("caller", "namespace"), MATRIX)
async def test_activity_stream(world: World, caller: str, namespace: str) -> None:
    received: list[dict[str, Any]] = []
    async with world.api(caller) as client, client.stream(
            "GET", "/api/v1/activities/stream", params={"type": "tag.deleted"},
            headers={"Last-Event-ID": "0"}) as response:
        assert response.status_code == 200
        async for line in response.aiter_lines():
            if line.startswith("data:"):
                received.append(json.loads(line.removeprefix("data:")))
                if received[-1]["tag"] == "end":
                    break
    _check_activity(_entries(received, namespace), caller, namespace)


@pytest.mark.parametrize(("caller", "namespace"), MATRIX)
async def test_search(world: World, caller: str, namespace: str) -> None:
    async with world.api(caller) as client:
        response = await client.get("/api/v1/search", params={"q": "app"})
    assert response.status_code == 200
    found = {item["repository"] for item in response.json()["items"]}
    assert (f"{namespace}/app" in found) is (namespace in READS[caller])


@pytest.mark.parametrize(("caller", "namespace"), MATRIX)
async def test_namespace(world: World, caller: str, namespace: str) -> None:
    async with world.api(caller) as client:
        response = await client.get(f"/api/v1/namespaces/{namespace}")
        missing = await client.get("/api/v1/namespaces/nothing")
    if caller == "anonymous":  # the identity API is for signed-in callers
        assert response.status_code == missing.status_code == 401
    elif namespace in READS[caller]:
        assert response.status_code == 200
        assert response.json()["visibility"] == NAMESPACES[namespace]
    else:
        assert response.status_code == missing.status_code == 404
        assert response.json()["error"]["code"] == missing.json()["error"]["code"]


@pytest.mark.parametrize("caller", [c for c in CALLERS if c != "anonymous"])
async def test_teams_and_accounts_do_not_show_to_outsiders(world: World, caller: str) -> None:
    async with world.api(caller) as client:
        team, no_team = await client.get("/api/v1/teams/crew"), await client.get(
            "/api/v1/teams/nothing")
        tokens, no_tokens = await client.get("/api/v1/users/owen/tokens"), await client.get(
            "/api/v1/users/nobody/tokens")
    assert no_team.status_code == no_tokens.status_code == 404
    # Members see their team; only owen and admins his tokens (teammates know he exists).
    assert team.status_code == (404 if caller == "outsider" else 200)
    expected = {"owner": 200, "admin": 200, "outsider": 404}.get(caller, 403)
    assert tokens.status_code == expected
    if caller == "outsider":
        assert team.json()["error"]["code"] == no_team.json()["error"]["code"]
        assert tokens.json()["error"]["code"] == no_tokens.json()["error"]["code"]


# --- the portal ---------------------------------------------------------------------------

PORTAL_MATRIX = [(caller, namespace) for caller, namespace in MATRIX if caller != "bot"]


@pytest.mark.parametrize(("caller", "namespace"), PORTAL_MATRIX)
async def test_portal_pages(world: World, caller: str, namespace: str) -> None:
    async with world.portal(caller) as browser:
        pages = [await browser.get(f"/n/{namespace}"), await browser.get(f"/r/{namespace}/app"),
                 await browser.get(f"/r/{namespace}/app/-/tags/1")]
        missing = await browser.get("/r/nothing/app")
    assert missing.status_code == 404
    expected = 200 if namespace in READS[caller] else 404
    assert [page.status_code for page in pages] == [expected] * 3


@pytest.mark.parametrize(("caller", "namespace"),
                         [(c, n) for c, n in PORTAL_MATRIX if c != "anonymous"])
async def test_portal_activity_export(world: World, caller: str, namespace: str) -> None:
    async with world.portal(caller) as browser:
        response = await browser.get("/activity.csv", params={"type": "tag.deleted"})
    assert response.status_code == 200
    rows = list(csv.DictReader(io.StringIO(response.text)))
    _check_activity(_entries(rows, namespace), caller, namespace)
