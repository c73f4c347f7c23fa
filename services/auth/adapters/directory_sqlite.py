"""Directory links and sync-managed memberships on SQLite (``directory.db``, apart from
``auth.db``: the AuthStore's schema stays as it is, and a sync's writes do not queue behind the
token endpoint's)."""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime

from services.auth.models import ExternalAccount
from services.auth.policy import Role
from services.core.dump import Dumped
from services.core.sqlite import SqliteStore, Table, insert_record, row_record

__all__ = ["SqliteDirectoryStore"]

MIGRATIONS = (
    """
    CREATE TABLE accounts (
        name        TEXT PRIMARY KEY,
        source      TEXT NOT NULL,
        external_id TEXT NOT NULL,
        suspended   INTEGER NOT NULL DEFAULT 0
    );
    CREATE UNIQUE INDEX accounts_external ON accounts (source, external_id)
        WHERE external_id != '';
    CREATE INDEX accounts_source ON accounts (source, name);
    CREATE TABLE managed_members (
        user TEXT NOT NULL,
        team TEXT NOT NULL,
        role TEXT NOT NULL CHECK (role IN ('viewer', 'contributor', 'owner')),
        PRIMARY KEY (user, team)
    );
    """,
    "ALTER TABLE accounts ADD COLUMN seen_at REAL;",
)

_COLUMNS = "name, source, external_id, suspended, seen_at"
# The dump, in DIRECTORY_RECORDS order.
_DUMPED = {
    "account": Table("accounts", ("name", "source", "external_id", "suspended", "seen_at"),
                     booleans=frozenset({"suspended"})),
    "managed_member": Table("managed_members", ("user", "team", "role")),
}
# Key order, not rowid order as in the other stores' dumps: the MongoDB adapter keeps one
# document per user, so only key order is the same sequence in both. Both tables hold one row
# per directory account (or per account and team), small enough for one read (which is also
# one consistent snapshot).
_DUMP_ORDER = {"account": "name", "managed_member": "user, team"}


def _account(row: sqlite3.Row) -> ExternalAccount:
    seen = row["seen_at"]
    return ExternalAccount(row["name"], row["source"], row["external_id"], bool(row["suspended"]),
                           None if seen is None else datetime.fromtimestamp(seen, UTC))


class SqliteDirectoryStore(SqliteStore):
    migrations = MIGRATIONS

    async def link(self, account: ExternalAccount) -> None:
        await self.db.write(lambda conn: conn.execute(
            f"INSERT OR REPLACE INTO accounts ({_COLUMNS}) VALUES (?, ?, ?, ?, ?)",
            (account.name, account.source, account.external_id, account.suspended,
             None if account.seen_at is None else account.seen_at.timestamp())))

    async def account(self, name: str) -> ExternalAccount | None:
        row = await self.db.read(lambda conn: conn.execute(
            f"SELECT {_COLUMNS} FROM accounts WHERE name = ?", (name,)).fetchone())
        return None if row is None else _account(row)

    async def by_external_id(self, source: str, external_id: str) -> ExternalAccount | None:
        if not external_id:  # pre-created accounts are not linked yet
            return None
        row = await self.db.read(lambda conn: conn.execute(
            f"SELECT {_COLUMNS} FROM accounts WHERE source = ? AND external_id = ?",
            (source, external_id)).fetchone())
        return None if row is None else _account(row)

    async def accounts(self, source: str) -> list[ExternalAccount]:
        rows = await self.db.read(lambda conn: conn.execute(
            f"SELECT {_COLUMNS} FROM accounts WHERE source = ? ORDER BY name",
            (source,)).fetchall())
        return [_account(row) for row in rows]

    async def managed(self, user: str) -> dict[str, Role]:
        rows = await self.db.read(lambda conn: conn.execute(
            "SELECT team, role FROM managed_members WHERE user = ?", (user,)).fetchall())
        return {row["team"]: row["role"] for row in rows}

    async def set_managed(self, user: str, memberships: dict[str, Role]) -> None:
        def replace(conn: sqlite3.Connection) -> None:
            conn.execute("DELETE FROM managed_members WHERE user = ?", (user,))
            conn.executemany("INSERT INTO managed_members (user, team, role) VALUES (?, ?, ?)",
                             [(user, team, role) for team, role in memberships.items()])

        await self.db.write(replace)

    # export and import ---------------------------------------------------------------------

    async def dump(self) -> AsyncIterator[Dumped]:
        def everything(conn: sqlite3.Connection) -> list[Dumped]:
            return [(kind, row_record(table, row)) for kind, table in _DUMPED.items()
                    for row in conn.execute(f"SELECT {', '.join(table.columns)}"
                                            f" FROM {table.name} ORDER BY {_DUMP_ORDER[kind]}")]

        for record in await self.db.read(everything):
            yield record

    async def is_empty(self) -> bool:
        row = await self.db.read(lambda conn: conn.execute(
            "SELECT (SELECT count(*) FROM accounts) + (SELECT count(*) FROM managed_members)"
        ).fetchone())
        return int(row[0]) == 0

    async def load(self, records: Sequence[Dumped]) -> None:
        def insert(conn: sqlite3.Connection) -> None:
            for kind, fields in records:
                insert_record(conn, _DUMPED[kind], fields)

        await self.db.write(insert)
