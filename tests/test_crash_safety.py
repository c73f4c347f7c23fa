"""`dockyard serve` killed with SIGKILL while events arrive loses nothing and doubles nothing.

A sender posts 200 envelopes of 10 tag-delete events, retrying each envelope until it gets a
2xx as the registry does (connection errors and 5xx: retry after a short pause). Meanwhile the
server process is killed with SIGKILL 3 to 5 times at seeded random moments and restarted on
the same port. Some answers are also "lost" on purpose (the sender throws a 200 away and sends
the envelope again, as the registry does after a timeout), so already-appended envelopes are
certainly redelivered. Once the server has settled, every event must be exactly one activity
and every consumer group must have caught up.

Tag deletes need no registry: each becomes one ``tag.deleted`` activity, and the catalog records
each applied event id, so both consumers' idempotency paths are exercised.
"""

from __future__ import annotations

import asyncio
import json
import random
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from services.core.config import Config
from services.core.consume import dead_letter_topic
from services.core.eventlog.sqlite import SqliteEventLog
from services.ingest.consumers import REGISTRY_EVENTS
from tests.support.dockyard import admin_auth, initialised
from tests.support.serve import ServeProcess
from tests.support.waiting import eventually

SEED = 20240611
ENVELOPES = 200
EVENTS_PER_ENVELOPE = 10
SENDERS = 4
LOST_ANSWERS = 10  # envelopes whose first 2xx the sender throws away and sends again
RETRY_PAUSE = 0.05
V1 = "application/vnd.docker.distribution.events.v1+json"


@dataclass
class SenderStats:
    acked: int = 0
    attempts: dict[int, int] = field(default_factory=dict)
    transport_retries: int = 0  # connection refused/reset while the server was down or dying
    server_errors: int = 0  # 5xx answers
    lost_answers: int = 0


@pytest.fixture
def config(tmp_path: Path) -> Config:
    # Nothing listens at the registry URL: tag deletes never ask the registry anything.
    return initialised(tmp_path / "data", "http://127.0.0.1:9")


@pytest.fixture
def server(config: Config, tmp_path: Path) -> Iterator[ServeProcess]:
    process = ServeProcess(config.server.data_dir / "dockyard.toml", tmp_path / "serve.log",
                           port=config.server.port)
    yield process
    process.stop()


def make_envelopes(rng: random.Random) -> list[list[dict[str, Any]]]:
    envelopes = []
    for e in range(ENVELOPES):
        events = []
        for n in range(EVENTS_PER_ENVELOPE):
            i = e * EVENTS_PER_ENVELOPE + n
            events.append({
                "id": f"crash-{i:04d}-{rng.getrandbits(32):08x}",
                "timestamp": f"2024-06-11T12:{i // 60 % 60:02d}:{i % 60:02d}.{i:06d}Z",
                "action": "delete",
                "target": {"repository": f"crash/r{i % 7}", "tag": f"t{i}"},
                "source": {"instanceID": "crash-safety-test"},
            })
        envelopes.append(events)
    return envelopes


async def send_all(
    url: str, secret: str, envelopes: list[list[dict[str, Any]]], lose: set[int],
    stats: SenderStats,
) -> None:
    queue: asyncio.Queue[int] = asyncio.Queue()
    for index in range(len(envelopes)):
        queue.put_nowait(index)
    headers = {"Authorization": f"Bearer {secret}", "Content-Type": V1}

    async def deliver(client: httpx.AsyncClient, index: int) -> None:
        body = {"events": envelopes[index]}
        while True:
            stats.attempts[index] = stats.attempts.get(index, 0) + 1
            try:
                response = await client.post("/v2/webhooks/events", json=body, headers=headers)
            except httpx.TransportError:
                stats.transport_retries += 1
            else:
                if response.status_code >= 500:
                    stats.server_errors += 1
                elif response.is_success and index in lose:
                    lose.discard(index)  # appended, but the answer "never arrived"
                    stats.lost_answers += 1
                else:
                    assert response.is_success, (index, response.status_code, response.text)
                    assert response.json() == {"accepted": EVENTS_PER_ENVELOPE}
                    stats.acked += 1
                    return
            await asyncio.sleep(RETRY_PAUSE)

    async def worker() -> None:
        async with httpx.AsyncClient(base_url=url, timeout=10) as client:
            while not queue.empty():
                await deliver(client, queue.get_nowait())

    await asyncio.gather(*(worker() for _ in range(SENDERS)))


