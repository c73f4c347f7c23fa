"""The production engines through testcontainers, where a Docker engine exists.

``apache_kafka()`` runs one Kafka broker in KRaft mode (Confluent's cp-kafka image, Apache Kafka
inside) and ``mongod_replica_set()`` one mongod as a one-member replica set (Dockyard's stores use
transactions, which a standalone mongod refuses). ``docker_engine_problem()`` says why they cannot
run here, for a skip that gives its reason; the images are pulled on first use.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Iterator
from pathlib import Path

__all__ = ["KAFKA_IMAGE", "MONGO_IMAGE", "apache_kafka", "docker_engine_problem",
           "mongod_replica_set"]

KAFKA_IMAGE = "confluentinc/cp-kafka:7.6.0"
MONGO_IMAGE = "mongo:7.0"


def docker_engine_problem() -> str | None:
    """None when a Docker engine answers; otherwise what is missing."""
    if not os.environ.get("DOCKER_HOST") and not Path("/var/run/docker.sock").exists():
        return ("no Docker engine (DOCKER_HOST is unset and /var/run/docker.sock does not exist):"
                " the testcontainers variants need one to run Apache Kafka and mongod")
    try:
        import docker  # noqa: PLC0415 - only where an engine may exist

        with contextlib.closing(docker.from_env()) as client:
            client.ping()
    except Exception as exc:  # noqa: BLE001 - any failure means: no usable engine
        return f"the Docker engine does not answer ({exc!r}): the testcontainers variants need it"
    return None


@contextlib.contextmanager
def apache_kafka() -> Iterator[str]:
    """A KRaft broker; yields its bootstrap address."""
    from testcontainers.community.kafka import KafkaContainer  # noqa: PLC0415

    with KafkaContainer(KAFKA_IMAGE).with_kraft() as kafka:
        yield kafka.get_bootstrap_server()


@contextlib.contextmanager
def mongod_replica_set() -> Iterator[str]:
    """mongod as replica set ``rs0`` of one member; yields a URI that connects to it directly."""
    from testcontainers.core.container import DockerContainer  # noqa: PLC0415
    from testcontainers.core.wait_strategies import LogMessageWaitStrategy  # noqa: PLC0415

    container = (
        DockerContainer(MONGO_IMAGE)
        .with_command("--replSet rs0 --bind_ip_all")
        .with_exposed_ports(27017)
        .waiting_for(LogMessageWaitStrategy("Waiting for connections"))
    )
    with container:
        initiated = container.exec(
            ["mongosh", "--quiet", "--eval",
             "rs.initiate({_id: 'rs0', members: [{_id: 0, host: '127.0.0.1:27017'}]}).ok"])
        if initiated.exit_code != 0:
            raise RuntimeError(f"rs.initiate failed: {initiated.output!r}")
        host = container.get_container_host_ip()
        port = container.get_exposed_port(27017)
        # directConnection: the member's own name (127.0.0.1 inside the container) is not
        # where the tests reach it.
        uri = f"mongodb://{host}:{port}/?directConnection=true"
        _wait_for_primary(uri)
        yield uri


def _wait_for_primary(uri: str, timeout: float = 60.0) -> None:
    from pymongo import MongoClient  # noqa: PLC0415

    deadline = time.monotonic() + timeout
    with MongoClient(uri, serverSelectionTimeoutMS=5_000) as client:
        while not client.admin.command("hello").get("isWritablePrimary"):
            if time.monotonic() > deadline:
                raise RuntimeError(f"mongod at {uri} did not become primary in {timeout}s")
            time.sleep(0.2)
