"""What Dockyard needs from an event log (Kafka at scale, SQLite by default).

Semantics every adapter provides, and the contract suite in tests/core/test_eventlog_contract.py
checks:

- ``append`` writes a batch atomically: after it returns every record is durable, after it
  raises none is visible to consumers.
- Records with the same key are delivered in append order (the key is the partition key).
- A subscription belongs to a named consumer group. Each group sees every record; within a group
  a record goes to one subscription. ``commit`` records progress; a record not committed is
  delivered again to the group's next subscription (at-least-once).
- ``fetch`` waits for new records without busy polling and returns an empty list at its timeout.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

__all__ = ["Delivered", "EventLog", "Record", "Subscription"]


@dataclass(frozen=True, slots=True)
class Record:
    """A record to append: ``key`` chooses the partition (Dockyard uses the repository name)."""

    key: str
    value: bytes


@dataclass(frozen=True, slots=True)
class Delivered:
    """A record as a consumer receives it, with its position in the log."""

    topic: str
    partition: int
    offset: int
    key: str
    value: bytes
    appended_at: float


class Subscription(Protocol):
    topic: str
    group: str

    async def fetch(self, max_records: int = 500, timeout: float = 1.0) -> list[Delivered]:
        """The next records not yet delivered to this subscription, oldest first."""
        ...

    async def commit(self, records: Sequence[Delivered]) -> None:
        """Mark ``records`` (and everything before them in their partitions) as processed."""
        ...

    async def lag(self) -> int:
        """How many appended records the group has not committed yet."""
        ...

    async def close(self) -> None: ...


class EventLog(Protocol):
    async def append(self, topic: str, records: Sequence[Record]) -> None: ...

    async def subscribe(self, topic: str, group: str) -> Subscription: ...

    async def ping(self) -> None:
        """Raise if the log cannot be reached."""
        ...

    async def close(self) -> None: ...
