"""A Dockyard with the portal, served by aiohttp's test server, and browsers' sessions on it.

The registry URL points at a port nobody listens on: these handler tests read the catalog the
tests seed through the catalog store (as the catalog consumer would), and the pages that ask
the registry say it cannot be reached. The browser tests (test_portal_browser.py) run a real
registry.
"""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path

import pytest
import pytest_asyncio
from aiohttp import ClientSession, CookieJar, web
from aiohttp.test_utils import TestServer

from services.auth.access import IDENTITY
from services.auth.policy import Principal, Visibility
from services.core.config import Config
from services.ingest.api import CATALOG_STORE
from services.ingest.models import PlatformEntry, PutManifest, PutTag
from services.server import build_app
from tests.support.dockyard import ADMIN_PASSWORD, initialised
from tests.support.portal import csrf_of
from tests.support.registry import free_port

ADMIN = Principal("admin", "user", admin=True)
PASSWORD = "portal-password-1"


@pytest.fixture
def config(tmp_path: Path) -> Config:
    return initialised(tmp_path / "data", f"http://127.0.0.1:{free_port()}",
                       sync_interval_seconds="0")


@pytest_asyncio.fixture
async def server(config: Config) -> AsyncIterator[TestServer]:
    test_server = TestServer(build_app(config))
    await test_server.start_server()
    yield test_server
    await test_server.close()


@pytest.fixture
def app(server: TestServer) -> web.Application:
    return server.app


@asynccontextmanager
async def browser(server: TestServer) -> AsyncIterator[ClientSession]:
    """A client with a cookie jar of its own, as one browser would be."""
    async with ClientSession(base_url=str(server.make_url("/")),
                             cookie_jar=CookieJar(unsafe=True)) as session:
        yield session


@asynccontextmanager
async def visiting(
    config: Config, services: list[str] | None = None
) -> AsyncIterator[ClientSession]:
    """A Dockyard of its own on ``config`` (running ``services``, default all) and a browser."""
    test_server = TestServer(build_app(config, services))
    await test_server.start_server()
    try:
        async with browser(test_server) as session:
            yield session
    finally:
        await test_server.close()


@pytest_asyncio.fixture
async def anonymous(server: TestServer) -> AsyncIterator[ClientSession]:
    async with browser(server) as session:
        yield session


@pytest_asyncio.fixture
async def admin(server: TestServer) -> AsyncIterator[ClientSession]:
    async with browser(server) as session:
        await sign_in(session, "admin", ADMIN_PASSWORD)
        yield session


async def sign_in(client: ClientSession, username: str, password: str) -> str:
    """Sign in through the form; returns the HTML of the page landed on."""
    page = await client.get("/login")
    token = csrf_of(await page.text())
    response = await client.post("/login", data={"username": username, "password": password,
                                                 "csrf": token, "next": "/"})
    text = await response.text()
    assert response.status == 200, text
    return text


async def make_user(app: web.Application, name: str, *, admin: bool = False) -> None:
    await app[IDENTITY].create_user(ADMIN, name, email=f"{name}@example.test",
                                    password=PASSWORD, admin=admin)


_events = itertools.count(1)
DIGEST_A = "sha256:" + "a" * 64
DIGEST_B = "sha256:" + "b" * 64
DIGEST_SIG = "sha256:" + "c" * 64
OCI = "application/vnd.oci.image.manifest.v1+json"


async def seed_tag(app: web.Application, repository: str, tag: str, digest: str = DIGEST_A, *,
                   kind: str = "image", subject: str | None = None,
                   artifact_type: str | None = None) -> None:
    at = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    operations: list[PutManifest | PutTag] = [
        PutManifest(repository, digest, OCI, kind, artifact_type, 2048,
                    (PlatformEntry("linux", "arm64", "v8", digest, 2048),),
                    subject, "alice", at)]
    if tag:
        operations.append(PutTag(repository, tag, digest, "alice", at))
    await app[CATALOG_STORE].apply([(f"seed-{next(_events)}", operations)])


async def team_namespace(app: web.Application, owner: str, name: str,
                         visibility: Visibility, description: str = "") -> None:
    identity = app[IDENTITY]
    await identity.create_team(ADMIN, f"{name}-team", owner=owner)
    await identity.create_namespace(ADMIN, name, team=f"{name}-team", visibility=visibility,
                                    description=description)
