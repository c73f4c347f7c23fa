"""Where the services' stores live: ``[store] backend`` (``DOCKYARD_STORE``).

Each service has a factory per store that hands ``open_backend_store`` the two ways to make
it: on a SQLite file in the data directory, or on the database this module opens. PyMongo is
an optional extra (``dockyard[mongodb]``), so the MongoDB adapter is imported only when chosen.

One client per process: every ``AsyncMongoClient`` has its own connection pool and monitor
tasks, and an all-in-one process has a dozen stores. A running application opens the database
once (``shared_mongo_database``, from services.core.web.shared_resources_ctx) and lends it to
every ``mongo_database(config)`` made with the configuration object it runs on. The loan goes
by that object because the factories take nothing else: ``serve`` and the CLI call the same
ones, and the CLI's commands, which load a configuration of their own, open (and close) a
client of their own.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol, TypeVar

from services.core.config import Config, ConfigError

if TYPE_CHECKING:
    from services.core.mongo import MongoDatabase

__all__ = ["mongo_database", "open_backend_store", "shared_mongo_database"]


class _Store(Protocol):
    async def open(self) -> None: ...

    async def close(self) -> None: ...


SqliteT = TypeVar("SqliteT", bound=_Store)
MongoT = TypeVar("MongoT", bound=_Store)


@asynccontextmanager
async def open_backend_store(
    config: Config,
    sqlite: Callable[[], SqliteT],
    mongodb: Callable[[MongoDatabase], MongoT],
) -> AsyncIterator[SqliteT | MongoT]:
    """The store ``[store] backend`` (DOCKYARD_STORE) chooses, open until the exit.

    ``sqlite`` makes it on its file; ``mongodb`` makes it on the database (and imports its
    adapter there: PyMongo is an optional extra).
    """
    async with AsyncExitStack() as stack:
        store: SqliteT | MongoT
        if config.store.backend == "mongodb":
            store = mongodb(await stack.enter_async_context(mongo_database(config)))
        else:
            store = sqlite()
        await store.open()
        stack.push_async_callback(store.close)
        yield store


@dataclass
class _Loan:
    # Held so that neither id is reused while the loan stands.
    config: Config
    loop: asyncio.AbstractEventLoop
    database: MongoDatabase
    client: AsyncExitStack
    holders: int = 0


_LOANS: dict[tuple[int, int], _Loan] = {}


@asynccontextmanager
async def mongo_database(config: Config) -> AsyncIterator[MongoDatabase]:
    """``[mongodb] database`` on a client that has answered; raises ConfigError otherwise.

    The running application's database when ``config`` is the one it runs on (not closed on
    exit: the application closes it), else one on a client of its own, closed on exit.
    """
    loan = _LOANS.get(_key(config))
    if loan is not None:
        yield loan.database
        return
    async with _open(config) as database:
        yield database


@asynccontextmanager
async def shared_mongo_database(config: Config) -> AsyncIterator[MongoDatabase]:
    """Opens the database and lends it to ``mongo_database(config)`` until the exit.

    Applications started one after another on the same configuration object (tests do this)
    share the client, which is closed when the last of them exits.
    """
    key = _key(config)
    loan = _LOANS.get(key)
    if loan is None:
        client = AsyncExitStack()
        database = await client.enter_async_context(_open(config))
        loan = _LOANS[key] = _Loan(config, asyncio.get_running_loop(), database, client)
    loan.holders += 1
    try:
        yield loan.database
    finally:
        loan.holders -= 1
        if loan.holders == 0:
            del _LOANS[key]
            await loan.client.aclose()


def _key(config: Config) -> tuple[int, int]:
    # A client belongs to the event loop it was opened on.
    return id(config), id(asyncio.get_running_loop())


@asynccontextmanager
async def _open(config: Config) -> AsyncIterator[MongoDatabase]:
    try:
        from services.core.mongo import open_database  # noqa: PLC0415 - optional extra
    except ImportError:
        raise ConfigError("store.backend (DOCKYARD_STORE) is mongodb, but pymongo is not"
                          " installed: pip install 'dockyard[mongodb]'") from None
    async with open_database(config.mongodb) as database:
        yield database
