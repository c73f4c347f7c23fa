"""The auth store on SQLite (``auth.db`` in the data directory)."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

from services.auth.models import User
from services.core.sqlite import Database

__all__ = ["SqliteUserStore"]

MIGRATIONS = (
    """
    CREATE TABLE users (
        name          TEXT PRIMARY KEY,
        email         TEXT NOT NULL,
        password_hash TEXT,
        admin         INTEGER NOT NULL,
        enabled       INTEGER NOT NULL,
        created_at    REAL NOT NULL
    );
    """,
)


class SqliteUserStore:
    def __init__(self, path: Path) -> None:
        self.db = Database(path, MIGRATIONS)

    async def open(self) -> None:
        await self.db.open()

    async def close(self) -> None:
        await self.db.close()

    async def create_user(
        self, user: User, password_hash: str | None, *, replace: bool = False
    ) -> None:
        verb = "INSERT OR REPLACE" if replace else "INSERT"

        def insert(conn: sqlite3.Connection) -> None:
            conn.execute(
                f"{verb} INTO users (name, email, password_hash, admin, enabled, created_at)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                (user.name, user.email, password_hash, user.admin, user.enabled, time.time()),
            )

        await self.db.write(insert)

    async def get_user(self, name: str) -> tuple[User, str | None] | None:
        row = await self.db.read(
            lambda conn: conn.execute(
                "SELECT name, email, admin, enabled, password_hash FROM users WHERE name = ?",
                (name,),
            ).fetchone()
        )
        if row is None:
            return None
        return User(row[0], row[1], bool(row[2]), bool(row[3])), row[4]
