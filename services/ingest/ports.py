"""What the ingest service needs from its stores (SQLite by default, MongoDB at scale)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

from services.ingest.models import Activity, ActivityFilter, Operation

__all__ = ["ActivityStore", "CatalogStore", "Row"]

Row = dict[str, Any]


class CatalogStore(Protocol):
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


class ActivityStore(Protocol):
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
