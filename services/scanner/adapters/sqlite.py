"""Scan states, reports and inventories on SQLite (``scans.db``)."""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Sequence

from services.core.sqlite import SqliteStore
from services.scanner.inventory import inventory_from_json, inventory_to_json
from services.scanner.models import Finding, Inventory, ScanRecord, ScanStatus
from services.scanner.scans import (
    INVENTORY_ONLY,
    check_transition,
    findings_from_json,
    findings_to_json,
)

__all__ = ["SqliteScanStore"]

MIGRATIONS = (
    """
    CREATE TABLE scans (
        digest     TEXT PRIMARY KEY,
        repository TEXT NOT NULL,
        status     TEXT NOT NULL
                   CHECK (status IN ('queued', 'scanning', 'done', 'failed', 'unsupported')),
        reason     TEXT,
        queued_at  REAL NOT NULL,
        updated_at REAL NOT NULL,
        inventory  TEXT,
        findings   TEXT NOT NULL DEFAULT '[]'
    );
    CREATE INDEX scans_queue ON scans (queued_at) WHERE status = 'queued';
    """,
    """
    CREATE TABLE tags (
        repository TEXT NOT NULL,
        name       TEXT NOT NULL,
        digest     TEXT NOT NULL,
        PRIMARY KEY (repository, name)
    );
    CREATE INDEX tags_digest ON tags (repository, digest);
    CREATE TABLE platforms (
        index_digest TEXT NOT NULL,
        position     INTEGER NOT NULL,
        digest       TEXT NOT NULL,
        platform     TEXT NOT NULL,
        PRIMARY KEY (index_digest, position)
    );
    """,
    # Which tags reach a manifest (GET /api/v1/vulnerabilities/{id}/images, forgetting the scan
    # of a deleted manifest), directly or as a platform of a tagged index.
    """
    CREATE INDEX tags_by_digest ON tags (digest);
    CREATE INDEX platforms_by_digest ON platforms (digest);
    """,
)

_COLUMNS = "digest, repository, status, reason, queued_at, updated_at, inventory, findings"


def _record(row: sqlite3.Row) -> ScanRecord:
    inventory = row["inventory"]
    return ScanRecord(
        digest=row["digest"],
        repository=row["repository"],
        status=row["status"],
        reason=row["reason"],
        queued_at=row["queued_at"],
        updated_at=row["updated_at"],
        inventory=inventory_from_json(json.loads(inventory)) if inventory else None,
        findings=findings_from_json(json.loads(row["findings"])),
    )


def _get(conn: sqlite3.Connection, digest: str) -> ScanRecord | None:
    row = conn.execute(f"SELECT {_COLUMNS} FROM scans WHERE digest = ?", (digest,)).fetchone()
    return None if row is None else _record(row)


