"""`build_app` with a plan: which routes, consumer groups and jobs a process really starts.

In-process and on the embedded default: each application is started (its stores opened,
its consumers registered) and looked at before any consumer runs.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
from aiohttp import web

from services.core.config import Config
from services.core.web import CONSUMERS, JOBS
from services.ingest.api import CATALOG_STORE
from services.server import build_app
from tests.support.dockyard import initialised

PER_PROCESS = {"/metrics", "/api/v1/health"}


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
