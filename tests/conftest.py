"""Fixtures shared by every test directory; helpers live in tests/support."""

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.containers import docker_engine_problem, mongod_replica_set
from tests.support.mongo import SecantusServer, secantus_available
from tests.support.registry import RegistryProcess, require_registry_tools


@pytest.fixture
def registry(tmp_path: Path) -> Iterator[RegistryProcess]:
    """A fresh registry of its own: no auth, no notifications, storage under tmp_path."""
    require_registry_tools()
    with RegistryProcess(tmp_path / "registry") as process:
        yield process


@pytest.fixture(scope="session")
def secantus() -> Iterator[SecantusServer]:
    """One SecantusDB server (in memory) for the whole session; tests use their own databases."""
    if not secantus_available():
        pytest.skip("secantusdb is not installed: it is the MongoDB peer of the store tests"
                    " (pip install -e '.[test]')")
    with SecantusServer() as server:
        yield server


@pytest.fixture(scope="session")
def mongo_uri(secantus: SecantusServer) -> str:
    return secantus.uri


@pytest.fixture(scope="session")
def mongod_uri() -> Iterator[str]:
    """A real mongod (a one-member replica set) through testcontainers, for the store contract
    suites; skipped with the reason where no Docker engine exists."""
    problem = docker_engine_problem()
    if problem is not None:
        pytest.skip(problem)
    with mongod_replica_set() as uri:
        yield uri


@pytest.fixture
def mongo_database_name(secantus: SecantusServer) -> Iterator[str]:
    """A database of this test's own, dropped afterwards, so tests never see each other's data."""
    name = f"test_{uuid.uuid4().hex[:12]}"
    yield name
    secantus.drop_database(name)
