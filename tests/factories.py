"""Factories for test data: registry events as the webhook and the log carry them."""

from __future__ import annotations

import itertools
import json
from datetime import UTC, datetime
from typing import Any

from services.ingest.notifications import RegistryEvent

__all__ = ["OCI_MANIFEST", "event_dict", "registry_event"]

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
DIGEST_A = "sha256:" + "a" * 64
DIGEST_B = "sha256:" + "b" * 64

_ids = itertools.count(1)


def event_dict(
    action: str,
    repository: str = "team/app",
    *,
    actor: str | None = "alice",
    when: datetime | None = None,
    **target: Any,
) -> dict[str, Any]:
    """One notification event; ``target`` keys use the wire names (``mediaType``, ``tag``…)."""
    event: dict[str, Any] = {
        "id": f"event-{next(_ids)}",
        "timestamp": (when or datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)).isoformat(),
        "action": action,
        "target": {"repository": repository, **target},
        "request": {"addr": "10.0.0.7:5123", "method": "PUT", "useragent": "skopeo/1.9"},
        "source": {"instanceID": "registry-1"},
    }
    if actor is not None:
        event["actor"] = {"name": actor}
    return event


def registry_event(action: str, repository: str = "team/app", **kwargs: Any) -> RegistryEvent:
    """The event as a consumer reads it back from the log."""
    raw = event_dict(action, repository, **kwargs)
    raw["received_at"] = "2026-01-02T03:04:06Z"
    return RegistryEvent.from_log_value(json.dumps(raw).encode())
