"""Dockyard itself for tests: an initialised data directory and the app serving on a real port.

The app runs in the test's own event loop (consumers included), listening on 127.0.0.1 so a
real registry can deliver notifications to it: ``registry_for`` runs the registry ``dockyard
init`` configured, and ``push`` copies an image into it with skopeo as the admin.
"""

from __future__ import annotations

import asyncio
import base64
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from aiohttp import web

from services.core.config import Config, load_config
from services.provision import ADMIN_USER, initialise
from services.server import build_app
from tests.support.registry import RegistryProcess, free_port, skopeo_copy

__all__ = ["ADMIN_CREDS", "ADMIN_PASSWORD", "Dockyard", "push", "registry_for",
           "running_dockyard"]

ADMIN_PASSWORD = "correct-horse-battery-staple"
ADMIN_CREDS = f"{ADMIN_USER}:{ADMIN_PASSWORD}"  # skopeo's --creds


@dataclass
class Dockyard:
    config: Config
    app: web.Application
    url: str
    client: httpx.AsyncClient  # signed in as the admin

    @property
    def webhook_headers(self) -> dict[str, str]:
        return {
            "Authorization": f"Bearer {self.config.webhook.secret}",
            "Content-Type": "application/vnd.docker.distribution.events.v1+json",
        }

    @property
    def data_dir(self) -> Path:
        return self.config.server.data_dir


def admin_auth() -> str:
    return "Basic " + base64.b64encode(f"{ADMIN_USER}:{ADMIN_PASSWORD}".encode()).decode()


def initialised(data_dir: Path, registry_url: str, **overrides: str) -> Config:
    port = free_port()
    if not (data_dir / "dockyard.toml").exists():
        initialise(data_dir, registry_url=registry_url, listen=f"127.0.0.1:{port}",
                   admin_password=ADMIN_PASSWORD)
    env = {f"DOCKYARD_{key.upper()}": value for key, value in overrides.items()}
    return load_config(data_dir / "dockyard.toml", env=env)


@asynccontextmanager
async def running_dockyard(config: Config) -> AsyncIterator[Dockyard]:
    app = build_app(config)
    runner = web.AppRunner(app, handler_cancellation=True)
    await runner.setup()
    site = web.TCPSite(runner, config.server.host, config.server.port)
    await site.start()
    url = f"http://{config.server.listen}"
    async with httpx.AsyncClient(base_url=url, headers={"Authorization": admin_auth()},
                                 timeout=30) as client:
        try:
            yield Dockyard(config, app, url, client)
        finally:
            await runner.cleanup()


@contextmanager
def registry_for(config: Config) -> Iterator[RegistryProcess]:
    """The registry as ``dockyard init`` configured it in the data directory."""
    with RegistryProcess(config.server.data_dir,
                         config_file=config.path(Path("registry.yml"))) as process:
        yield process


async def push(layout: Path, tag: str, registry: RegistryProcess, ref: str, **options: Any) -> str:
    """skopeo in a thread: Dockyard, on this loop, answers the registry's token requests."""
    return await asyncio.to_thread(skopeo_copy, f"oci:{layout}:{tag}",
                                   f"docker://{registry.host}/{ref}", creds=ADMIN_CREDS, **options)
