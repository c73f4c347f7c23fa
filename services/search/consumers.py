"""The search indexer: consumer group ``search`` on the registry and identity topics.

Registry events are read the way the catalog reads them (``services.ingest.catalog.plan``), with
the manifest fetched from the registry for its platforms and artifact type, so the index never
queries the catalog's tables and never depends on the catalog consumer having run first.
Identity events add namespaces; their descriptions are read through the auth service, since the
events do not carry them. Scan events (``scan.completed``) carry a scan's summary; the ids found
are read through the scanner's store (its module API), advisories with their aliases.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime

from services.auth.audit import IDENTITY_EVENTS
from services.core.eventlog import Delivered
from services.core.registry import RegistryClient
from services.core.schemas import validator
from services.ingest.catalog import plan
from services.ingest.consumers import ManifestReader
from services.ingest.notifications import RegistryEvent
from services.scanner.consumers import SCAN_EVENT_SCHEMA, SCAN_EVENTS
from services.search.models import IndexChange, PutFindings, PutNamespace
from services.search.ports import SearchIndex

__all__ = ["NAMESPACE_EVENT_TYPES", "IndexConsumer", "NamespaceDescriptions", "ScanFindings"]

log = logging.getLogger("dockyard.search")

# Identity changes that create a namespace or change what the index shows of one.
NAMESPACE_EVENT_TYPES = frozenset({"namespace.create", "namespace.change_description",
                                   "user.create"})

# Namespace name → description, for the names asked that exist (the auth service's answer).
NamespaceDescriptions = Callable[[list[str]], Awaitable[dict[str, str]]]
# Manifest digest → the vulnerability ids its scan found (ids and aliases); None when the
# scanner's findings cannot be read from this process.
ScanFindings = Callable[[str], Awaitable[list[str] | None]]


class IndexConsumer:
    group = "search"

    def __init__(
        self,
        index: SearchIndex,
        registry: RegistryClient,
        descriptions: NamespaceDescriptions,
        findings: ScanFindings,
    ) -> None:
        self._index = index
        self._descriptions = descriptions
        self._findings = findings
        # Platforms and artifact type are all the index keeps: no child manifest sizes.
        self._manifests = ManifestReader(registry, child_sizes=False)

    async def __call__(self, batch: Sequence[Delivered]) -> None:
        registry = [r for r in batch if r.topic not in {IDENTITY_EVENTS, SCAN_EVENTS}]
        identity = [r for r in batch if r.topic == IDENTITY_EVENTS]
        changes: list[tuple[str, Sequence[IndexChange]]] = [
            await self._scan_change(record) for record in batch if record.topic == SCAN_EVENTS]
        if registry:
            events = [RegistryEvent.from_log_value(record.value) for record in registry]
            fetched = await asyncio.gather(*(self._manifests.fetch(event) for event in events))
            changes.extend((event.id, plan(event, manifest))
                           for event, manifest in zip(events, fetched, strict=True))
        if identity:
            changes.extend(await self._namespace_changes(identity))
        await self._index.apply(changes)

    async def _scan_change(self, record: Delivered) -> tuple[str, Sequence[IndexChange]]:
        """schemas/events/scan-event.schema.json; only a done scan says what was found."""
        event = json.loads(record.value)
        validator(SCAN_EVENT_SCHEMA)(event)
        if event["status"] != "done":
            return event["id"], [PutFindings(event["digest"], None, ())]
        ids = await self._findings(event["digest"])
        if ids is None:
            log.warning("scan findings cannot be read here; indexing the summary only",
                        extra={"digest": event["digest"]})
        return event["id"], [PutFindings(event["digest"], event["summary"], tuple(ids or ()))]

    async def _namespace_changes(
        self, records: Sequence[Delivered]
    ) -> list[tuple[str, Sequence[IndexChange]]]:
        wanted = []
        for record in records:
            event = json.loads(record.value)
            if event.get("type") in NAMESPACE_EVENT_TYPES and event.get("namespace"):
                wanted.append((event["id"], event["namespace"],
                               datetime.fromisoformat(event["timestamp"])))
        if not wanted:
            return []
        found = await self._descriptions(sorted({name for _, name, _ in wanted}))
        return [(event_id, [PutNamespace(name, found[name], at)] if name in found else [])
                for event_id, name, at in wanted]

