"""Every read API applies visibility: anonymous callers see public namespaces, users what they
may pull, admins everything — repositories, tags and the activity feed alike."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from services.auth.access import IDENTITY
from services.auth.policy import Principal
from services.core.config import Config
from services.ingest.api import CATALOG_STORE
from services.ingest.models import PutManifest
from tests.factories import DIGEST_A, OCI_MANIFEST, event_dict
from tests.support.dockyard import Dockyard, initialised, running_dockyard
from tests.support.waiting import eventually

ADMIN = Principal("admin", "user", admin=True, credential="password")
PASSWORD = "secret-password-1"
NAMESPACES = {"open": "public", "inside": "protected", "secret": "private", "mine": "private"}


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
        for name, visibility in NAMESPACES.items():
            team = "crew" if name == "mine" else "others"
            await identity.create_namespace(ADMIN, name, team=team, visibility=visibility)
        # One repository and one tag.deleted activity per namespace, plus the global one.
        # No registry runs here, so the catalog is filled through its store.
        repositories = [f"{ns}/app" for ns in NAMESPACES] + ["nginx"]
        await running.app[CATALOG_STORE].apply([
            (f"seed-{name}", [PutManifest(name, DIGEST_A, OCI_MANIFEST, "image", None, 1, (),
                                          None, "admin", datetime.now(UTC))])
            for name in repositories
        ])
        events = [event_dict("delete", name, tag="1") for name in repositories]
        response = await running.client.post("/v2/webhooks/events", json={"events": events},
                                             headers=running.webhook_headers)
        assert response.status_code == 200
        await eventually(lambda: running.client.get("/api/v1/activities?type=tag.deleted"),
                         lambda r: len(r.json()["items"]) == len(events))
        yield running


async def seen(dockyard: Dockyard, auth: tuple[str, str] | None, path: str,
               **params: Any) -> list[dict[str, Any]]:
    async with httpx.AsyncClient(base_url=dockyard.url, auth=auth) as client:
        response = await client.get(path, params=params)
        assert response.status_code == 200, response.text
        items: list[dict[str, Any]] = response.json()["items"]
        return items


@pytest.mark.parametrize(
    ("who", "namespaces"),
    [
        (None, {"open"}),
        (("bob", PASSWORD), {"open", "inside", "secret", ""}),   # bob's team owns secret
        (("alice", PASSWORD), {"open", "inside", "mine", ""}),
        (("admin", "correct-horse-battery-staple"), {"open", "inside", "secret", "mine", ""}),
    ],
    ids=["anonymous", "bob", "alice", "admin"],
)
async def test_each_caller_sees_what_they_may_pull(
    dockyard: Dockyard, who: tuple[str, str] | None, namespaces: set[str]
) -> None:
    repositories = await seen(dockyard, who, "/api/v1/repositories")
    assert {r["namespace"] for r in repositories} == namespaces
    feed = await seen(dockyard, who, "/api/v1/activities", type="tag.deleted")
    assert {a["namespace"] for a in feed} == namespaces


async def test_tags_of_a_repository_you_may_not_pull_look_missing(dockyard: Dockyard) -> None:
    async with httpx.AsyncClient(base_url=dockyard.url, auth=("alice", PASSWORD)) as client:
        hidden = await client.get("/api/v1/tags", params={"repository": "secret/app"})
        missing = await client.get("/api/v1/tags", params={"repository": "nothing/here"})
    assert hidden.status_code == missing.status_code == 404
    assert hidden.json()["error"]["code"] == missing.json()["error"]["code"]


async def test_pages_stay_full_when_most_entries_are_hidden(dockyard: Dockyard) -> None:
    hidden = [event_dict("delete", "secret/app", tag=f"h{i}") for i in range(30)]
    visible = [event_dict("delete", "open/app", tag=f"v{i}") for i in range(5)]
    await dockyard.client.post("/v2/webhooks/events", json={"events": visible + hidden},
                               headers=dockyard.webhook_headers)
    await eventually(
        lambda: seen(dockyard, None, "/api/v1/activities", limit=100, type="tag.deleted"),
        lambda items: len(items) == 6)
    page = await seen(dockyard, None, "/api/v1/activities", limit=4, type="tag.deleted")
    assert len(page) == 4
    assert {a["namespace"] for a in page} == {"open"}


async def test_identity_changes_are_activity_for_the_right_audience(dockyard: Dockyard) -> None:
    identity = dockyard.app[IDENTITY]
    await identity.update_namespace(ADMIN, "open", visibility="protected")
    admin_feed = await eventually(
        lambda: seen(dockyard, ("admin", "correct-horse-battery-staple"), "/api/v1/activities",
                     type="namespace.change_visibility"),
        lambda items: len(items) == 1)
    assert admin_feed[0]["subject"] == "open"
    assert admin_feed[0]["details"] == {"to": "protected"}
    # Readers of the namespace see its changes; account and team changes are for admins only.
    bob = await seen(dockyard, ("bob", PASSWORD), "/api/v1/activities")
    assert "namespace.change_visibility" in {a["type"] for a in bob}
    assert not {"user.create", "team.create", "user.login"} & {a["type"] for a in bob}
    everything = await seen(dockyard, ("admin", "correct-horse-battery-staple"),
                            "/api/v1/activities", limit=200)
    assert {"user.create", "team.create", "namespace.create", "user.login"} <= {
        a["type"] for a in everything}


@pytest.mark.parametrize(
    ("who", "managed"),
    [
        (None, set()),
        (("bob", PASSWORD), {"open", "inside", "secret"}),   # bob owns team others
        (("alice", PASSWORD), {"mine"}),   # alice owns crew; she only pulls from open, inside
        (("admin", "correct-horse-battery-staple"), {"open", "inside", "secret", "mine", ""}),
    ],
    ids=["anonymous", "bob", "alice", "admin"],
)
async def test_addresses_and_user_agents_are_for_the_namespaces_managers(
    dockyard: Dockyard, who: tuple[str, str] | None, managed: set[str]
) -> None:
    feed = await seen(dockyard, who, "/api/v1/activities", type="tag.deleted")
    assert {a["namespace"] for a in feed if a["address"] is not None} == managed
    assert {a["namespace"] for a in feed if a["user_agent"] is not None} == managed
    assert {(a["address"], a["user_agent"]) for a in feed if a["namespace"] in managed} <= {
        ("10.0.0.7:5123", "skopeo/1.9")}
    async with httpx.AsyncClient(base_url=dockyard.url, auth=who) as client:
        exported = await client.get("/api/v1/activities", params={"type": "tag.deleted"},
                                    headers={"Accept": "text/csv"})
    rows = list(csv.DictReader(io.StringIO(exported.text)))
    assert {r["namespace"] for r in rows} == {a["namespace"] for a in feed}
    assert {r["namespace"] for r in rows if r["address"] or r["user_agent"]} == managed


async def test_the_stream_shows_addresses_only_to_managers(dockyard: Dockyard) -> None:
    async def first_two(who: tuple[str, str]) -> list[dict[str, Any]]:
        received: list[dict[str, Any]] = []
        async with httpx.AsyncClient(base_url=dockyard.url, auth=who, timeout=10) as client, \
                client.stream("GET", "/api/v1/activities/stream",
                              headers={"Last-Event-ID": "0"},
                              params={"type": "tag.deleted"}) as response:
            async for line in response.aiter_lines():
                if line.startswith("data:"):
                    received.append(json.loads(line.removeprefix("data:")))
                    if {a["namespace"] for a in received} >= {"open", "mine"}:
                        return received
        return received

    alice = await first_two(("alice", PASSWORD))
    addresses = {a["namespace"]: a["address"] for a in alice}
    assert addresses["mine"] == "10.0.0.7:5123"
    assert addresses["open"] is None
    assert "secret" not in addresses
