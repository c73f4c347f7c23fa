"""A Dockyard that scans, for the scanner's end-to-end tests: its data directory, the real
registry ``dockyard init`` configured (token auth, notifications to this Dockyard), pushes with
skopeo as the admin, and the scans API read until the scans are finished."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx

from services.core.config import Config
from tests.support.dockyard import ADMIN_PASSWORD, initialised
from tests.support.registry import RegistryProcess, free_port, require_registry_tools, skopeo_copy

__all__ = ["ADMIN", "finished", "initialised_for_scans", "push", "registry_for", "scans"]

ADMIN = f"admin:{ADMIN_PASSWORD}"


def initialised_for_scans(data_dir: Path, **overrides: str) -> Config:
    """A data directory whose scans are picked up within 0.2 s; ``overrides`` as
    ``tests.support.dockyard.initialised`` takes them (``scanner_backend="clair"``)."""
    require_registry_tools()
    overrides.setdefault("scanner_poll_seconds", "0.2")
    return initialised(data_dir, f"http://127.0.0.1:{free_port()}", **overrides)


@contextmanager
def registry_for(config: Config) -> Iterator[RegistryProcess]:
    """The registry as ``dockyard init`` configured it in the data directory."""
    with RegistryProcess(config.server.data_dir,
                         config_file=config.path(Path("registry.yml"))) as process:
        yield process


async def push(layout: Path, tag: str, registry: RegistryProcess, ref: str, **options: Any) -> str:
    """skopeo in a thread: Dockyard, on this loop, answers the registry's token requests."""
    return await asyncio.to_thread(skopeo_copy, f"oci:{layout}:{tag}",
                                   f"docker://{registry.host}/{ref}", creds=ADMIN, **options)


async def scans(client: httpx.AsyncClient, repository: str, tag: str) -> list[dict[str, Any]]:
    response = await client.get("/api/v1/scans", params={"repository": repository, "tag": tag})
    if response.status_code == 404:  # the push notification is not through yet
        return []
    response.raise_for_status()
    return list(response.json()["items"])


def finished(items: list[dict[str, Any]]) -> bool:
    return bool(items) and all(item["status"] not in {"queued", "scanning"} for item in items)
