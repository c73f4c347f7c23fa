"""What the search service needs from its index (SQLite FTS5 by default, MongoDB at scale)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

from services.search.models import IndexChange, IndexedRepository, Position, Query

__all__ = ["Hit", "SearchIndex"]

# One result as the API renders it, with its place in the ranking.
Hit = tuple[Position, dict[str, Any]]


class SearchIndex(Protocol):
    async def open(self) -> None: ...

    async def close(self) -> None: ...

    async def ping(self) -> None:
        """Raise if the index cannot be read."""
        ...

    async def apply(self, changes: Sequence[tuple[str, Sequence[IndexChange]]]) -> int:
        """Apply each event's changes, skipping event ids already applied (pull counts must
        not grow on redelivery). Returns how many events were new."""
        ...

    async def search(
        self,
        query: Query,
        *,
        visible: frozenset[str] | None,
        after: Position | None,
        limit: int,
    ) -> list[Hit]:
        """Ranked matches after ``after``, only in ``visible`` namespaces (None: all).

        The namespace filter is part of the query, so ``limit`` hits come back whenever that
        many visible matches exist.
        """
        ...

    async def clear(self) -> None:
        """Forget every namespace, repository and tag (a rebuild follows); stars stay."""
        ...

    async def load(self, repositories: Sequence[IndexedRepository]) -> None:
        """Put these repositories and their tags in the index, replacing what it had of them."""
        ...

    async def add_namespaces(self, names: dict[str, str]) -> None:
        """Namespaces (name → description) for a rebuild; existing ones are updated."""
        ...

    async def star(self, user: str, repository: str) -> bool:
        """Star an indexed repository; False when the index has no such repository."""
        ...

    async def unstar(self, user: str, repository: str) -> None: ...

    async def starred(
        self, user: str, *, visible: frozenset[str] | None, after: str | None, limit: int
    ) -> list[dict[str, Any]]:
        """The repositories ``user`` starred, by name, among the ``visible`` namespaces."""
        ...

    async def size_bytes(self) -> int:
        """Space the index takes (for the benchmark and ``reindex``'s summary)."""
        ...
