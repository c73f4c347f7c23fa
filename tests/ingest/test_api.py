"""The catalog and activity APIs as a client sees them: auth, paging, CSV, the live stream."""

from __future__ import annotations

import asyncio
import contextlib
import csv
import io
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from services.auth.access import IDENTITY
from services.auth.policy import Principal
from services.core.config import Config
from services.ingest.api import STREAM_RECHECK_SECONDS
from tests.factories import event_dict
from tests.support.dockyard import Dockyard, initialised, running_dockyard
from tests.support.waiting import eventually

ADMIN = Principal("admin", "user", admin=True, credential="password")


@pytest.fixture
def config(tmp_path: Path) -> Config:
    return initialised(tmp_path, "http://127.0.0.1:9")


@pytest.fixture
async def dockyard(config: Config) -> AsyncIterator[Dockyard]:
    async with running_dockyard(config) as running:
        yield running


async def send(dockyard: Dockyard, *events: dict[str, Any]) -> None:
    response = await dockyard.client.post("/v2/webhooks/events", json={"events": list(events)},
                                          headers=dockyard.webhook_headers)
    assert response.status_code == 200, response.text


async def feed(dockyard: Dockyard, **params: Any) -> dict[str, Any]:
    """The registry's activity (the admin's own logins are activity too, and left out here)."""
    params.setdefault("type", "tag.deleted")
    response = await dockyard.client.get("/api/v1/activities", params=params)
    assert response.status_code == 200, response.text
    result: dict[str, Any] = response.json()
    return result


@pytest.mark.parametrize("path", ["/api/v1/repositories", "/api/v1/tags?repository=a/b",
                                  "/api/v1/activities", "/api/v1/activities/stream"])
async def test_wrong_credentials_are_refused_never_taken_as_anonymous(
    dockyard: Dockyard, path: str
) -> None:
    async with httpx.AsyncClient(base_url=dockyard.url) as anonymous:
        response = await anonymous.get(path, auth=("admin", "wrong"))
        assert response.status_code == 401
        assert response.headers["WWW-Authenticate"].startswith("Basic")
        assert response.json()["error"]["code"] == "unauthorized"
        unknown = await anonymous.get(path, headers={"Authorization": "Bearer dyat_nope"})
        assert unknown.status_code == 401


async def test_the_feed_pages_through_everything_once(dockyard: Dockyard) -> None:
    events = [event_dict("delete", f"team/r{i % 3}", tag=f"t{i}") for i in range(23)]
    await send(dockyard, *events)
    await eventually(lambda: feed(dockyard, limit=100), lambda f: len(f["items"]) == 23)

    seen: list[str] = []
    params: dict[str, Any] = {"limit": 5}
    while True:
        page = await feed(dockyard, **params)
        seen.extend(item["id"] for item in page["items"])
        if page["next"] is None:
            break
        params["cursor"] = page["next"]
    assert sorted(seen) == sorted(e["id"] for e in events)
    assert len(seen) == len(set(seen))

    only = await feed(dockyard, repository="team/r1", type="tag.deleted")
    assert {item["repository"] for item in only["items"]} == {"team/r1"}
    assert len(only["items"]) == 8


@pytest.mark.parametrize(
    ("params", "code"),
    [
        ({"limit": "0"}, "invalid_limit"),
        ({"limit": "many"}, "invalid_limit"),
        ({"cursor": "not-a-cursor"}, "invalid_cursor"),
        ({"type": "tag.exploded"}, "invalid_type"),
        ({"since": "yesterday"}, "invalid_since"),
    ],
)
async def test_bad_feed_parameters_are_named(
    dockyard: Dockyard, params: dict[str, str], code: str
) -> None:
    response = await dockyard.client.get("/api/v1/activities", params=params)
    assert response.status_code == 400
    assert response.json()["error"]["code"] == code


