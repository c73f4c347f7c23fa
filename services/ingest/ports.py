"""What the ingest service needs from its stores (SQLite by default, MongoDB at scale)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from typing import Any, Protocol

from services.core.dump import Dumped, RecordSpec
from services.ingest.models import Activity, ActivityFilter, Operation

__all__ = ["ACTIVITY_RECORDS", "CATALOG_RECORDS", "ActivityStore", "CatalogStore", "Row"]

Row = dict[str, Any]

# What the stores' dump yields and load takes; times are µs since the epoch, as stored.
CATALOG_RECORDS: RecordSpec = {
    "repository": {"name": "str", "namespace": "str", "created_at": "int", "updated_at": "int",
                   "pull_count": "int", "last_pulled_at": "int?"},
    "manifest": {"repository": "str", "digest": "str", "media_type": "str", "kind": "str",
                 "artifact_type": "str?", "size": "int?", "platforms": "list",
                 "subject": "str?", "pushed_by": "str?", "pushed_at": "int"},
    "tag": {"repository": "str", "name": "str", "digest": "str", "pushed_by": "str?",
            "pushed_at": "int", "pull_count": "int", "last_pulled_at": "int?"},
    "applied_event": {"id": "str", "applied_at": "num"},
}
ACTIVITY_RECORDS: RecordSpec = {
    "activity": {"seq": "int", "id": "str", "type": "str", "actor": "str?",
                 "repository": "str?", "namespace": "str", "tag": "str?", "digest": "str?",
                 "time_us": "int", "address": "str?", "user_agent": "str?", "synthetic": "bool",
                 "subject": "str?", "team": "str?", "details": "dict",
                 "audience": ("namespace", "admin")},
}


class CatalogStore(Protocol):
    async def ping(self) -> None:
        """Raise if the store cannot be reached (the health check)."""
        ...

    async def apply(self, changes: Sequence[tuple[str, Sequence[Operation]]]) -> int:
        """Apply each event's operations in one transaction, skipping event ids already applied.

        Returns how many events were new.
        """
        ...

    async def repositories(
        self,
        *,
        namespace: str | None,
        after: str | None,
        limit: int,
        visible: frozenset[str] | None = None,
    ) -> list[Row]:
        """Repositories by name; ``visible`` limits them to those namespaces (None: all)."""
        ...

    async def repository(self, name: str) -> Row | None: ...

    async def tags(self, repository: str, *, after: str | None, limit: int) -> list[Row]: ...

    async def tag_digests(self, repository: str) -> dict[str, str]:
        """Every tag of the repository and the digest it points at (for sync)."""
        ...

    async def repository_names(self) -> list[str]: ...

    def dump(self) -> AsyncIterator[Dumped]:
        """Every record (CATALOG_RECORDS), each kind after the kinds it refers to."""
        ...

    async def is_empty(self) -> bool: ...

    async def load(self, records: Sequence[Dumped]) -> None:
        """Write dumped records as they are, in order (dockyard import, into an empty store)."""
        ...


class ActivityStore(Protocol):
    async def ping(self) -> None:
        """Raise if the store cannot be reached (the health check)."""
        ...

    async def record(self, activities: Sequence[Activity]) -> list[Activity]:
        """Store entries not stored before (by id); returns those that were new."""
        ...

    async def search(
        self, where: ActivityFilter, *, before: tuple[int, int] | None, limit: int
    ) -> list[tuple[tuple[int, int], Activity]]:
        """Newest first; each entry with its keyset position (time in µs, sequence)."""
        ...

    async def since(self, sequence: int, limit: int) -> list[tuple[int, Activity]]:
        """Entries recorded after ``sequence``, oldest first (for the live stream)."""
        ...

    async def last_sequence(self) -> int: ...

    def dump(self) -> AsyncIterator[Dumped]:
        """Every entry (ACTIVITY_RECORDS) in sequence order."""
        ...

    async def is_empty(self) -> bool: ...

    async def load(self, records: Sequence[Dumped]) -> None:
        """Write dumped entries with their sequence numbers; later ones continue after them."""
        ...