class SqliteScanStore(SqliteStore):
    migrations = MIGRATIONS

    async def queue(self, digest: str, repository: str, *, again: bool = False) -> bool:
        def work(conn: sqlite3.Connection) -> bool:
            now = time.time()
            current = _get(conn, digest)
            if current is None:
                conn.execute(
                    "INSERT INTO scans (digest, repository, status, queued_at, updated_at)"
                    " VALUES (?, ?, 'queued', ?, ?)",
                    (digest, repository, now, now),
                )
                return True
            if not again or current.status in {"queued", "scanning"}:
                return False
            check_transition(current.status, "queued")
            conn.execute(
                "UPDATE scans SET status = 'queued', reason = NULL, repository = ?,"
                " queued_at = ?, updated_at = ? WHERE digest = ?",
                (repository, now, now, digest),
            )
            return True

        return await self.db.write(work)

    async def claim(self) -> ScanRecord | None:
        def work(conn: sqlite3.Connection) -> ScanRecord | None:
            row = conn.execute(
                f"SELECT {_COLUMNS} FROM scans WHERE status = 'queued'"
                " ORDER BY queued_at LIMIT 1"
            ).fetchone()
            if row is None:
                return None
            conn.execute("UPDATE scans SET status = 'scanning', updated_at = ? WHERE digest = ?",
                         (time.time(), row["digest"]))
            return _get(conn, row["digest"])

        return await self.db.write(work)

    async def finish(
        self,
        digest: str,
        status: ScanStatus,
        *,
        reason: str | None = None,
        inventory: Inventory | None = None,
        findings: Sequence[Finding] = (),
    ) -> ScanRecord:
        def work(conn: sqlite3.Connection) -> ScanRecord:
            current = _get(conn, digest)
            check_transition(current.status if current else None, status)
            conn.execute(
                "UPDATE scans SET status = ?, reason = ?, inventory = ?, findings = ?,"
                " updated_at = ? WHERE digest = ?",
                (
                    status,
                    reason,
                    json.dumps(inventory_to_json(inventory)) if inventory else None,
                    json.dumps(findings_to_json(findings)),
                    time.time(),
                    digest,
                ),
            )
            record = _get(conn, digest)
            if record is None:  # pragma: no cover - check_transition refused it above
                raise LookupError(digest)
            return record

        return await self.db.write(work)

    async def forget(self, digest: str) -> None:
        await self.db.write(lambda conn: conn.execute("DELETE FROM scans WHERE digest = ?",
                                                      (digest,)))

    async def get(self, digest: str) -> ScanRecord | None:
        return await self.db.read(lambda conn: _get(conn, digest))

    async def requeue_interrupted(self) -> int:
        return await self.db.write(lambda conn: conn.execute(
            "UPDATE scans SET status = 'queued', updated_at = ? WHERE status = 'scanning'",
            (time.time(),),
        ).rowcount)

    async def inventories(self) -> list[tuple[str, Inventory]]:
        rows = await self.db.read(lambda conn: conn.execute(
            "SELECT digest, inventory FROM scans WHERE status = 'done' AND inventory IS NOT NULL"
            " ORDER BY digest"
        ).fetchall())
        return [(row[0], inventory_from_json(json.loads(row[1]))) for row in rows]

    async def unmatched(self) -> list[tuple[str, Inventory]]:
        rows = await self.db.read(lambda conn: conn.execute(
            "SELECT digest, inventory FROM scans WHERE status = 'done' AND reason = ?"
            " AND inventory IS NOT NULL ORDER BY digest", (INVENTORY_ONLY,),
        ).fetchall())
        return [(row[0], inventory_from_json(json.loads(row[1]))) for row in rows]

    async def affected(self, vulnerability_ids: Sequence[str]) -> list[tuple[str, Finding]]:
        wanted = json.dumps(list(vulnerability_ids))
        rows = await self.db.read(lambda conn: conn.execute(
            "SELECT s.digest, f.value FROM scans AS s, json_each(s.findings) AS f"
            " WHERE s.status = 'done' AND ("
            "  json_extract(f.value, '$.vulnerability_id') IN (SELECT value FROM json_each(?))"
            "  OR EXISTS (SELECT 1 FROM json_each(f.value, '$.aliases') AS a"
            "             WHERE a.value IN (SELECT value FROM json_each(?))))"
            " ORDER BY s.digest, f.key", (wanted, wanted),
        ).fetchall())
        return [(row[0], findings_from_json([json.loads(row[1])])[0]) for row in rows]

    async def save_findings(self, digest: str, findings: Sequence[Finding]) -> None:
        def work(conn: sqlite3.Connection) -> None:
            updated = conn.execute(
                "UPDATE scans SET findings = ?, reason = NULL, updated_at = ?"
                " WHERE digest = ? AND status = 'done'",
                (json.dumps(findings_to_json(findings)), time.time(), digest),
            ).rowcount
            if not updated:
                raise LookupError(f"no finished scan of {digest} to update")

        await self.db.write(work)

    async def tag(self, repository: str, name: str, digest: str) -> None:
        await self.db.write(lambda conn: conn.execute(
            "INSERT INTO tags (repository, name, digest) VALUES (?, ?, ?)"
            " ON CONFLICT (repository, name) DO UPDATE SET digest = excluded.digest",
            (repository, name, digest),
        ))

    async def untag(self, repository: str, *, name: str | None = None,
                    digest: str | None = None) -> list[str]:
        args: tuple[str, ...]
        if name is not None:
            sql, args = "DELETE FROM tags WHERE repository = ? AND name = ?", (repository, name)
        elif digest is not None:
            sql, args = "DELETE FROM tags WHERE repository = ? AND digest = ?", (repository, digest)
        else:
            sql, args = "DELETE FROM tags WHERE repository = ?", (repository,)
        rows = await self.db.write(lambda conn: conn.execute(f"{sql} RETURNING digest",
                                                             args).fetchall())
        return sorted({str(row[0]) for row in rows})

    async def tagged(self, repository: str, name: str) -> str | None:
        row = await self.db.read(lambda conn: conn.execute(
            "SELECT digest FROM tags WHERE repository = ? AND name = ?", (repository, name),
        ).fetchone())
        return None if row is None else str(row[0])

    async def tags_of(self, digests: Sequence[str]) -> list[tuple[str, str, str, str]]:
        wanted = json.dumps(list(digests))
        rows = await self.db.read(lambda conn: conn.execute(
            "SELECT repository, name, digest, digest FROM tags"
            " WHERE digest IN (SELECT value FROM json_each(?))"
            " UNION SELECT t.repository, t.name, t.digest, p.digest"
            " FROM platforms AS p JOIN tags AS t ON t.digest = p.index_digest"
            " WHERE p.digest IN (SELECT value FROM json_each(?))"
            " ORDER BY 1, 2, 4", (wanted, wanted),
        ).fetchall())
        return [(row[0], row[1], row[2], row[3]) for row in rows]

    async def set_platforms(self, index: str, platforms: Sequence[tuple[str, str]]) -> None:
        def work(conn: sqlite3.Connection) -> None:
            conn.execute("DELETE FROM platforms WHERE index_digest = ?", (index,))
            conn.executemany(
                "INSERT INTO platforms (index_digest, position, digest, platform)"
                " VALUES (?, ?, ?, ?)",
                [(index, n, digest, name) for n, (digest, name) in enumerate(platforms)],
            )

        await self.db.write(work)

    async def platforms(self, index: str) -> list[tuple[str, str]]:
        rows = await self.db.read(lambda conn: conn.execute(
            "SELECT digest, platform FROM platforms WHERE index_digest = ? ORDER BY position",
            (index,),
        ).fetchall())
        return [(row[0], row[1]) for row in rows]
