"""Times on the wire: RFC 3339 in UTC with a ``Z``, as registries and JSON APIs write them."""

from __future__ import annotations

from datetime import UTC, datetime

__all__ = ["rfc3339"]


def rfc3339(moment: datetime) -> str:
    """``2026-01-31T12:00:00.123456Z``; naive times are taken as UTC."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")
