"""`dockyard serve --service …`: one process per service, side by side.

Real processes, on the embedded default (SQLite files shared through the data directory) and on
Kafka + MongoDB (tests/scaleout/conftest.py): the registry gets its tokens from the auth process
and sends its notifications to the ingest process, whose catalog consumer reads manifests with
service tokens it signs itself.
"""

from __future__ import annotations

import asyncio
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from services.core.config import Config
from tests.scaleout.conftest import SCALEOUT_PEERS, add_admin, peers
from tests.support.dockyard import ADMIN_PASSWORD, admin_auth, initialised
from tests.support.images import build_oci_image
from tests.support.registry import (
    RegistryProcess,
    free_port,
    require_registry_tools,
    skopeo_copy,
    skopeo_delete,
)
from tests.support.serve import DOCKYARD, ServeProcess
from tests.support.waiting import eventually

pytestmark = pytest.mark.slow

V1 = "application/vnd.docker.distribution.events.v1+json"
ADMIN = f"admin:{ADMIN_PASSWORD}"
SETTLE = 60.0  # consumer groups joining on a Kafka broker take seconds


@pytest.fixture
def processes() -> Iterator[list[ServeProcess]]:
    started: list[ServeProcess] = []
    yield started
    for process in started:
        process.stop()


async def start(processes: list[ServeProcess], process: ServeProcess) -> ServeProcess:
    # One after the other: each opens (and on first use creates) the SQLite files it needs.
    processes.append(process)
    process.start()
    await process.ready()
    return process


def serve(config: Config, tmp_path: Path, *services: str,
          env: dict[str, str] | None = None) -> ServeProcess:
    name = "+".join(services)
    return ServeProcess(config.server.data_dir / "dockyard.toml", tmp_path / f"{name}.log",
                        services=services, env=env)


