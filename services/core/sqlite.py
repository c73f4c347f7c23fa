"""SQLite for asyncio: one writer thread, one reader thread, whole units of work per hop.

Each store hands ``write``/``read`` a plain function over a ``sqlite3.Connection``; the function
runs in that connection's own thread, so the event loop never blocks on disk and a unit of work
(several statements and the commit) costs one thread hop. ``write`` wraps the function in
``BEGIN IMMEDIATE … COMMIT`` and rolls back if it raises, so nothing half-written remains.
WAL mode lets the reader see committed data while the writer works.
"""

from __future__ import annotations

import asyncio
import json
import logging
import sqlite3
from collections.abc import AsyncIterator, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Literal, TypeVar

__all__ = ["Database", "SqliteStore", "Table", "insert_record", "row_record", "transaction"]

log = logging.getLogger("dockyard.sqlite")

T = TypeVar("T")
Synchronous = Literal["FULL", "NORMAL", "OFF"]


class Database:
    """A SQLite file with its schema migrations applied at open.

    ``migrations`` is an ordered list of SQL scripts; ``PRAGMA user_version`` records how many
    have run, so adding a script to the end upgrades existing files.
    """

    def __init__(
        self,
        path: Path,
        migrations: Sequence[str],
        *,
        synchronous: Synchronous = "NORMAL",
    ) -> None:
        self.path = path
        self._migrations = migrations
        self._synchronous = synchronous
        self._writer_pool = ThreadPoolExecutor(1, thread_name_prefix=f"sqlite-w-{path.name}")
        self._reader_pool = ThreadPoolExecutor(1, thread_name_prefix=f"sqlite-r-{path.name}")
        self._writer: sqlite3.Connection | None = None
        self._reader: sqlite3.Connection | None = None

    async def open(self) -> None:
        loop = asyncio.get_running_loop()
        self._writer = await loop.run_in_executor(self._writer_pool, self._connect_writer)
        self._reader = await loop.run_in_executor(self._reader_pool, self._connect)

    async def close(self) -> None:
        loop = asyncio.get_running_loop()
        for pool, conn in ((self._writer_pool, self._writer), (self._reader_pool, self._reader)):
            if conn is not None:
                await loop.run_in_executor(pool, conn.close)
            pool.shutdown(wait=True)
        self._writer = self._reader = None

    async def write(self, work: Callable[[sqlite3.Connection], T]) -> T:
        """Run ``work`` in one immediate transaction on the writer connection."""
        conn = self._writer
        if conn is None:
            raise RuntimeError(f"{self.path} is not open")
        return await asyncio.get_running_loop().run_in_executor(
            self._writer_pool, transaction, conn, work
        )

    async def on_writer(self, work: Callable[[sqlite3.Connection], T]) -> T:
        """Run ``work`` in the writer thread on the writer connection, outside any transaction:
        for work that commits several transactions in a row (each through ``transaction``)
        without a trip back to the event loop in between."""
        conn = self._writer
        if conn is None:
            raise RuntimeError(f"{self.path} is not open")
        return await asyncio.get_running_loop().run_in_executor(self._writer_pool, work, conn)

    async def read(self, work: Callable[[sqlite3.Connection], T]) -> T:
        """Run ``work`` on the reader connection (sees every committed write)."""
        conn = self._reader
        if conn is None:
            raise RuntimeError(f"{self.path} is not open")
        return await asyncio.get_running_loop().run_in_executor(self._reader_pool, work, conn)

    async def ping(self) -> None:
        """Raise if the file cannot be read."""
        await self.read(lambda conn: conn.execute("SELECT 1").fetchone())

    async def scan(
        self, table: str, columns: str, batch: int = 1000
    ) -> AsyncIterator[list[sqlite3.Row]]:
        """Every row of ``table`` in rowid order, one read per batch (exports of large tables
        without holding the reader for long)."""
        sql = (f"SELECT rowid AS rowid_, {columns} FROM {table} WHERE rowid > ?"
               " ORDER BY rowid LIMIT ?")
        last = 0

        def page(conn: sqlite3.Connection) -> list[sqlite3.Row]:
            return conn.execute(sql, (last, batch)).fetchall()

        while rows := await self.read(page):
            yield rows
            last = rows[-1]["rowid_"]

    def _connect(self) -> sqlite3.Connection:
        # Autocommit mode (isolation_level=None): transactions are explicit in _in_transaction.
        conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        conn.row_factory = sqlite3.Row
        conn.execute("PRAGMA busy_timeout = 10000")
        conn.execute("PRAGMA foreign_keys = ON")
        conn.execute(f"PRAGMA synchronous = {self._synchronous}")
        return conn

    def _connect_writer(self) -> sqlite3.Connection:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # Owner-only: stores hold password hashes, token hashes and who did what.
        self.path.touch(mode=0o600, exist_ok=True)
        conn = self._connect()
        conn.execute("PRAGMA journal_mode = WAL")
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        # Upgrading a file that holds data can take a while (some migrations copy a table):
        # say so. Creating a fresh one is not news.
        level = logging.INFO if version else logging.DEBUG
        while version < len(self._migrations):
            log.log(level, "migrating schema",
                    extra={"path": str(self.path), "to_version": version + 1})
            try:
                conn.executescript(f"BEGIN IMMEDIATE;\n{self._migrations[version]}\n"
                                   f"PRAGMA user_version = {version + 1};\nCOMMIT;")
            except sqlite3.Error:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                # Processes started side by side (dockyard serve --service …) open the same
                # file at once: when another one ran this migration first, go on from there.
                if conn.execute("PRAGMA user_version").fetchone()[0] <= version:
                    raise
            version = conn.execute("PRAGMA user_version").fetchone()[0]
        return conn


