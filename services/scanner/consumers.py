"""Event handlers of the scanner: thin, they turn registry pushes into queued scans, and
finished scans into ``scan-events``."""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime

from services.core.eventlog import Delivered, EventLog, Record
from services.core.schemas import validator
from services.core.times import rfc3339
from services.ingest.notifications import RegistryEvent
from services.scanner.models import ScanRecord
from services.scanner.ports import ScanStore
from services.scanner.scans import matched, summary

__all__ = ["REGISTRY_EVENTS", "SCAN_EVENTS", "ScanConsumer", "ScanPublisher", "scan_event"]

log = logging.getLogger("dockyard.scanner")

REGISTRY_EVENTS = "registry-events"
SCAN_EVENTS = "scan-events"
SCAN_EVENT_SCHEMA = "events/scan-event.schema.json"


class ScanConsumer:
    """Queues a scan for every pushed manifest, and keeps which digest each tag names.

    Queuing a known digest changes nothing, so a redelivered event, a retag or a copy to
    another repository costs no second scan; tags are upserts and deletes, also idempotent.

    Scans are per digest, so a deleted manifest (or repository) takes its scan along only when
    no tag left in any repository names it, directly or through an index: an operator who
    deletes an image expects its report gone, while a copy elsewhere keeps its own. A tag
    deleted alone (registry 3.x untag) leaves the manifest, so its scan stays.
    """

    group = "scanner"

    def __init__(self, store: ScanStore) -> None:
        self._store = store

    async def __call__(self, batch: Sequence[Delivered]) -> None:
        for record in batch:
            event = RegistryEvent.from_log_value(record.value)
            if event.action == "push" and event.is_manifest and event.digest is not None:
                # Index pushes are queued too: the worker fans them out to their platforms.
                await self._store.queue(event.digest, event.repository)
                if event.tag:
                    await self._store.tag(event.repository, event.tag, event.digest)
            elif event.action == "delete":
                # notifications: a tag, a manifest by digest, or (no target) the repository.
                untagged = await self._store.untag(event.repository, name=event.tag,
                                                   digest=None if event.tag else event.digest)
                if event.tag is None:
                    for digest in [event.digest] if event.digest else untagged:
                        await self._forget_unreferenced(digest)

    async def _forget_unreferenced(self, digest: str) -> None:
        if await self._store.tags_of([digest]):
            return
        platforms = await self._store.platforms(digest)
        await self._store.forget(digest)
        if platforms:
            await self._store.set_platforms(digest, [])
            for platform, _ in platforms:
                if not await self._store.tags_of([platform]):
                    await self._store.forget(platform)


def scan_event(record: ScanRecord, now: datetime | None = None) -> dict[str, object]:
    """The ``scan.completed`` event of schemas/events/scan-event.schema.json."""
    return {
        "id": str(uuid.uuid4()),
        "timestamp": rfc3339(now or datetime.now(UTC)),
        "type": "scan.completed",
        "repository": record.repository,
        "digest": record.digest,
        "status": record.status,
        "reason": record.reason,
        "summary": summary(record.findings) if matched(record) else None,
        "packages": len(record.inventory.packages) if record.inventory else None,
    }


class ScanPublisher:
    def __init__(self, event_log: EventLog) -> None:
        self._log = event_log

    async def __call__(self, record: ScanRecord) -> None:
        event = scan_event(record)
        validator(SCAN_EVENT_SCHEMA)(event)  # what goes on the log is what the schema says
        await self._log.append(SCAN_EVENTS, [Record(record.repository, json.dumps(event).encode())])
