"""Driving a Dockyard that runs as separate processes: send events, read what was applied.

``EventSender`` posts registry notifications to a webhook the way the registry does (an envelope
is retried until it gets a 2xx). ``applied_ids`` reads the activity API; ``committed`` asks the
broker where a consumer group stands, without joining the group.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Self

import httpx
from aiokafka import AIOKafkaConsumer, TopicPartition

from services.core.eventlog.kafka import kafka_group_id

__all__ = ["CommittedOffsets", "EventSender", "applied_ids", "committed", "tag_delete"]

V1 = "application/vnd.docker.distribution.events.v1+json"


def tag_delete(number: int, repositories: int) -> dict[str, Any]:
    """A tag delete: applied by both ingest consumers without asking the registry anything."""
    return {
        "id": f"scaleout-{number:05d}",
        "timestamp": f"2026-01-02T03:{number // 3600 % 60:02d}:{number // 60 % 60:02d}."
                     f"{number:06d}Z",
        "action": "delete",
        "target": {"repository": f"fleet/r{number % repositories}", "tag": f"t{number}"},
        "source": {"instanceID": "scaleout-test"},
    }


@dataclass
class EventSender:
    url: str
    secret: str
    repositories: int = 12
    per_envelope: int = 10
    pause: float = 0.02
    sent: list[str] = field(default_factory=list)
    _next: int = 0

    async def send(self, envelopes: int) -> None:
        async with httpx.AsyncClient(base_url=self.url, timeout=10) as client:
            for _ in range(envelopes):
                await self._deliver(client)

    async def stream(self, stop: asyncio.Event) -> None:
        """Send one envelope every ``pause`` seconds until ``stop`` is set."""
        async with httpx.AsyncClient(base_url=self.url, timeout=10) as client:
            while not stop.is_set():
                await self._deliver(client)
                await asyncio.sleep(self.pause)

    async def _deliver(self, client: httpx.AsyncClient) -> None:
        events = [tag_delete(self._next + n, self.repositories) for n in range(self.per_envelope)]
        self._next += self.per_envelope
        headers = {"Authorization": f"Bearer {self.secret}", "Content-Type": V1}
        while True:
            try:
                response = await client.post("/v2/webhooks/events", json={"events": events},
                                             headers=headers)
            except httpx.TransportError:
                pass
            else:
                if response.is_success:
                    self.sent.extend(event["id"] for event in events)
                    return
                assert response.status_code >= 500, response.text
            await asyncio.sleep(0.1)


async def applied_ids(client: httpx.AsyncClient, url: str) -> list[str]:
    """Ids of every ``tag.deleted`` activity, duplicates included, through the API."""
    ids: list[str] = []
    params: dict[str, str] = {"type": "tag.deleted", "limit": "500"}
    while True:
        response = await client.get(f"{url}/api/v1/activities", params=params)
        response.raise_for_status()
        page = response.json()
        ids.extend(item["id"] for item in page["items"])
        if page["next"] is None:
            return ids
        params["cursor"] = page["next"]


async def committed(bootstrap: str, group: str, topic: str) -> Mapping[int, int]:
    """The group's committed offset per partition of ``topic`` (0 where nothing is committed)."""
    async with CommittedOffsets(bootstrap, group, topic) as offsets:
        return await offsets.read()


class CommittedOffsets:
    """Asks the group coordinator for a Dockyard group's committed offsets on a topic, as often
    as needed.

    A consumer that never subscribes does not join the group, so asking disturbs nobody.
    """

    def __init__(self, bootstrap: str, group: str, topic: str) -> None:
        self.topic = topic
        self._consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap,
                                          group_id=kafka_group_id(group, topic),
                                          enable_auto_commit=False)

    async def __aenter__(self) -> Self:
        await self._consumer.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self._consumer.stop()

    async def read(self) -> Mapping[int, int]:
        await self._consumer.topics()  # fresh metadata, so every partition is known
        partitions = self._consumer.partitions_for_topic(self.topic) or set()
        return {p: await self._consumer.committed(TopicPartition(self.topic, p)) or 0
                for p in sorted(partitions)}
