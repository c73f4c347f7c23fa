"""Times on the wire, RFC 3339 in UTC with a ``Z`` as registries and JSON APIs write them, and
in the stores, integer microseconds since the epoch (sortable, exact, one index key)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import overload

__all__ = ["from_micros", "micros", "rfc3339"]


def rfc3339(moment: datetime) -> str:
    """``2026-01-31T12:00:00.123456Z``; naive times are taken as UTC."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def micros(moment: datetime) -> int:
    """Microseconds since the epoch, as the stores keep times."""
    return int(moment.timestamp() * 1_000_000)


@overload
def from_micros(value: int) -> datetime: ...
@overload
def from_micros(value: None) -> None: ...
@overload
def from_micros(value: int | None) -> datetime | None: ...
def from_micros(value: int | None) -> datetime | None:
    """The UTC time ``micros`` stored (None stays None)."""
    return None if value is None else datetime.fromtimestamp(value / 1_000_000, UTC)