class SqliteStore:
    """A store on one SQLite file: subclasses name their ``migrations`` and use ``self.db``."""

    migrations: ClassVar[Sequence[str]]

    def __init__(self, path: Path, *, synchronous: Synchronous = "NORMAL") -> None:
        self.db = Database(path, self.migrations, synchronous=synchronous)

    async def open(self) -> None:
        await self.db.open()

    async def close(self) -> None:
        await self.db.close()

    async def ping(self) -> None:
        await self.db.ping()


@dataclass(frozen=True, slots=True)
class Table:
    """How a table's rows become dumped records (services.core.dump) and back: BLOBs travel as
    hex, JSON text as JSON, 0/1 flags as booleans."""

    name: str
    columns: tuple[str, ...]
    booleans: frozenset[str] = frozenset()
    json: frozenset[str] = frozenset()
    blobs: frozenset[str] = frozenset()
    upsert: str = ""  # an ON CONFLICT clause, for rows the schema creates itself


def row_record(table: Table, row: sqlite3.Row) -> dict[str, Any]:
    record: dict[str, Any] = {}
    for column in table.columns:
        value = row[column]
        if isinstance(value, bytes):
            value = value.hex()
        elif column in table.booleans:
            value = bool(value)
        elif column in table.json and isinstance(value, str):
            value = json.loads(value)
        record[column] = value
    return record


def insert_record(conn: sqlite3.Connection, table: Table, record: dict[str, Any]) -> None:
    values = [
        bytes.fromhex(record[c]) if c in table.blobs
        else json.dumps(record[c]) if c in table.json
        else record[c]
        for c in table.columns
    ]
    conn.execute(f"INSERT INTO {table.name} ({', '.join(table.columns)})"
                 f" VALUES ({', '.join('?' * len(values))}) {table.upsert}", values)


def transaction(conn: sqlite3.Connection, work: Callable[[sqlite3.Connection], T]) -> T:
    """Run ``work`` in one immediate transaction: committed if it returns, rolled back if not."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        result = work(conn)
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")
    return result
