"""A replayed webhook envelope changes nothing.

The webhook has no replay protection of its own (the registry retries, so the same envelope
may arrive twice, and anyone holding the secret may send one again): every consumer records
the events it applied by id, so a replay of events already seen is appended to the log and
then ignored by the catalog, the activity log, the search index and the scanner alike.
Real registry, real pushes; the replay is the registry's own events read back from the log.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from services.core.config import Config
from services.core.web import EVENT_LOG
from services.ingest.consumers import REGISTRY_EVENTS
from tests.factories import event_dict
from tests.support.dockyard import (
    ADMIN_CREDS,
    Dockyard,
    initialised,
    push,
    registry_for,
    running_dockyard,
)
from tests.support.images import build_oci_image
from tests.support.registry import (
    RegistryProcess,
    free_port,
    require_registry_tools,
    skopeo_delete,
)
from tests.support.waiting import eventually

pytestmark = pytest.mark.registry

_LAG = re.compile(r'^dockyard_consumer_lag\{group="([^"]+)",topic="registry-events"\} (\S+)$',
                  re.MULTILINE)


@pytest.fixture
def config(tmp_path: Path) -> Config:
    require_registry_tools()
    # The admin pushes straight into team/…: the push creates the namespace.
    return initialised(tmp_path / "data", f"http://127.0.0.1:{free_port()}",
                       auth_create_namespace_on_push="true")


@pytest.fixture
def registry(config: Config) -> Iterator[RegistryProcess]:
    with registry_for(config) as process:
        yield process


@pytest.fixture
async def dockyard(config: Config, registry: RegistryProcess) -> AsyncIterator[Dockyard]:
    async with running_dockyard(config) as running:
        yield running


async def state(dockyard: Dockyard) -> dict[str, Any]:
    """Everything the registry's events feed, as the API shows it."""
    client = dockyard.client
    tags = await client.get("/api/v1/tags", params={"repository": "team/app"})
    repositories = await client.get("/api/v1/repositories")
    activity = await client.get("/api/v1/activities", params={"limit": 500, "type": [
        "tag.pushed", "tag.deleted", "manifest.deleted", "repository.deleted"]})
    search = await client.get("/api/v1/search", params={"q": "app"})
    for response in (tags, repositories, activity, search):
        response.raise_for_status()
    return {"tags": tags.json()["items"], "repositories": repositories.json()["items"],
            "activity": activity.json()["items"], "search": search.json()["items"]}


async def settled(dockyard: Dockyard) -> None:
    """Every consumer group has applied every registry event on the log."""

    async def lags() -> dict[str, float]:
        text = (await dockyard.client.get("/metrics")).text
        return {group: float(lag) for group, lag in _LAG.findall(text)}

    await eventually(lags, lambda found: bool(found) and not any(found.values()),
                     what="every consumer caught up")


async def test_a_replayed_envelope_changes_no_state(
    dockyard: Dockyard, registry: RegistryProcess, tmp_path: Path
) -> None:
    layout = tmp_path / "layout"
    first = build_oci_image(layout, "one", [{"etc/os-release": b"ID=debian\n"}], salt="one")
    build_oci_image(layout, "two", [{"etc/os-release": b"ID=alpine\n"}], salt="two")
    await push(layout, "one", registry, "team/app:keep")
    await push(layout, "two", registry, "team/app:1.0")
    await eventually(lambda: state(dockyard), lambda s: {t["name"] for t in s["tags"]} == {
        "keep", "1.0"})
    # 1.0 goes with its manifest: a replayed push of it must not bring it back.
    await asyncio.to_thread(skopeo_delete, f"docker://{registry.host}/team/app:1.0",
                            creds=ADMIN_CREDS)
    await eventually(lambda: state(dockyard), lambda s: {t["name"] for t in s["tags"]} == {
        "keep"})
    await settled(dockyard)
    before = await state(dockyard)
    assert [t["digest"] for t in before["tags"]] == [first]

    subscription = await dockyard.app[EVENT_LOG].subscribe(REGISTRY_EVENTS, "replayer")
    try:
        delivered = await subscription.fetch(max_records=1000, timeout=1)
    finally:
        await subscription.close()
    events = [{k: v for k, v in json.loads(d.value).items() if k != "received_at"}
              for d in delivered]
    assert {e["action"] for e in events} >= {"push", "delete"}
    replayed = await dockyard.client.post("/v2/webhooks/events", json={"events": events},
                                          headers=dockyard.webhook_headers)
    assert replayed.status_code == 200  # accepted (the registry retries what is refused)...
    await settled(dockyard)
    assert await state(dockyard) == before  # ...and changes nothing

    # The consumers are alive and apply new events: the replay was ignored, not stuck.
    await dockyard.client.post("/v2/webhooks/events", headers=dockyard.webhook_headers,
                               json={"events": [event_dict("delete", "team/app", tag="new")]})
    after = await eventually(lambda: state(dockyard),
                             lambda s: len(s["activity"]) == len(before["activity"]) + 1)
    assert "new" in {entry["tag"] for entry in after["activity"]}
