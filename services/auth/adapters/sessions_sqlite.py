"""Portal sessions on SQLite (``sessions.db``), apart from ``auth.db``.

A file of their own: every signed-in page view may refresh a session, and those writes must not
queue behind the token endpoint's account writes.
"""

from __future__ import annotations

import sqlite3
from datetime import datetime

from services.auth.sessions import Session
from services.core.sqlite import SqliteStore
from services.core.times import from_micros, micros

__all__ = ["SqliteSessionStore"]

MIGRATIONS = (
    """
    CREATE TABLE sessions (
        id_hash      BLOB PRIMARY KEY,
        user         TEXT NOT NULL,
        method       TEXT NOT NULL,
        csrf_token   TEXT NOT NULL,
        created_at   INTEGER NOT NULL,
        last_seen_at INTEGER NOT NULL,
        expires_at   INTEGER NOT NULL,
        stash        BLOB
    );
    CREATE INDEX sessions_user ON sessions (user);
    CREATE INDEX sessions_expires ON sessions (expires_at);
    """,
    # A session counts only in its account's credential epoch of sign-in.
    "ALTER TABLE sessions ADD COLUMN credential_epoch INTEGER NOT NULL DEFAULT 0;",
)


class SqliteSessionStore(SqliteStore):
    migrations = MIGRATIONS

    async def create(self, id_hash: bytes, session: Session) -> None:
        row = (id_hash, session.user, session.method, session.csrf_token,
               micros(session.created_at), micros(session.last_seen_at),
               micros(session.expires_at), session.credential_epoch)
        await self.db.write(lambda conn: conn.execute(
            "INSERT INTO sessions (id_hash, user, method, csrf_token, created_at, last_seen_at,"
            " expires_at, credential_epoch) VALUES (?, ?, ?, ?, ?, ?, ?, ?)", row))

    async def get(self, id_hash: bytes) -> Session | None:
        def query(conn: sqlite3.Connection) -> Session | None:
            row = conn.execute(
                "SELECT user, method, csrf_token, created_at, last_seen_at, expires_at,"
                " credential_epoch FROM sessions WHERE id_hash = ?", (id_hash,)).fetchone()
            if row is None:
                return None
            user, method, csrf, created, seen, expires, epoch = row
            return Session(user, method, csrf, from_micros(created), from_micros(seen),
                           from_micros(expires), epoch)

        return await self.db.read(query)

    async def touch(self, id_hash: bytes, *, last_seen_at: datetime,
                    expires_at: datetime) -> None:
        args = (micros(last_seen_at), micros(expires_at), id_hash)
        await self.db.write(lambda conn: conn.execute(
            "UPDATE sessions SET last_seen_at = ?, expires_at = ? WHERE id_hash = ?", args))

    async def delete(self, id_hash: bytes) -> bool:
        return await self.db.write(lambda conn: conn.execute(
            "DELETE FROM sessions WHERE id_hash = ?", (id_hash,)).rowcount > 0)

    async def delete_user(self, user: str) -> int:
        return await self.db.write(lambda conn: conn.execute(
            "DELETE FROM sessions WHERE user = ?", (user,)).rowcount)

    async def prune(self, now: datetime) -> int:
        return await self.db.write(lambda conn: conn.execute(
            "DELETE FROM sessions WHERE expires_at <= ?", (micros(now),)).rowcount)

    async def set_stash(self, id_hash: bytes, stash: bytes) -> None:
        await self.db.write(lambda conn: conn.execute(
            "UPDATE sessions SET stash = ? WHERE id_hash = ?", (stash, id_hash)))

    async def take_stash(self, id_hash: bytes) -> bytes | None:
        def take(conn: sqlite3.Connection) -> bytes | None:
            # One write transaction: of two concurrent takes, only one sees the value.
            row = conn.execute("SELECT stash FROM sessions WHERE id_hash = ?",
                               (id_hash,)).fetchone()
            if row is None or row[0] is None:
                return None
            conn.execute("UPDATE sessions SET stash = NULL WHERE id_hash = ?", (id_hash,))
            return bytes(row[0])

        return await self.db.write(take)
