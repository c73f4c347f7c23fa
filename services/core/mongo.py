"""MongoDB for the stores at scale, through PyMongo's async API (``pymongo.AsyncMongoClient``).

``open_database`` connects from ``[mongodb]`` and checks the server answers before anything
starts, so a wrong URI or an unreachable server stops ``serve`` with the setting to fix instead
of failing later inside a consumer. The URI may carry a password: it is shown redacted in every
message, and text from the driver is scrubbed of it too.

``in_transaction`` runs a unit of work in one multi-document transaction. MongoDB allows these
on replica sets and sharded clusters only (a standalone mongod refuses them): production runs a
replica set, and SecantusDB, the tests' server, presents itself as a one-node replica set.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any, TypeVar

from pymongo import AsyncMongoClient
from pymongo.asynchronous.client_session import AsyncClientSession
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import ConfigurationError, OperationFailure, PyMongoError

from services.core.config import ConfigError, MongoConfig

__all__ = [
    "Document",
    "DumpedCollection",
    "MongoDatabase",
    "document_of",
    "in_transaction",
    "open_database",
    "record_of",
    "redact",
]

Document = dict[str, Any]
MongoDatabase = AsyncDatabase[Document]
T = TypeVar("T")

_SETTING = "mongodb.uri (DOCKYARD_MONGODB_URI)"
# "Authentication failed" (mongod's error code 18).
_AUTHENTICATION_FAILED = 18
_USERINFO = re.compile(
    r"^(?P<scheme>[a-z+]+://)(?P<user>[^:@/]*):(?P<password>[^@/]*)@", re.IGNORECASE
)


def redact(uri: str) -> str:
    """The URI with the password of its user information replaced by ``***``."""
    return _USERINFO.sub(lambda m: f"{m['scheme']}{m['user']}:***@", uri)


def _scrub(text: str, uri: str) -> str:
    """Driver messages may quote the URI or its password; neither may reach a log."""
    match = _USERINFO.match(uri)
    text = text.replace(uri, redact(uri))
    if match and match["password"]:
        text = text.replace(match["password"], "***")
    return text


@asynccontextmanager
async def open_database(settings: MongoConfig) -> AsyncIterator[MongoDatabase]:
    """The configured database on a client that has answered a ping; closed on exit."""
    uri = settings.uri.get_secret_value()
    try:
        client: AsyncMongoClient[Document] = AsyncMongoClient(
            uri,
            serverSelectionTimeoutMS=int(settings.timeout_seconds * 1000),
            connectTimeoutMS=int(settings.timeout_seconds * 1000),
            appname="dockyard",
        )
    except (ConfigurationError, ValueError, TypeError) as exc:
        raise ConfigError(f"{_SETTING}: not a usable MongoDB URI ({_scrub(str(exc), uri)});"
                          " expected mongodb://[user:password@]host[:port][/?options]") from None
    try:
        try:
            await client.admin.command("ping")
        except OperationFailure as exc:
            if exc.code == _AUTHENTICATION_FAILED:
                raise ConfigError(f"{_SETTING}: MongoDB at {redact(uri)} refused the user and"
                                  " password in the URI") from None
            raise ConfigError(f"{_SETTING}: MongoDB at {redact(uri)} refused the connection"
                              f" ({_scrub(str(exc), uri)})") from None
        except PyMongoError as exc:
            raise ConfigError(
                f"{_SETTING}: no MongoDB server answered at {redact(uri)} within"
                f" {settings.timeout_seconds:g} s (mongodb.timeout_seconds):"
                f" {_scrub(str(exc).split(', Timeout:')[0], uri)}"
            ) from None
        hello = await client.admin.command("hello")
        if "setName" not in hello and hello.get("msg") != "isdbgrid":
            raise ConfigError(
                f"{_SETTING}: {redact(uri)} is a standalone mongod, which refuses transactions;"
                " Dockyard's stores need a replica set (one node is enough: start mongod with"
                " --replSet NAME and run rs.initiate() once) or a sharded cluster"
            )
        yield client[settings.database]
    finally:
        await client.close()


async def in_transaction(
    database: MongoDatabase, work: Callable[[AsyncClientSession], Awaitable[T]]
) -> T:
    """Run ``work`` in one transaction; retried whole on transient errors (write conflicts).

    ``work`` must pass the session to every operation and may run more than once.
    """
    async with database.client.start_session() as session:
        return await session.with_transaction(work)


@dataclass(frozen=True, slots=True)
class DumpedCollection:
    """How a collection's documents become dumped records (services.core.dump) and back.

    ``key`` is the record field kept in ``_id`` (None: ``_id`` is an ObjectId the dump leaves
    out); ``blobs`` travel as hex.
    """

    name: str
    key: str | None
    fields: tuple[str, ...]
    blobs: frozenset[str] = frozenset()


def record_of(collection: DumpedCollection, doc: Document) -> dict[str, Any]:
    record: dict[str, Any] = {field: doc.get(field) for field in collection.fields}
    if collection.key is not None:
        record[collection.key] = doc["_id"]
    for field in collection.blobs:
        record[field] = bytes(record[field]).hex()
    return record


def document_of(collection: DumpedCollection, record: dict[str, Any]) -> Document:
    doc = {field: bytes.fromhex(value) if field in collection.blobs else value
           for field, value in record.items()}
    if collection.key is not None:
        doc["_id"] = doc.pop(collection.key)
    return doc