async def kill_and_restart(server: ServeProcess, rng: random.Random, stats: SenderStats,
                           kills: list[int]) -> None:
    # Thresholds well below the end, so the sender is still busy at every kill.
    thresholds = sorted(rng.sample(range(10, ENVELOPES * 4 // 5), rng.randint(3, 5)))
    for threshold in thresholds:
        while stats.acked < threshold:
            await asyncio.sleep(0.002)
        await asyncio.sleep(rng.uniform(0, 0.03))  # mid-request, mid-append or mid-batch
        server.kill()
        kills.append(stats.acked)
        server.start()
        await server.ready()


async def all_activities(client: httpx.AsyncClient) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    # Only what the events make: signing in to read the feed is activity of its own.
    params: dict[str, str] = {"limit": "500", "type": "tag.deleted"}
    while True:
        response = await client.get("/api/v1/activities", params=params)
        response.raise_for_status()
        page = response.json()
        items.extend(page["items"])
        if page["next"] is None:
            return items
        params["cursor"] = page["next"]


def lag(metrics: str, group: str) -> float | None:
    pattern = rf'^dockyard_consumer_lag{{group="{group}",topic="registry-events"}} (\S+)$'
    found = re.search(pattern, metrics, re.MULTILINE)
    return None if found is None else float(found[1])


async def logged_values(config: Config, topic: str) -> list[bytes]:
    """Every record on ``topic`` (duplicates included), read with a throw-away group."""
    event_log = SqliteEventLog(config.path(config.eventlog.path))
    await event_log.open()
    try:
        subscription = await event_log.subscribe(topic, "crash-test-reader")
        records = await subscription.fetch(max_records=100_000, timeout=0.2)
        await subscription.close()
    finally:
        await event_log.close()
    return [record.value for record in records]


@pytest.mark.slow
async def test_sigkill_during_delivery_loses_nothing_and_doubles_nothing(
    config: Config, server: ServeProcess
) -> None:
    rng = random.Random(SEED)  # noqa: S311 - a repeatable schedule, not a secret
    envelopes = make_envelopes(rng)
    sent = {event["id"]: event for envelope in envelopes for event in envelope}
    assert len(sent) == ENVELOPES * EVENTS_PER_ENVELOPE
    lose = set(rng.sample(range(ENVELOPES), LOST_ANSWERS))

    server.start()
    await server.ready()
    stats = SenderStats()
    kills: list[int] = []
    await asyncio.gather(
        send_all(server.url, config.webhook.secret, envelopes, lose, stats),
        kill_and_restart(server, rng, stats, kills),
    )

    # The test is only worth something if the kills and retries really happened.
    assert 3 <= len(kills) <= 5, kills
    retried = sum(1 for count in stats.attempts.values() if count > 1)
    assert stats.transport_retries >= len(kills), stats
    assert stats.lost_answers == LOST_ANSWERS
    assert retried >= LOST_ANSWERS + 1, stats
    assert stats.acked == ENVELOPES

    async with httpx.AsyncClient(base_url=server.url, timeout=10,
                                 headers={"Authorization": admin_auth()}) as client:
        feed = await eventually(lambda: all_activities(client),
                                lambda items: len(items) >= len(sent), timeout=30,
                                what=f"{len(sent)} activities\n{server.log_tail()}")
        ids = [item["id"] for item in feed]
        assert len(ids) == len(sent), "duplicate activities"
        assert set(ids) == set(sent), "lost or unknown activities"
        for item in feed:
            event = sent[item["id"]]
            assert (item["type"], item["repository"], item["tag"], item["synthetic"]) == (
                "tag.deleted", event["target"]["repository"], event["target"]["tag"], False)

        await eventually(
            lambda: client.get("/metrics"),
            lambda r: lag(r.text, "catalog") == 0 and lag(r.text, "activity") == 0,
            timeout=15, what="consumer lag 0 for catalog and activity",
        )

    assert server.stop() == 0, server.log_tail()
    # Lost answers (at least) put envelopes on the log twice; each event still counts once.
    on_log = await logged_values(config, REGISTRY_EVENTS)
    assert {json.loads(value)["id"] for value in on_log} == set(sent)
    assert len(on_log) - len(sent) >= LOST_ANSWERS * EVENTS_PER_ENVELOPE
    assert await logged_values(config, dead_letter_topic(REGISTRY_EVENTS)) == []
