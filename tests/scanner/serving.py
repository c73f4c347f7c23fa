"""A Dockyard that scans, for the scanner's end-to-end tests: its data directory, the real
registry ``dockyard init`` configured (token auth, notifications to this Dockyard), pushes with
skopeo as the admin, and the scans API read until the scans are finished."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx

from services.core.config import Config
from tests.support.dockyard import ADMIN_CREDS, initialised, push, registry_for
from tests.support.registry import free_port, require_registry_tools

__all__ = ["ADMIN", "finished", "initialised_for_scans", "push", "registry_for", "scans"]

ADMIN = ADMIN_CREDS


def initialised_for_scans(data_dir: Path, **overrides: str) -> Config:
    """A data directory whose scans are picked up within 0.2 s and may be rescanned at once;
    ``overrides`` as ``tests.support.dockyard.initialised`` takes them
    (``scanner_backend="clair"``)."""
    require_registry_tools()
    overrides.setdefault("scanner_poll_seconds", "0.2")
    # The admin pushes straight into team/…: the push creates the namespace.
    overrides.setdefault("auth_create_namespace_on_push", "true")
    overrides.setdefault("scanner_rescan_seconds", "0")
    return initialised(data_dir, f"http://127.0.0.1:{free_port()}", **overrides)


async def scans(client: httpx.AsyncClient, repository: str, tag: str) -> list[dict[str, Any]]:
    response = await client.get("/api/v1/scans", params={"repository": repository, "tag": tag})
    if response.status_code == 404:  # the push notification is not through yet
        return []
    response.raise_for_status()
    return list(response.json()["items"])


def finished(items: list[dict[str, Any]]) -> bool:
    return bool(items) and all(item["status"] not in {"queued", "scanning"} for item in items)
