"""The embedded event log: one SQLite file (WAL), one partition per topic.

Offsets are dense per topic (1, 2, 3, …), so a group's lag is ``last offset - committed``.
Appends wake this process's subscriptions at once; appends from another process (the
``dockyard sync`` command) are noticed through ``PRAGMA data_version`` at a slow interval.
The SQLite log serves one process: a group has at most one subscription at a time here.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path

from services.core.eventlog.ports import Delivered, Record
from services.core.sqlite import SqliteStore, Synchronous, transaction

__all__ = ["SqliteEventLog"]

log = logging.getLogger("dockyard.eventlog")

MIGRATIONS = (
    """
    CREATE TABLE records (
        topic       TEXT    NOT NULL,
        offset      INTEGER NOT NULL,
        key         TEXT    NOT NULL,
        value       BLOB    NOT NULL,
        appended_at REAL    NOT NULL,
        PRIMARY KEY (topic, offset)
    ) WITHOUT ROWID;
    CREATE TABLE group_offsets (
        topic     TEXT    NOT NULL,
        grp       TEXT    NOT NULL,
        committed INTEGER NOT NULL,
        PRIMARY KEY (topic, grp)
    ) WITHOUT ROWID;
    """,
    # Records move to a rowid table. A WITHOUT ROWID table keeps each whole row in its B-tree,
    # which SQLite advises only for rows under about 1/20 of a page; a registry event is about
    # 1 KiB (a quarter of a page). As a rowid table, appends go to the end of the table and the
    # (topic, offset) index holds only the small key: plain sqlite3 appends 1 KiB records 1.6
    # times as fast (44k -> 72k rows/s in 10-row transactions, synchronous=NORMAL).
    """
    CREATE TABLE records_by_rowid (
        topic       TEXT    NOT NULL,
        offset      INTEGER NOT NULL,
        key         TEXT    NOT NULL,
        value       BLOB    NOT NULL,
        appended_at REAL    NOT NULL,
        UNIQUE (topic, offset)
    );
    INSERT INTO records_by_rowid (topic, offset, key, value, appended_at)
        SELECT topic, offset, key, value, appended_at FROM records ORDER BY topic, offset;
    DROP TABLE records;
    ALTER TABLE records_by_rowid RENAME TO records;
    """,
)

# How often an idle subscription checks for appends made by another process.
CROSS_PROCESS_CHECK_SECONDS = 1.0
# How long the writer thread keeps committing appends before other writes get a turn.
DRAIN_TURN_SECONDS = 0.05


class SqliteEventLog(SqliteStore):
    migrations = MIGRATIONS

    def __init__(self, path: Path, *, synchronous: Synchronous = "FULL") -> None:
        super().__init__(path, synchronous=synchronous)
        self._appended: dict[str, asyncio.Event] = {}
        # Appends waiting for the writer thread, which swaps the list out: hence the lock.
        self._pending: list[_Append] = []
        self._pending_lock = threading.Lock()
        self._flusher: asyncio.Task[None] | None = None
        self._active_groups: set[tuple[str, str]] = set()

    async def append(self, topic: str, records: Sequence[Record]) -> None:
        """Append atomically; concurrent appends share one transaction (group commit).

        Appends wait in ``_pending``; the writer thread takes all that wait, commits them in
        one transaction (one fsync for all), and takes the next group straight away: a round
        trip to the event loop between groups left the writer idle half the time under load.
        A failing append appends nothing and the others of its group still commit.
        """
        if not records:
            return
        loop = asyncio.get_running_loop()
        done = loop.create_future()
        with self._pending_lock:
            self._pending.append(_Append(topic, records, done))
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.create_task(self._flush(loop))
        await done

    async def _flush(self, loop: asyncio.AbstractEventLoop) -> None:
        while self._pending:
            await self.db.on_writer(partial(self._drain, loop=loop))

    def _drain(self, conn: sqlite3.Connection, *, loop: asyncio.AbstractEventLoop) -> None:
        """In the writer thread: commit waiting groups until none waits or the turn is up
        (then other writes, such as consumers' commits, get the connection)."""
        deadline = time.monotonic() + DRAIN_TURN_SECONDS
        while time.monotonic() < deadline:
            with self._pending_lock:
                group, self._pending = self._pending, []
            if not group:
                return
            try:
                failures = transaction(conn, partial(_insert_group, group=group))
            except Exception as exc:  # noqa: BLE001 - the commit failed: every append did
                failures = [exc] * len(group)
            loop.call_soon_threadsafe(self._settle, group, failures)

    def _settle(self, group: list[_Append], failures: list[Exception | None]) -> None:
        for pending, failure in zip(group, failures, strict=True):
            if pending.done.done():
                continue  # the appender was cancelled; its records are in or out as above
            if failure is None:
                pending.done.set_result(None)
            else:
                pending.done.set_exception(failure)
        for topic in {pending.topic for pending in group}:
            self._wake(topic)

    async def subscribe(self, topic: str, group: str) -> SqliteSubscription:
        if (topic, group) in self._active_groups:
            raise RuntimeError(
                f"group {group!r} already consumes {topic!r} in this process;"
                " the SQLite event log serves one subscription per group"
            )

        def register(conn: sqlite3.Connection) -> int:
            conn.execute(
                "INSERT OR IGNORE INTO group_offsets (topic, grp, committed) VALUES (?, ?, ?)",
                (topic, group, 0),
            )
            row = conn.execute(
                "SELECT committed FROM group_offsets WHERE topic = ? AND grp = ?", (topic, group)
            ).fetchone()
            return int(row[0])

        committed = await self.db.write(register)
        self._active_groups.add((topic, group))
        return SqliteSubscription(self, topic, group, committed)

    async def prune(self, older_than_seconds: float) -> int:
        """Delete records every known group has committed and older than the retention.

        The newest record of each topic stays: the next offset is counted from it, and offsets
        restarting at 1 in an emptied topic would sit below every group's committed offset, so
        those events would never be delivered.
        """
        cutoff = time.time() - older_than_seconds

        def delete(conn: sqlite3.Connection) -> int:
            cursor = conn.execute(
                """
                DELETE FROM records
                WHERE appended_at < ?
                  AND offset <= (SELECT min(committed) FROM group_offsets g
                                 WHERE g.topic = records.topic)
                  AND offset < (SELECT max(offset) FROM records newest
                                WHERE newest.topic = records.topic)
                """,
                (cutoff,),
            )
            return cursor.rowcount

        removed = await self.db.write(delete)
        if removed:
            log.info("pruned consumed records", extra={"removed": removed})
        return removed

    def _wake(self, topic: str) -> None:
        event = self._appended.get(topic)
        if event is not None:
            event.set()

    def _appended_event(self, topic: str) -> asyncio.Event:
        return self._appended.setdefault(topic, asyncio.Event())


@dataclass(slots=True)
class _Append:
    topic: str
    records: Sequence[Record]
    done: asyncio.Future[None]


def _insert_group(conn: sqlite3.Connection, *, group: list[_Append]) -> list[Exception | None]:
    """Insert every append of ``group``; one failure per append (None where it went in).

    The whole group goes in at once (``_insert_rows``): appends almost never fail (offsets are
    ours, so only the disk can refuse), and a savepoint per append cost a third of the flush.
    If that fails, it is undone and the appends go in one by one, each under its own
    savepoint, so only the failing ones fail.
    """
    now = time.time()
    last = _last_offsets(conn, group)
    rows: list[tuple[str, int, str, bytes, float]] = []
    for pending in group:
        topic = pending.topic
        offset = last[topic]
        rows.extend((topic, offset + i, r.key, r.value, now)
                    for i, r in enumerate(pending.records, 1))
        last[topic] = offset + len(pending.records)
    conn.execute("SAVEPOINT append_group")
    try:
        _insert_rows(conn, rows)
    except Exception:  # noqa: BLE001 - find the appends that fail, below
        conn.execute("ROLLBACK TO append_group")
        conn.execute("RELEASE append_group")
        return _insert_one_by_one(conn, group, now)
    conn.execute("RELEASE append_group")
    return [None] * len(group)


def _insert_one_by_one(
    conn: sqlite3.Connection, group: list[_Append], now: float
) -> list[Exception | None]:
    last = _last_offsets(conn, group)
    failures: list[Exception | None] = []
    for pending in group:
        topic = pending.topic
        conn.execute("SAVEPOINT append_one")
        try:
            _insert_rows(conn, [(topic, last[topic] + i, r.key, r.value, now)
                                for i, r in enumerate(pending.records, 1)])
        except Exception as exc:  # noqa: BLE001 - reported to that appender alone
            conn.execute("ROLLBACK TO append_one")
            failures.append(exc)
        else:
            last[topic] += len(pending.records)
            failures.append(None)
        conn.execute("RELEASE append_one")
    return failures


# Multi-row INSERTs of these many rows: a row count goes in as its binary digits, so a group
# takes a few statements and only these few statement texts are ever prepared and cached.
_INSERT_SIZES = (256, 128, 64, 32, 16, 8, 4, 2, 1)  # 5 parameters a row: far below SQLite's cap
_INSERT = {
    size: "INSERT INTO records (topic, offset, key, value, appended_at) VALUES "
          + ", ".join(["(?, ?, ?, ?, ?)"] * size)
    for size in _INSERT_SIZES
}


def _insert_rows(conn: sqlite3.Connection, rows: list[tuple[str, int, str, bytes, float]]) -> None:
    """Insert ``rows`` with a few multi-row statements rather than one step per row.

    Python's sqlite3 lets go of the GIL around every step, and ``executemany`` steps once per
    row. While the event loop keeps the GIL busy (parsing webhooks), the writer thread then
    waits for it once per row, up to the 5 ms switch interval each time: measured beside a
    busy thread, 100-row groups went in 15 times slower that way than as one statement.
    """
    start = 0
    while start < len(rows):
        size = next(s for s in _INSERT_SIZES if s <= len(rows) - start)
        chunk = rows[start:start + size]
        conn.execute(_INSERT[size], [value for row in chunk for value in row])
        start += size


def _last_offsets(conn: sqlite3.Connection, group: list[_Append]) -> dict[str, int]:
    return {
        topic: conn.execute(
            "SELECT coalesce(max(offset), 0) FROM records WHERE topic = ?", (topic,)
        ).fetchone()[0]
        for topic in {pending.topic for pending in group}
    }


class SqliteSubscription:
    def __init__(self, owner: SqliteEventLog, topic: str, group: str, committed: int) -> None:
        self.topic = topic
        self.group = group
        self._owner = owner
        self._db = owner.db
        self._position = committed  # last offset handed out
        self._data_version = 0

    async def fetch(self, max_records: int = 500, timeout: float = 1.0) -> list[Delivered]:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        appended = self._owner._appended_event(self.topic)  # noqa: SLF001
        look = True
        while True:
            if look:
                appended.clear()
                batch = await self._db.read(lambda conn: self._select(conn, max_records))
                if batch:
                    self._position = batch[-1].offset
                    return batch
            remaining = deadline - loop.time()
            if remaining <= 0:
                return []
            try:
                await asyncio.wait_for(appended.wait(), min(remaining, CROSS_PROCESS_CHECK_SECONDS))
                look = True
            except TimeoutError:
                look = await self._changed_elsewhere()

    async def commit(self, records: Sequence[Delivered]) -> None:
        if not records:
            return
        last = max(r.offset for r in records)
        await self._db.write(
            lambda conn: conn.execute(
                "UPDATE group_offsets SET committed = max(committed, ?)"
                " WHERE topic = ? AND grp = ?",
                (last, self.topic, self.group),
            )
        )

    async def lag(self) -> int:
        def count(conn: sqlite3.Connection) -> int:
            row = conn.execute(
                """
                SELECT coalesce((SELECT max(offset) FROM records WHERE topic = ?), 0)
                       - (SELECT committed FROM group_offsets WHERE topic = ? AND grp = ?)
                """,
                (self.topic, self.topic, self.group),
            ).fetchone()
            return max(0, int(row[0] or 0))

        return await self._db.read(count)

    async def close(self) -> None:
        self._owner._active_groups.discard((self.topic, self.group))  # noqa: SLF001

    def _select(self, conn: sqlite3.Connection, limit: int) -> list[Delivered]:
        # The baseline for _changed_elsewhere: anything committed after this read changes it.
        self._data_version = int(conn.execute("PRAGMA data_version").fetchone()[0])
        rows = conn.execute(
            "SELECT offset, key, value, appended_at FROM records"
            " WHERE topic = ? AND offset > ? ORDER BY offset LIMIT ?",
            (self.topic, self._position, limit),
        ).fetchall()
        return [Delivered(self.topic, 0, offset, key, value, at) for offset, key, value, at in rows]

    async def _changed_elsewhere(self) -> bool:
        version = await self._db.read(
            lambda conn: int(conn.execute("PRAGMA data_version").fetchone()[0])
        )
        return version != self._data_version
