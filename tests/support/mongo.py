"""A SecantusDB server (PyPI ``secantusdb``, a MongoDB wire-protocol server) for tests.

``SecantusServer`` runs ``python -m secantus --port PORT --storage-path :memory:`` on a free
loopback port and waits until a ``ping`` command is answered. Its log goes to a file so a failed
start can show its tail. SecantusDB advertises itself as the primary of a one-node replica set
named ``secantus``, so PyMongo sessions and multi-document transactions work as on mongod; it
refuses ``$text`` indexes, which Dockyard's stores do not use.
"""

from __future__ import annotations

import importlib.util
import sys
import tempfile
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
from pymongo import MongoClient
from pymongo.errors import PyMongoError

from services.core.config import MongoConfig
from services.core.mongo import MongoDatabase, open_database
from tests.support.peer import PeerProcess
from tests.support.registry import free_port

__all__ = ["SecantusServer", "own_database", "secantus_available"]


def secantus_available() -> bool:
    """True when the ``secantusdb`` wheel (test extra) is installed."""
    return importlib.util.find_spec("secantus") is not None


class SecantusServer(PeerProcess):
    name = "secantus"

    def __init__(
        self, *, standalone: bool = False, storage: str = ":memory:", auth: bool = False
    ) -> None:
        # standalone: answer ``hello`` as a standalone mongod (no replica set), which refuses
        # transactions. auth: demand SCRAM credentials; users are made with ``create_user``
        # before, on a ``storage`` directory that outlives the restart.
        super().__init__(Path(tempfile.mkstemp(prefix="secantus-", suffix=".log")[1]))
        self.standalone = standalone
        self.storage = storage
        self.auth = auth
        self.port = free_port()
        self.uri = f"mongodb://127.0.0.1:{self.port}/"

    def command(self) -> list[str]:
        return [sys.executable, "-m", "secantus", "--host", "127.0.0.1",
                "--port", str(self.port), "--storage-path", self.storage,
                "--log-level", "WARNING", *(["--standalone"] if self.standalone else []),
                *(["--auth"] if self.auth else [])]

    def start(self, timeout: float = 30.0) -> None:
        super().start(timeout)

    def create_user(self, name: str, password: str) -> None:
        with MongoClient(self.uri, serverSelectionTimeoutMS=5_000) as client:
            client.admin.command("createUser", name, pwd=password, roles=["root"])

    def drop_database(self, name: str) -> None:
        with MongoClient(self.uri, serverSelectionTimeoutMS=5_000) as client:
            client.drop_database(name)

    def answers(self) -> bool:
        try:
            with MongoClient(self.uri, serverSelectionTimeoutMS=500,
                             connectTimeoutMS=500) as client:
                client.admin.command("ping")
        except PyMongoError:
            return False
        return True


@asynccontextmanager
async def own_database(
    request: pytest.FixtureRequest, suffix: str = "", *, server: str = "mongo_uri"
) -> AsyncIterator[MongoDatabase]:
    """A database of the test's own on the session's server (the URI fixture ``server``:
    ``mongo_uri`` for SecantusDB, ``mongod_uri`` for a real mongod), opened the way Dockyard
    opens it and dropped at the end; ``suffix`` tells apart several in one test. For async
    fixtures, which cannot request async fixtures lazily."""
    name = (request.getfixturevalue("mongo_database_name") if server == "mongo_uri"
            else f"test_{uuid.uuid4().hex[:12]}")
    settings = MongoConfig(uri=request.getfixturevalue(server), database=name + suffix)
    async with open_database(settings) as database:
        try:
            yield database
        finally:
            await database.client.drop_database(database.name)
