"""One MongoDB client per process: a running application lends its database to every store
(services.core.stores); the CLI's openers, on a configuration of their own, keep their own.

Clients are counted by PyMongo's topology events (one topology per client, opened when the
client is made, closed when it is): a real count on a real server (SecantusDB), nothing patched.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
from bson import ObjectId
from pymongo import monitoring

from services.auth.app import open_auth_store
from services.auth.models import User
from services.core.config import Config, ConfigError, load_config
from services.core.stores import mongo_database, shared_mongo_database
from services.ingest.app import open_stores
from tests.support.dockyard import initialised, running_dockyard


class Topologies(monitoring.TopologyListener):
    """The topologies (clients) opened and closed while recording."""

    def __init__(self) -> None:
        self.recording = False
        self.started: set[ObjectId] = set()
        self.ended: set[ObjectId] = set()

    def opened(self, event: monitoring.TopologyOpenedEvent) -> None:
        if self.recording:
            self.started.add(event.topology_id)

    def description_changed(self, event: monitoring.TopologyDescriptionChangedEvent) -> None:
        """Not counted."""

    def closed(self, event: monitoring.TopologyClosedEvent) -> None:
        if self.recording:
            self.ended.add(event.topology_id)

    @contextmanager
    def count(self) -> Iterator[Topologies]:
        self.started, self.ended, self.recording = set(), set(), True
        try:
            yield self
        finally:
            self.recording = False


# PyMongo has no unregister: one listener, registered once, records only inside count().
_TOPOLOGIES = Topologies()
monitoring.register(_TOPOLOGIES)


@pytest.fixture
def settings(tmp_path: Path, mongo_uri: str, mongo_database_name: str) -> Config:
    return initialised(tmp_path / "data", "http://127.0.0.1:9", store_backend="mongodb",
                       mongodb_uri=mongo_uri, mongodb_database=mongo_database_name,
                       metrics_token=METRICS_TOKEN)


# Readiness needs an admin or the metrics token, and `init` writes its admin to SQLite only.
METRICS_TOKEN = "readiness-probe-token"


def readiness(request: httpx.Request) -> httpx.Request:
    """httpx auth: the metrics token in place of the client's admin credentials."""
    request.headers["Authorization"] = f"Bearer {METRICS_TOKEN}"
    return request


async def test_a_running_application_opens_one_client_for_all_its_stores(
    settings: Config,
) -> None:
    with _TOPOLOGIES.count() as clients:
        async with running_dockyard(settings) as dockyard:
            health = (await dockyard.client.get("/api/v1/health", auth=readiness)).json()
            stores = {name: check["ok"] for name, check in health["checks"].items()
                      if name.endswith("-store")}
            # Every service's stores are open, and all of them answer on the one client.
            assert {"auth-store", "catalog-store", "activity-store", "session-store"} <= \
                set(stores)
            assert all(stores.values()), health
            # A store opened on the application's configuration borrows the client too, and
            # leaves it open for the application.
            async with open_auth_store(settings) as auth:
                await auth.create_user(User("zoe", "zoe@x", admin=False, enabled=True), None)
            again = (await dockyard.client.get("/api/v1/health", auth=readiness)).json()
            assert all(again["checks"][name]["ok"] for name in stores), again
    # Closing a client publishes what its topology had queued, so the count is complete here.
    assert len(clients.started) == 1
    assert clients.ended == clients.started


async def test_the_cli_openers_on_their_own_configuration_open_their_own_clients(
    settings: Config,
) -> None:
    with _TOPOLOGIES.count() as clients:
        async with shared_mongo_database(settings):
            # What `dockyard export` does: a configuration loaded anew, not the lent one.
            own = load_config(settings.server.data_dir / "dockyard.toml", env={
                "DOCKYARD_STORE": "mongodb",
                "DOCKYARD_MONGODB_URI": settings.mongodb.uri.get_secret_value(),
                "DOCKYARD_MONGODB_DATABASE": settings.mongodb.database})
            async with open_auth_store(own) as auth, open_stores(own) as (catalog, _):
                await auth.ping()
                await catalog.ping()
    assert len(clients.started) == 3  # the lent one, the auth store's, the ingest stores'
    assert clients.ended == clients.started


async def test_applications_overlapping_on_one_configuration_share_the_client(
    settings: Config,
) -> None:
    with _TOPOLOGIES.count() as clients:
        async with shared_mongo_database(settings) as first:
            async with shared_mongo_database(settings) as second:
                assert second is first
            # The second one's exit leaves the client open for the first.
            async with mongo_database(settings) as borrowed:
                assert borrowed is first
                await borrowed.command("ping")
        # Once both are gone the configuration opens a client of its own again.
        async with mongo_database(settings) as database:
            assert database is not first
            await database.command("ping")
    assert len(clients.started) == 2
    assert clients.ended == clients.started


async def test_a_failed_start_names_the_setting_and_lends_nothing(tmp_path: Path) -> None:
    settings = await asyncio.to_thread(
        initialised, tmp_path / "data", "http://127.0.0.1:9", store_backend="mongodb",
        mongodb_uri="mongodb://127.0.0.1:9/", mongodb_timeout_seconds="0.2")
    for _ in range(2):  # the second try meets no half-made loan
        with pytest.raises(ConfigError, match=r"^mongodb\.uri .*: no MongoDB server answered"):
            async with shared_mongo_database(settings):
                pytest.fail("lent a database on a closed port")
