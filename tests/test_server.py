"""`build_app` with a plan: which routes, consumer groups and jobs a process really starts.

In-process and on the embedded default: each application is started (its stores opened,
its consumers registered) and looked at before any consumer runs.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import httpx
import pytest
from aiohttp import web

from services.auth.access import IDENTITY
from services.auth.policy import Principal
from services.core.config import Config
from services.core.web import CONSUMERS, HEALTH, JOBS
from services.ingest.api import CATALOG_STORE
from services.server import build_app
from tests.support.dockyard import Dockyard, initialised, running_dockyard
from tests.support.registry import free_port

PER_PROCESS = {"/metrics", "/api/v1/health", "/api/v1/health/live"}
ADMIN = Principal("admin", "user", admin=True, credential="password")


@pytest.fixture
def config(tmp_path: Path) -> Config:
    # Nothing listens at the registry URL; nothing here asks it anything.
    return initialised(tmp_path / "data", "http://127.0.0.1:9")


@asynccontextmanager
async def started(config: Config, services: list[str]) -> AsyncIterator[web.Application]:
    app = build_app(config, services)
    # Consumers start in the last cleanup context; stop short of it to look at what they are.
    consumers_ctx = app.cleanup_ctx.pop()
    runner = web.AppRunner(app)
    await runner.setup()
    try:
        yield app
    finally:
        await runner.cleanup()
    assert consumers_ctx.__name__ == "consumers_ctx"


def paths(app: web.Application) -> set[str]:
    return {r.resource.canonical for r in app.router.routes() if r.resource} - PER_PROCESS


def groups(app: web.Application) -> set[tuple[str, str]]:
    return {(c.group, c.topic) for c in app[CONSUMERS]}


def jobs(app: web.Application) -> set[str]:
    return {job.name for job in app[JOBS]}


@pytest.mark.parametrize(("services", "routes", "consumer_groups", "job_names"), [
    (["ingest"], {"/v2/webhooks/events", "/api/v1/tags"}, {"catalog", "activity"}, {"sync"}),
    (["ingest-api"], {"/v2/webhooks/events", "/api/v1/tags"}, set(), set()),
    (["ingest-consumers"], set(), {"catalog", "activity"}, {"sync"}),
    # Auth's own job (expired portal sessions), none of ingest's.
    (["auth"], {"/v2/token", "/api/v1/users"}, set(), {"session-prune"}),
    (["auth-api"], {"/v2/token", "/api/v1/users"}, set(), set()),
])
async def test_each_process_starts_only_its_parts(
    config: Config, services: list[str], routes: set[str], consumer_groups: set[str],
    job_names: set[str],
) -> None:
    async with started(config, services) as app:
        assert routes <= paths(app)
        if not routes:
            assert paths(app) == set()
        assert {group for group, _ in groups(app)} == consumer_groups
        assert jobs(app) == job_names


async def test_a_service_alone_opens_what_it_reads_through_without_their_routes(
    config: Config,
) -> None:
    async with started(config, ["ingest"]) as app:
        # Auth's module is there (callers are authenticated), its routes are not.
        assert not {"/v2/token", "/api/v1/users"} & paths(app)
        assert CATALOG_STORE in app

    async with started(config, ["portal"]) as app:
        assert CATALOG_STORE in app  # the portal reads the catalog through ingest's module
        assert not {"/v2/webhooks/events", "/api/v1/tags", "/v2/token"} & paths(app)
        assert groups(app) == set()
        assert jobs(app) == set()
        assert "/" in paths(app)


async def test_all_in_one_runs_every_route_group_and_job(config: Config) -> None:
    async with started(config, []) as app:
        assert {"/v2/token", "/v2/webhooks/events", "/"} <= paths(app)
        assert {"catalog", "activity"} <= {group for group, _ in groups(app)}
        assert "sync" in jobs(app)


# --- what every process answers about itself (services/operations.py) -------------------------

METRICS_TOKEN = "a-scraper-token-of-32-characters"


class Counted:
    """A readiness check that counts how often it runs."""

    def __init__(self) -> None:
        self.runs = 0

    async def __call__(self) -> None:
        self.runs += 1


@asynccontextmanager
async def serving(config: Config) -> AsyncIterator[tuple[Dockyard, Counted, str]]:
    """Dockyard with a counted check, and an application token of otto, who is no admin."""
    async with running_dockyard(config) as dockyard:
        counted = Counted()
        dockyard.app[HEALTH].add("counted", counted)
        identity = dockyard.app[IDENTITY]
        await identity.create_user(ADMIN, "otto", email="", password="a-good-password")
        _, otto = await identity.create_token(ADMIN, "otto", "tests")
        yield dockyard, counted, otto


async def test_liveness_answers_anyone_and_probes_nothing(config: Config) -> None:
    async with serving(config) as (dockyard, counted, _), httpx.AsyncClient(
            base_url=dockyard.url) as anonymous:
        response = await anonymous.get("/api/v1/health/live")
        assert response.status_code == 200
        assert response.json() == {"status": "ok"}
        assert counted.runs == 0


@pytest.mark.parametrize("path", ["/api/v1/health", "/metrics"])
async def test_readiness_and_metrics_need_an_admin_or_the_metrics_token(
    tmp_path: Path, path: str
) -> None:
    config = await asyncio.to_thread(initialised, tmp_path / "data", "http://127.0.0.1:9",
                                     metrics_token=METRICS_TOKEN)
    async with serving(config) as (dockyard, counted, otto), httpx.AsyncClient(
            base_url=dockyard.url) as anonymous:
        refused = {
            None: 401,
            f"Bearer {otto}": 403,  # a signed-in user who is no admin
            f"Bearer {METRICS_TOKEN[:-1]}x": 401,
            f"Basic {METRICS_TOKEN}": 401,
        }
        for authorization, status in refused.items():
            headers = {"Authorization": authorization} if authorization else {}
            response = await anonymous.get(path, headers=headers)
            assert response.status_code == status, (authorization, response.text)
            assert "error" in response.json()
        assert counted.runs == 0
        # Nothing listens at the registry URL: readiness is 503, and says so.
        allowed = 503 if path == "/api/v1/health" else 200
        as_scraper = await anonymous.get(path, headers={"Authorization": f"Bearer {METRICS_TOKEN}"})
        assert as_scraper.status_code == allowed
        assert (await dockyard.client.get(path)).status_code == allowed  # the admin


async def test_without_a_metrics_token_only_admins_read_metrics(config: Config) -> None:
    async with serving(config) as (dockyard, _, _), httpx.AsyncClient(
            base_url=dockyard.url) as anonymous:
        assert (await anonymous.get("/metrics")).status_code == 401
        assert (await dockyard.client.get("/metrics")).status_code == 200


async def test_readiness_probes_each_dependency_once_per_interval(tmp_path: Path) -> None:
    config = await asyncio.to_thread(initialised, tmp_path / "data", "http://127.0.0.1:9",
                                     metrics_token=METRICS_TOKEN,
                                     metrics_health_cache_seconds="1")
    scraper = {"Authorization": f"Bearer {METRICS_TOKEN}"}
    async with serving(config) as (dockyard, counted, _):
        answers = await asyncio.gather(*(dockyard.client.get("/api/v1/health", headers=scraper)
                                         for _ in range(20)))
        assert {answer.json()["checks"]["counted"]["ok"] for answer in answers} == {True}
        assert counted.runs == 1
        await asyncio.sleep(1.1)
        await dockyard.client.get("/api/v1/health", headers=scraper)
        assert counted.runs == 2  # one more interval, one more round


async def test_the_metrics_listener_serves_probes_and_metrics_to_anyone_and_nothing_else(
    tmp_path: Path,
) -> None:
    listen = f"127.0.0.1:{free_port()}"
    config = await asyncio.to_thread(initialised, tmp_path / "data", "http://127.0.0.1:9",
                                     metrics_listen=listen)
    async with serving(config) as (dockyard, _, _), httpx.AsyncClient() as anyone:
        listener = f"http://{listen}"
        assert (await anyone.get(f"{listener}/api/v1/health/live")).json() == {"status": "ok"}
        ready = await anyone.get(f"{listener}/api/v1/health")
        assert ready.status_code == 503
        assert ready.json()["checks"]["registry"]["ok"] is False
        assert ready.json()["checks"]["counted"] == {"ok": True}
        metrics = await anyone.get(f"{listener}/metrics")
        assert metrics.status_code == 200
        assert "dockyard_webhook_events_appended_total" in metrics.text
        for path in ("/api/v1/tags", "/v2/token", "/"):
            assert (await anyone.get(f"{listener}{path}")).status_code == 404, path
        # The main listener still asks for credentials.
        assert (await anyone.get(f"{dockyard.url}/metrics")).status_code == 401
