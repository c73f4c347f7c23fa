"""The search and star APIs over HTTP: who sees what, full pages, cursors, validation.

No registry runs here: the index is filled through its own ``apply``, as the indexer fills it;
namespaces, teams and accounts go through IdentityService, and their events reach the index
through the log and the ``search`` consumer group.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from services.auth.access import IDENTITY
from services.auth.policy import Principal
from services.core.config import Config
from services.search.api import SEARCH_INDEX
from tests.search.indexing import Changes
from tests.support.dockyard import ADMIN_PASSWORD, Dockyard, initialised, running_dockyard
from tests.support.openapi import assert_matches_openapi
from tests.support.waiting import eventually

ADMIN = Principal("admin", "user", admin=True, credential="password")
PASSWORD = "secret-password-1"
ALICE = ("alice", PASSWORD)
BOB = ("bob", PASSWORD)
# namespace → (visibility, owning team)
NAMESPACES = {"open": ("public", "others"), "inside": ("protected", "others"),
              "secret": ("private", "others"), "mine": ("private", "crew")}


@pytest.fixture
def config(tmp_path: Path) -> Config:
    return initialised(tmp_path, "http://127.0.0.1:9")


@pytest.fixture
async def dockyard(config: Config) -> AsyncIterator[Dockyard]:
    async with running_dockyard(config) as running:
        identity = running.app[IDENTITY]
        for user in ("alice", "bob"):
            await identity.create_user(ADMIN, user, email="", password=PASSWORD)
        await identity.create_team(ADMIN, "crew", owner="alice")
        await identity.create_team(ADMIN, "others", owner="bob")
        for name, (visibility, team) in NAMESPACES.items():
            await identity.create_namespace(ADMIN, name, team=team, visibility=visibility,
                                            description=f"the {name} namespace")
        changes = Changes()
        for minute, name in enumerate(NAMESPACES):
            changes.push(f"{name}/web-app", "1.0", minute=minute)
        changes.push("web-app", "1.0", minute=9)  # the global namespace
        await changes.apply(running.app[SEARCH_INDEX])
        yield running


async def search(dockyard: Dockyard, auth: tuple[str, str] | None, **params: Any) -> httpx.Response:
    async with httpx.AsyncClient(base_url=dockyard.url, auth=auth) as client:
        response = await client.get("/api/v1/search", params=params)
    assert_matches_openapi(response, "/api/v1/search", "get")
    return response


@pytest.mark.parametrize(
    ("who", "namespaces"),
    [
        (None, {"open"}),  # the global namespace is protected by default
        (BOB, {"open", "inside", "secret", ""}),  # bob's team owns secret
        (ALICE, {"open", "inside", "mine", ""}),
        (("admin", ADMIN_PASSWORD), {"open", "inside", "secret", "mine", ""}),
    ],
    ids=["anonymous", "bob", "alice", "admin"],
)
async def test_each_caller_finds_what_they_may_pull(
    dockyard: Dockyard, who: tuple[str, str] | None, namespaces: set[str]
) -> None:
    for params in ({"q": "web"}, {"q": "web-app:1"}, {"q": "sha256:"}):
        response = await search(dockyard, who, **params)
        assert response.status_code == 200
        assert {item["namespace"] for item in response.json()["items"]} == namespaces, params


async def test_results_carry_visibility_and_namespaces_their_description(
    dockyard: Dockyard,
) -> None:
    items = (await search(dockyard, ALICE, q="web-app")).json()["items"]
    assert {item["namespace"]: item["visibility"] for item in items} == {
        "open": "public", "inside": "protected", "mine": "private", "": "protected"}
    found = await eventually(lambda: search(dockyard, ALICE, q="mine", type="namespace"),
                             lambda r: r.json()["items"])
    (namespace,) = found.json()["items"]
    assert namespace["description"] == "the mine namespace"
    assert namespace["visibility"] == "private"


async def test_pages_stay_full_for_a_caller_who_sees_few_and_cursors_continue(
    dockyard: Dockyard,
) -> None:
    changes = Changes()
    for i in range(40):
        changes.push(f"secret/tool-{i:02d}", "1", minute=100 + i)
    for i in range(7):
        changes.push(f"open/tool-{i:02d}", "1", minute=i)
    await changes.apply(dockyard.app[SEARCH_INDEX])
    seen: list[str] = []
    cursor = None
    while True:
        params = {"q": "tool", "limit": 3} | ({"cursor": cursor} if cursor else {})
        body = (await search(dockyard, None, **params)).json()
        seen.extend(item["repository"] for item in body["items"])
        cursor = body["next"]
        if cursor is None:
            break
        assert len(body["items"]) == 3  # every page but the last is full
    # Ranked by recency here (no pulls, no stars): newest first.
    assert seen == [f"open/tool-{i:02d}" for i in reversed(range(7))]


@pytest.mark.parametrize(
    ("params", "code"),
    [
        ({}, "invalid_query"),
        ({"q": "   "}, "invalid_query"),
        ({"q": "x" * 129}, "invalid_query"),
        ({"q": "a\x00b"}, "invalid_query"),
        ({"q": ":"}, "invalid_query"),
        ({"q": "web", "type": "image"}, "invalid_type"),
        ({"q": "sha256:00", "type": "repository"}, "invalid_type"),
        ({"q": "web:1", "type": "namespace"}, "invalid_type"),
        ({"q": "web", "limit": "0"}, "invalid_limit"),
        ({"q": "web", "limit": "501"}, "invalid_limit"),
        ({"q": "web", "cursor": "nonsense"}, "invalid_cursor"),
        ({"q": "web", "cursor": "WzEsMiwzXQ"}, "invalid_cursor"),  # [1,2,3]: three, not four
        ({"q": "web", "cursor": "WzksMCwwLDBd"}, "invalid_cursor"),  # [9,0,0,0]: no such class
        ({"q": "web", "namespace": "Not Valid"}, "invalid_namespace"),
        ({"q": "web", "artifact_type": "movie"}, "invalid_artifact_type"),
    ],
)
async def test_bad_requests_name_the_problem(
    dockyard: Dockyard, params: dict[str, str], code: str
) -> None:
    response = await search(dockyard, None, **params)
    assert response.status_code == 400
    assert response.json()["error"]["code"] == code


async def stars(dockyard: Dockyard, method: str, auth: tuple[str, str] | None,
                **params: str) -> httpx.Response:
    async with httpx.AsyncClient(base_url=dockyard.url, auth=auth) as client:
        response = await client.request(method, "/api/v1/stars", params=params)
    assert_matches_openapi(response, "/api/v1/stars", method)
    return response


async def test_stars_need_a_user_and_a_repository_they_can_see(dockyard: Dockyard) -> None:
    assert (await stars(dockyard, "put", None, repository="open/web-app")).status_code == 401
    assert (await stars(dockyard, "get", None)).status_code == 401
    hidden = await stars(dockyard, "put", ALICE, repository="secret/web-app")
    missing = await stars(dockyard, "put", ALICE, repository="open/nothing")
    assert hidden.status_code == missing.status_code == 404
    assert hidden.json() == missing.json() | {"error": hidden.json()["error"]}
    bad = await stars(dockyard, "put", ALICE, repository="Not A Name")
    assert bad.status_code == 400


async def test_stars_are_listed_and_count_for_ranking(dockyard: Dockyard) -> None:
    before = (await search(dockyard, ALICE, q="web-app")).json()["items"]
    assert before[0]["repository"] == "web-app"  # the newest
    for who in (ALICE, BOB):
        response = await stars(dockyard, "put", who, repository="open/web-app")
        assert response.status_code == 204
    assert (await stars(dockyard, "put", ALICE, repository="mine/web-app")).status_code == 204
    after = (await search(dockyard, ALICE, q="web-app")).json()["items"]
    assert [(i["repository"], i["stars"]) for i in after[:2]] == [
        ("open/web-app", 2), ("mine/web-app", 1)]
    listed = (await stars(dockyard, "get", ALICE, limit="1")).json()
    assert [s["repository"] for s in listed["items"]] == ["mine/web-app"]
    rest = (await stars(dockyard, "get", ALICE, cursor=listed["next"])).json()
    assert [s["repository"] for s in rest["items"]] == ["open/web-app"]
    assert rest["next"] is None
    assert (await stars(dockyard, "delete", ALICE, repository="mine/web-app")).status_code == 204
    assert (await stars(dockyard, "delete", ALICE, repository="mine/web-app")).status_code == 204
    listed = (await stars(dockyard, "get", ALICE)).json()
    assert [s["repository"] for s in listed["items"]] == ["open/web-app"]