async def test_csv_export_has_every_matching_row_and_defuses_formulas(dockyard: Dockyard) -> None:
    await send(dockyard, event_dict("delete", "team/app", tag="1"),
               event_dict("delete", "team/app", tag="2", actor="=cmd|' /C calc'!A0"))
    await eventually(lambda: feed(dockyard), lambda f: len(f["items"]) == 2)
    response = await dockyard.client.get("/api/v1/activities", params={"type": "tag.deleted"},
                                         headers={"Accept": "text/csv"})
    assert response.status_code == 200
    assert response.headers["Content-Type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(response.text)))
    assert {row["tag"] for row in rows} == {"1", "2"}
    assert {row["actor"] for row in rows} == {"alice", "'=cmd|' /C calc'!A0"}


async def test_the_stream_delivers_new_activity_live(dockyard: Dockyard) -> None:
    received: list[dict[str, Any]] = []
    connected = asyncio.Event()

    async def listen() -> None:
        async with dockyard.client.stream(
            "GET", "/api/v1/activities/stream", params={"repository": "team/live"}
        ) as response:
            assert response.headers["Content-Type"].startswith("text/event-stream")
            connected.set()
            async for line in response.aiter_lines():
                if line.startswith("data:"):
                    received.append(json.loads(line.removeprefix("data:")))
                    return

    listener = asyncio.create_task(listen())
    await asyncio.wait_for(connected.wait(), 10)
    await send(dockyard, event_dict("delete", "team/other", tag="x"),
               event_dict("delete", "team/live", tag="y"))
    await asyncio.wait_for(listener, 10)
    assert [(a["repository"], a["tag"], a["type"]) for a in received] == [
        ("team/live", "y", "tag.deleted")]


async def test_tags_of_an_unknown_or_invalid_repository(dockyard: Dockyard) -> None:
    missing = await dockyard.client.get("/api/v1/tags", params={"repository": "no/such"})
    assert missing.status_code == 404
    assert missing.json()["error"]["code"] == "repository_not_found"
    invalid = await dockyard.client.get("/api/v1/tags", params={"repository": "No//Such"})
    assert invalid.status_code == 400


async def test_health_reports_each_dependency(dockyard: Dockyard) -> None:
    response = await dockyard.client.get("/api/v1/health")
    body = response.json()
    # Nothing listens at the configured registry URL in this test.
    assert response.status_code == 503
    assert body["status"] == "degraded"
    assert body["checks"]["registry"]["ok"] is False
    assert body["checks"]["eventlog"] == {"ok": True}
    assert body["checks"]["catalog-store"] == {"ok": True}


async def test_metrics_show_consumer_lag_and_latency(dockyard: Dockyard) -> None:
    labels = '{group="activity",topic="registry-events"}'
    await send(dockyard, event_dict("delete", "team/app", tag="1"))
    await eventually(lambda: feed(dockyard), lambda f: len(f["items"]) == 1)

    async def metrics() -> str:
        return (await dockyard.client.get("/metrics")).text

    text = await eventually(metrics, lambda t: f"dockyard_consumer_lag{labels} 0.0" in t)
    assert f"dockyard_consumer_handler_seconds_count{labels}" in text


async def test_a_non_ascii_last_event_id_starts_from_now(dockyard: Dockyard) -> None:
    # "²".isdigit() is True and int("²") raises: this was a 500.
    for last_id in ("\N{SUPERSCRIPT TWO}", "\N{FULLWIDTH DIGIT ONE}", "9" * 30):
        async with dockyard.client.stream(
                "GET", "/api/v1/activities/stream",
                headers={"Last-Event-ID": last_id.encode()}) as response:
            assert response.status_code == 200
            assert response.headers["Content-Type"].startswith("text/event-stream")


async def test_csv_cells_that_could_start_a_formula_are_defused(dockyard: Dockyard) -> None:
    actors = ["+1", "-1", "@SUM(A1)", "\tx", "\rx", " =1+1", "  @x", "plain"]
    await send(dockyard, *(event_dict("delete", "team/app", tag=f"t{i}", actor=actor)
                           for i, actor in enumerate(actors)))
    await eventually(lambda: feed(dockyard), lambda f: len(f["items"]) == len(actors))
    response = await dockyard.client.get("/api/v1/activities", params={"type": "tag.deleted"},
                                         headers={"Accept": "text/csv"})
    rows = list(csv.DictReader(io.StringIO(response.text, newline="")))
    assert {row["actor"] for row in rows} == {"'" + a for a in actors[:-1]} | {"plain"}


async def _stream_as(dockyard: Dockyard, auth: str, received: list[dict[str, Any]],
                     connected: asyncio.Event) -> None:
    async with httpx.AsyncClient(base_url=dockyard.url, timeout=30) as client, client.stream(
            "GET", "/api/v1/activities/stream", params={"type": "tag.deleted"},
            headers={"Authorization": auth}) as response:
        assert response.status_code == 200
        connected.set()
        async for line in response.aiter_lines():
            if line.startswith("data:"):
                # One at a time, as they come: the test looks while the stream is open.
                received.append(json.loads(line.removeprefix("data:")))  # noqa: PERF401


@pytest.mark.parametrize("change", ["revoke the token", "disable the account"])
async def test_the_stream_ends_when_its_credential_no_longer_holds(
    dockyard: Dockyard, change: str
) -> None:
    identity = dockyard.app[IDENTITY]
    await identity.create_user(ADMIN, "sam", email="", password="sams-password")
    _, secret = await identity.create_token(ADMIN, "sam", "stream")
    received: list[dict[str, Any]] = []
    connected = asyncio.Event()
    listener = asyncio.create_task(_stream_as(dockyard, f"Bearer {secret}", received,
                                              connected))
    await asyncio.wait_for(connected.wait(), 10)
    await send(dockyard, event_dict("delete", "nginx", tag="before"))
    await eventually(lambda: asyncio.sleep(0, received), bool)
    if change == "revoke the token":
        await identity.revoke_token(ADMIN, "sam", "stream")
    else:
        await identity.set_enabled(ADMIN, "sam", enabled=False)
    await asyncio.sleep(STREAM_RECHECK_SECONDS + 0.5)
    await send(dockyard, event_dict("delete", "nginx", tag="after"))
    await asyncio.wait_for(listener, 10)  # the server ended the stream
    assert [a["tag"] for a in received] == ["before"]


async def test_the_stream_stops_sending_what_its_reader_may_no_longer_see(
    dockyard: Dockyard,
) -> None:
    identity = dockyard.app[IDENTITY]
    await identity.create_user(ADMIN, "sam", email="", password="sams-password")
    _, secret = await identity.create_token(ADMIN, "sam", "stream")
    await identity.create_team(ADMIN, "ops", owner="admin")
    await identity.create_namespace(ADMIN, "ops", team="ops", visibility="protected")
    received: list[dict[str, Any]] = []
    connected = asyncio.Event()
    listener = asyncio.create_task(_stream_as(dockyard, f"Bearer {secret}", received,
                                              connected))
    await asyncio.wait_for(connected.wait(), 10)
    await send(dockyard, event_dict("delete", "ops/app", tag="seen"))
    await eventually(lambda: asyncio.sleep(0, received), bool)
    await identity.update_namespace(ADMIN, "ops", visibility="private")
    await asyncio.sleep(STREAM_RECHECK_SECONDS + 0.5)
    await send(dockyard, event_dict("delete", "ops/app", tag="hidden"),
               event_dict("delete", "nginx", tag="public"))
    await eventually(lambda: asyncio.sleep(0, received), lambda r: len(r) == 2)
    listener.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await listener
    assert [(a["repository"], a["tag"]) for a in received] == [
        ("ops/app", "seen"), ("nginx", "public")]
