"""Event handlers of the ingest service: thin, they parse, fetch and hand over to the store."""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Sequence

from services.auth.audit import IDENTITY_EVENTS
from services.core.eventlog import Delivered
from services.core.registry import ManifestNotFound, RegistryClient
from services.ingest.activity import activity_for, identity_activity, scan_activity
from services.ingest.catalog import FetchedManifest, needs_manifest, plan
from services.ingest.manifests import describe
from services.ingest.models import Activity, Operation
from services.ingest.notifications import RegistryEvent
from services.ingest.ports import ActivityStore, CatalogStore
from services.scanner.consumers import SCAN_EVENTS

__all__ = ["REGISTRY_EVENTS", "ActivityConsumer", "CatalogConsumer", "ManifestReader"]

log = logging.getLogger("dockyard.ingest")

REGISTRY_EVENTS = "registry-events"
# Manifests fetched at once while applying a batch.
FETCH_CONCURRENCY = 8
DESCRIBED_CACHE = 4096


def _events(batch: Sequence[Delivered]) -> list[RegistryEvent]:
    return [RegistryEvent.from_log_value(record.value) for record in batch]


class ManifestReader:
    """Reads pushed manifests from the registry for consumers that plan with them (the catalog,
    the search indexer), a few at once. Manifests are content-addressed, so what a digest
    describes never changes: a retag, a copy to another repository or a sync's synthetic push
    need no second fetch. ``child_sizes``: also read an index's platform manifests for their
    sizes (the catalog shows them; an entry missing one is not cached, to be read again)."""

    def __init__(self, registry: RegistryClient, *, child_sizes: bool) -> None:
        self._registry = registry
        self._child_sizes = child_sizes
        self._fetching = asyncio.Semaphore(FETCH_CONCURRENCY)
        self._described: OrderedDict[str, FetchedManifest] = OrderedDict()
        # Reads under way: digest -> (the repository it is read from, the read).
        self._reading: dict[str, tuple[str, asyncio.Task[FetchedManifest | None]]] = {}

    async def fetch(self, event: RegistryEvent) -> FetchedManifest | None:
        """The manifest ``plan`` needs for ``event``; None if it needs none or it is gone."""
        if not needs_manifest(event) or event.digest is None:
            return None
        digest, repository = event.digest, event.repository
        if (known := self._described.get(digest)) is not None:
            self._described.move_to_end(digest)
            return known
        # One read per digest at a time. A batch often holds many events of one digest (a
        # multi-arch push, a retag spree, one image pushed to many repositories), and each
        # would miss the cache until the first read came back.
        if (reading := self._reading.get(digest)) is None:
            task = asyncio.create_task(self._read(repository, digest))
            reading = self._reading[digest] = (repository, task)
            task.add_done_callback(lambda _: self._reading.pop(digest, None))
        read_from, task = reading
        # shield: one batch being cancelled must not cancel the read other batches wait for.
        fetched = await asyncio.shield(task)
        if fetched is None and read_from != repository:
            return await self._read(repository, digest)  # gone there, maybe not here
        return fetched

    async def _read(self, repository: str, digest: str) -> FetchedManifest | None:
        async with self._fetching:
            try:
                manifest = await self._registry.get_manifest(repository, digest)
            except ManifestNotFound:
                log.info("manifest gone before it was read",
                         extra={"repository": repository, "digest": digest})
                return None
            info = describe(manifest.media_type, manifest.body)
            sizes: dict[str, int | None] = {}
            if self._child_sizes:
                for platform in info.platforms:
                    sizes[platform.digest] = await self._child_size(repository, platform.digest)
        fetched = FetchedManifest(manifest.digest, info, sizes)
        if None not in sizes.values():
            self._described[manifest.digest] = fetched
            if len(self._described) > DESCRIBED_CACHE:
                self._described.popitem(last=False)
        return fetched

    async def _child_size(self, repository: str, digest: str) -> int | None:
        try:
            child = await self._registry.get_manifest(repository, digest)
        except ManifestNotFound:
            return None
        return describe(child.media_type, child.body).size


class CatalogConsumer:
    group = "catalog"

    def __init__(self, store: CatalogStore, registry: RegistryClient) -> None:
        self._store = store
        self._manifests = ManifestReader(registry, child_sizes=True)

    async def __call__(self, batch: Sequence[Delivered]) -> None:
        events = _events(batch)
        fetched = await asyncio.gather(*(self._manifests.fetch(e) for e in events))
        changes: list[tuple[str, Sequence[Operation]]] = [
            (event.id, plan(event, manifest))
            for event, manifest in zip(events, fetched, strict=True)
        ]
        await self._store.apply(changes)


class ActivityConsumer:
    group = "activity"

    def __init__(
        self,
        store: ActivityStore,
        *,
        record_pulls: bool,
        on_recorded: Callable[[list[Activity]], Awaitable[None]] | None = None,
    ) -> None:
        self._store = store
        self._record_pulls = record_pulls
        self._on_recorded = on_recorded

    async def __call__(self, batch: Sequence[Delivered]) -> None:
        entries = [entry for record in batch if (entry := self._entry(record)) is not None]
        if not entries:
            return
        new = await self._store.record(entries)
        if new and self._on_recorded is not None:
            await self._on_recorded(new)

    def _entry(self, record: Delivered) -> Activity | None:
        if record.topic == IDENTITY_EVENTS:
            return identity_activity(record.value)
        if record.topic == SCAN_EVENTS:
            return scan_activity(record.value)
        event = RegistryEvent.from_log_value(record.value)
        return activity_for(event, record_pulls=self._record_pulls)