def test_an_unknown_service_is_refused_with_the_valid_names(tmp_path: Path) -> None:
    result = subprocess.run(
        [str(DOCKYARD), "serve", "--config", str(tmp_path / "none.toml"), "--service",
         "auth,catalogue"], capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 2
    assert "unknown service 'catalogue'" in result.stderr
    assert "valid: auth, auth-api, auth-consumers, ingest, ingest-api, ingest-consumers" in (
        result.stderr)


@pytest.fixture(params=["embedded", *SCALEOUT_PEERS])
def backend(request: pytest.FixtureRequest) -> Iterator[dict[str, str]]:
    """DOCKYARD_* variables choosing the backends: none (SQLite files), or Kafka + MongoDB."""
    if request.param == "embedded":
        yield {}
        return
    with peers(request, request.param) as found:
        yield found.env


@pytest.mark.registry
async def test_a_real_push_through_auth_and_ingest_processes(
    tmp_path: Path, processes: list[ServeProcess], backend: dict[str, str]
) -> None:
    """The whole pipeline with one process per service, on the embedded default and on
    DOCKYARD_BUS=kafka DOCKYARD_STORE=mongodb: skopeo push, retag, move, delete → catalog and
    activity through the API."""
    require_registry_tools()
    config = await asyncio.to_thread(initialised, tmp_path / "data",
                                     f"http://127.0.0.1:{free_port()}")
    config_path = config.server.data_dir / "dockyard.toml"
    if backend:
        await asyncio.to_thread(add_admin, config_path, backend)
    # The admin pushes straight into team/…: the push creates the namespace, which the auth
    # process alone can do (it reads the catalog through ingest's module).
    auth = await start(processes, serve(config, tmp_path, "auth", env={
        **backend, "DOCKYARD_AUTH_CREATE_NAMESPACE_ON_PUSH": "true"}))
    ingest = await start(processes, serve(config, tmp_path, "ingest", env=backend))
    # As behind a proxy that routes /v2/token to auth and the webhook to ingest.
    registry_file = config.path(Path("registry.yml"))
    registry_config = yaml.safe_load(registry_file.read_text())
    registry_config["auth"]["token"]["realm"] = f"{auth.url}/v2/token"
    registry_config["notifications"]["endpoints"][0]["url"] = f"{ingest.url}/v2/webhooks/events"
    registry_file.write_text(yaml.safe_dump(registry_config))
    layout = tmp_path / "layout"
    first = build_oci_image(layout, "one", [{"etc/os-release": b"ID=debian\n"}], salt="one")
    second = build_oci_image(layout, "two", [{"etc/os-release": b"ID=alpine\n"}], salt="two")
    logs = lambda: f"{auth.log_tail()}\n{ingest.log_tail()}"  # noqa: E731

    async with httpx.AsyncClient(headers={"Authorization": admin_auth()}, timeout=30) as admin:
        async def tags() -> dict[str, dict[str, Any]]:
            response = await admin.get(f"{ingest.url}/api/v1/tags",
                                       params={"repository": "team/app"})
            return ({t["name"]: t for t in response.json()["items"]}
                    if response.status_code == 200 else {})

        with RegistryProcess(config.server.data_dir, config_file=registry_file) as registry:
            def copy(source: str, ref: str) -> str:
                return skopeo_copy(source, f"docker://{registry.host}/{ref}", creds=ADMIN)

            assert await asyncio.to_thread(copy, f"oci:{layout}:one", "team/app:1.0") == first
            # The catalog consumer of the ingest process read the manifest from the registry
            # with a token its own auth module signed: size and media type come from it.
            pushed = await eventually(tags, lambda t: "1.0" in t, timeout=SETTLE,
                                      what=f"team/app:1.0 in ingest\n{logs()}")
            assert (pushed["1.0"]["digest"], pushed["1.0"]["kind"]) == (first, "image")
            assert pushed["1.0"]["size"] > 0
            await asyncio.to_thread(copy, f"docker://{registry.host}/team/app:1.0",
                                    "team/app:stable")
            await asyncio.to_thread(copy, f"oci:{layout}:two", "team/app:1.0")
            moved = await eventually(tags, lambda t: "stable" in t and t["1.0"]["digest"] == second,
                                     timeout=SETTLE, what=f"retag and move\n{logs()}")
            assert moved["stable"]["digest"] == first
            await asyncio.to_thread(skopeo_delete, f"docker://{registry.host}/team/app:stable",
                                    creds=ADMIN)
            remaining = await eventually(tags, lambda t: "stable" not in t, timeout=SETTLE,
                                         what=f"the delete\n{logs()}")
            assert set(remaining) == {"1.0"}

        async def story() -> list[tuple[str, str | None, str | None]]:
            response = await admin.get(f"{ingest.url}/api/v1/activities",
                                       params={"repository": "team/app"})
            return [(a["type"], a["tag"], a["digest"]) for a in reversed(response.json()["items"])]

        assert await eventually(story, lambda s: len(s) >= 5, timeout=SETTLE) == [
            ("tag.pushed", "1.0", first),
            ("tag.pushed", "stable", first),
            ("tag.pushed", "1.0", second),
            ("manifest.deleted", None, first),
            ("tag.deleted", "stable", None),
        ]

        # Each process serves only its own routes.
        token = await admin.get(f"{auth.url}/v2/token", params={"service": config.auth.service})
        assert token.status_code == 200
        assert (await admin.get(f"{ingest.url}/v2/token")).status_code == 404
        assert (await admin.get(f"{auth.url}/api/v1/tags",
                                params={"repository": "team/app"})).status_code == 404
        assert (await admin.post(f"{auth.url}/v2/webhooks/events", json={"events": []},
                                 headers={"Content-Type": V1})).status_code == 404

        # An identity change made through the auth process becomes activity in ingest.
        created = await admin.post(f"{auth.url}/api/v1/teams", json={"name": "web"})
        assert created.status_code == 201, created.text
        await eventually(
            lambda: admin.get(f"{ingest.url}/api/v1/activities", params={"type": "team.create"}),
            lambda r: [a["subject"] for a in r.json()["items"]] == ["web"], timeout=SETTLE,
            what=f"team.create activity in the ingest process\n{logs()}")

    # Ingest checks callers through auth's module: wrong passwords and anonymous callers are
    # treated as the auth process would treat them.
    async with httpx.AsyncClient(timeout=10) as anonymous:
        hidden = await anonymous.get(f"{ingest.url}/api/v1/tags",
                                     params={"repository": "team/app"})
        assert hidden.status_code == 404
        wrong = await anonymous.get(f"{ingest.url}/api/v1/repositories",
                                    auth=("admin", "not-the-password"))
        assert wrong.status_code == 401
    for process in (auth, ingest):
        assert process.stop() == 0, process.log_tail()


async def test_ingest_routes_and_consumers_in_separate_processes(
    tmp_path: Path, processes: list[ServeProcess]
) -> None:
    # Nothing listens at the registry URL: tag deletes never ask the registry anything.
    config = await asyncio.to_thread(initialised, tmp_path / "data", "http://127.0.0.1:9")
    api = await start(processes, serve(config, tmp_path, "ingest-api"))
    workers = await start(processes, serve(config, tmp_path, "ingest-consumers"))
    events = [{
        "id": f"split-{n}", "timestamp": f"2026-01-02T03:04:0{n}Z", "action": "delete",
        "target": {"repository": "team/app", "tag": f"t{n}"},
    } for n in range(5)]
    headers = {"Authorization": f"Bearer {config.webhook.secret}", "Content-Type": V1}

    async with httpx.AsyncClient(headers={"Authorization": admin_auth()}, timeout=10) as admin:
        refused = await admin.post(f"{workers.url}/v2/webhooks/events", json={"events": events},
                                   headers=headers)
        assert refused.status_code == 404
        accepted = await admin.post(f"{api.url}/v2/webhooks/events", json={"events": events},
                                    headers=headers)
        assert accepted.json() == {"accepted": 5}

        feed = await eventually(
            lambda: admin.get(f"{api.url}/api/v1/activities", params={"type": "tag.deleted"}),
            lambda r: len(r.json()["items"]) == 5,
            what=f"5 activities applied by the consumer process\n{workers.log_tail()}")
        assert {a["id"] for a in feed.json()["items"]} == {e["id"] for e in events}
        assert (await admin.get(f"{workers.url}/api/v1/activities")).status_code == 404

        # Consumer groups run (and report their lag) only where the consumers are.
        lag = re.compile(r'^dockyard_consumer_lag\{group="(\w+)",topic="registry-events"\} (\S+)$',
                         re.MULTILINE)
        # Each group reports its lag once it has polled; the catalog group may be a poll behind.
        worker_lag = await eventually(
            lambda: admin.get(f"{workers.url}/metrics"),
            lambda r: dict(lag.findall(r.text)).get("activity") == "0.0"
            and set(dict(lag.findall(r.text))) == {"catalog", "activity"},
            what=f"both groups reporting lag\n{workers.log_tail()}")
        assert set(dict(lag.findall(worker_lag.text))) == {"catalog", "activity"}
        assert lag.findall((await admin.get(f"{api.url}/metrics")).text) == []
    for process in (api, workers):
        assert process.stop() == 0, process.log_tail()


async def test_processes_started_together_on_a_fresh_data_directory_all_come_up(
    tmp_path: Path, processes: list[ServeProcess]
) -> None:
    # Each opens (and, being first, creates) events.db, and two of them catalog.db and
    # activity.db, at the same moment: every schema migration must still run exactly once.
    config = await asyncio.to_thread(initialised, tmp_path / "data", "http://127.0.0.1:9")
    group = [serve(config, tmp_path, name)
             for name in ("auth", "ingest-api", "ingest-consumers", "search")]
    processes.extend(group)
    for process in group:
        process.start()
    await asyncio.gather(*(process.ready() for process in group))
    for process in group:
        assert process.stop() == 0, process.log_tail()
