"""Reconciles the catalog with what the registry holds.

The registry keeps undelivered notifications in memory only, so a restart can lose them. Sync
lists the registry (``/v2/_catalog``, ``tags/list``, each tag's manifest) and appends what the
catalog lacks as synthetic events to the same log, where every consumer applies them as usual.
It never wipes history: a tag that vanished becomes a ``delete`` event (and so an activity).
"""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from services.core.eventlog import EventLog, Record
from services.core.registry import ManifestNotFound, RegistryClient
from services.core.schemas import validator
from services.core.times import rfc3339
from services.ingest.consumers import REGISTRY_EVENTS
from services.ingest.notifications import EVENT_SCHEMA
from services.ingest.ports import CatalogStore

__all__ = ["RegistryTag", "SyncReport", "reconcile", "sync_catalog"]

log = logging.getLogger("dockyard.sync")

SYNC_INSTANCE = "dockyard-sync"
APPEND_CHUNK = 500


@dataclass(frozen=True, slots=True)
class RegistryTag:
    digest: str
    media_type: str
    size: int


@dataclass(frozen=True, slots=True)
class SyncReport:
    repositories: int
    tags: int
    events: int


def reconcile(
    registry: Mapping[str, Mapping[str, RegistryTag]],
    catalog: Mapping[str, Mapping[str, str]],
    now: datetime,
) -> list[dict[str, Any]]:
    """Synthetic registry events that bring ``catalog`` (repo → tag → digest) to ``registry``."""
    events = [
        _event(now, "push", {"repository": repository, "tag": tag, "digest": found.digest,
                             "mediaType": found.media_type, "size": found.size})
        for repository in sorted(registry)
        for tag, found in sorted(registry[repository].items())
        if catalog.get(repository, {}).get(tag) != found.digest
    ]
    for repository in sorted(catalog):
        present = registry.get(repository)
        events.extend(
            _event(now, "delete", {"repository": repository, "tag": tag})
            for tag in sorted(catalog[repository])
            if present is None or tag not in present
        )
        if present is None:
            events.append(_event(now, "delete", {"repository": repository}))
    return events


async def sync_catalog(
    registry: RegistryClient,
    catalog: CatalogStore,
    event_log: EventLog,
    *,
    progress: Callable[[str], None] | None = None,
) -> SyncReport:
    """Read the registry, compare with the catalog, append the difference to the log."""
    found: dict[str, dict[str, RegistryTag]] = {}
    tag_count = 0
    async for repository in registry.catalog():
        tags: dict[str, RegistryTag] = {}
        for tag in await registry.tags(repository):
            try:
                manifest = await registry.get_manifest(repository, tag)
            except ManifestNotFound:
                continue  # deleted while we looked
            tags[tag] = RegistryTag(manifest.digest, manifest.media_type, manifest.size)
        found[repository] = tags
        tag_count += len(tags)
        if progress is not None:
            progress(repository)
    known = {name: await catalog.tag_digests(name) for name in await catalog.repository_names()}
    events = reconcile(found, known, datetime.now(UTC))
    # Consumers trust what is on the log: like the webhook, sync appends only valid events.
    check = validator(EVENT_SCHEMA)
    for event in events:
        check(event)
    records = [
        Record(event["target"]["repository"], json.dumps(event, separators=(",", ":")).encode())
        for event in events
    ]
    for start in range(0, len(records), APPEND_CHUNK):
        await event_log.append(REGISTRY_EVENTS, records[start:start + APPEND_CHUNK])
    report = SyncReport(len(found), tag_count, len(events))
    log.info("sync finished", extra={"repositories": report.repositories, "tags": report.tags,
                                     "events": report.events})
    return report


def _event(now: datetime, action: str, target: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": str(uuid.uuid4()),
        "timestamp": rfc3339(now),
        "action": action,
        "target": target,
        "source": {"instanceID": SYNC_INSTANCE},
        "synthetic": True,
        "received_at": rfc3339(now),
    }
