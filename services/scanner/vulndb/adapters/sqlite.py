"""The vulnerability database on SQLite (``vulndb.db``)."""

from __future__ import annotations

import sqlite3
from collections import defaultdict
from collections.abc import Iterable, Sequence
from datetime import datetime

import orjson

from services.core.sqlite import SqliteStore
from services.core.times import from_micros, micros
from services.scanner.models import Severity
from services.scanner.vulndb.models import (
    Advisory,
    Affected,
    Candidate,
    EcosystemStatus,
    PackageKey,
    UpsertResult,
)

__all__ = ["SEVERITIES", "SqliteVulnStore", "stored_ranges"]

# Stored severity → Severity by index: Severity(n) costs a microsecond, thousands of times a match.
SEVERITIES = tuple(Severity)

MIGRATIONS = (
    """
    CREATE TABLE advisories (
        id          TEXT PRIMARY KEY,
        modified_us INTEGER NOT NULL,
        aliases     TEXT NOT NULL,
        summary     TEXT NOT NULL,
        withdrawn   INTEGER NOT NULL
    );
    CREATE TABLE aliases (
        alias    TEXT NOT NULL,
        advisory TEXT NOT NULL REFERENCES advisories (id) ON DELETE CASCADE,
        PRIMARY KEY (alias, advisory)
    ) WITHOUT ROWID;
    -- aliases, summary and withdrawn repeat the advisory's, so matching reads one table
    -- (rewritten together whenever the advisory changes).
    CREATE TABLE affected (
        advisory  TEXT NOT NULL REFERENCES advisories (id) ON DELETE CASCADE,
        ecosystem TEXT NOT NULL,
        package   TEXT NOT NULL,
        ranges    TEXT NOT NULL,
        versions  TEXT NOT NULL,
        severity  INTEGER NOT NULL,
        aliases   TEXT NOT NULL,
        summary   TEXT NOT NULL,
        withdrawn INTEGER NOT NULL
    );
    CREATE INDEX affected_package ON affected (ecosystem, package);
    CREATE INDEX affected_advisory ON affected (advisory, ecosystem);
    CREATE TABLE imports (
        ecosystem      TEXT PRIMARY KEY,
        imported_at_us INTEGER NOT NULL
    );
    -- Packages whose advisories changed, in order: what re-matching reads (changed_since).
    CREATE TABLE changes (
        seq       INTEGER PRIMARY KEY AUTOINCREMENT,
        ecosystem TEXT NOT NULL,
        package   TEXT NOT NULL
    );
    """,
)


def stored_ranges(entry: Affected) -> list[list[object]]:
    """``[[type, [[kind, version], …]], …]``: the shape both stores keep and matching reads."""
    return [[r.type, [[e.kind, e.version] for e in r.events]] for r in entry.ranges]


class SqliteVulnStore(SqliteStore):
    migrations = MIGRATIONS

    async def upsert(self, advisories: Sequence[Advisory], imported_at: datetime) -> UpsertResult:
        return await self.db.write(lambda conn: _upsert(conn, advisories, imported_at))

    async def candidates(self, keys: Iterable[PackageKey]) -> list[Candidate]:
        by_ecosystem: dict[str, list[str]] = defaultdict(list)
        for ecosystem, name in keys:
            by_ecosystem[ecosystem].append(name)

        def read(conn: sqlite3.Connection) -> list[Candidate]:
            found: list[Candidate] = []
            for ecosystem, names in by_ecosystem.items():
                rows = conn.execute(
                    "SELECT advisory, aliases, summary, package, ranges, versions, severity"
                    " FROM affected WHERE ecosystem = ?"
                    " AND package IN (SELECT value FROM json_each(?)) AND withdrawn = 0",
                    (ecosystem, orjson.dumps(names)),
                )
                found.extend(
                    Candidate(row[0], tuple(orjson.loads(row[1])), row[2], ecosystem, row[3],
                              orjson.loads(row[4]), orjson.loads(row[5]), SEVERITIES[row[6]])
                    for row in rows
                )
            return found

        return await self.db.read(read)

    async def status(self) -> list[EcosystemStatus]:
        def read(conn: sqlite3.Connection) -> list[EcosystemStatus]:
            counts = {
                row[0]: (row[1], row[2])
                for row in conn.execute(
                    "SELECT a.ecosystem, COUNT(DISTINCT a.advisory), MAX(v.modified_us)"
                    " FROM affected a JOIN advisories v ON v.id = a.advisory"
                    " WHERE a.withdrawn = 0 GROUP BY a.ecosystem"
                )
            }
            return [
                EcosystemStatus(
                    ecosystem, counts.get(ecosystem, (0, None))[0],
                    None if (newest := counts.get(ecosystem, (0, None))[1]) is None
                    else from_micros(newest),
                    from_micros(imported),
                )
                for ecosystem, imported in conn.execute(
                    "SELECT ecosystem, imported_at_us FROM imports ORDER BY ecosystem"
                )
            ]

        return await self.db.read(read)

    async def changed_since(self, position: int) -> tuple[frozenset[PackageKey], int]:
        def read(conn: sqlite3.Connection) -> tuple[frozenset[PackageKey], int]:
            rows = conn.execute(
                "SELECT seq, ecosystem, package FROM changes WHERE seq > ? ORDER BY seq",
                (position,),
            ).fetchall()
            keys = frozenset((row[1], row[2]) for row in rows)
            return keys, rows[-1][0] if rows else position

        return await self.db.read(read)

    async def advisory_ids(self, identifier: str) -> list[str]:
        def read(conn: sqlite3.Connection) -> list[str]:
            rows = conn.execute(
                "SELECT advisory FROM aliases WHERE alias = ? ORDER BY advisory", (identifier,)
            )
            return [row[0] for row in rows]

        return await self.db.read(read)


def _upsert(
    conn: sqlite3.Connection, advisories: Sequence[Advisory], imported_at: datetime
) -> UpsertResult:
    added = updated = unchanged = 0
    changed: set[PackageKey] = set()
    seen: set[str] = set()
    for advisory in advisories:
        ecosystems = advisory.ecosystems
        seen |= ecosystems
        modified = micros(advisory.modified)
        row = conn.execute(
            "SELECT modified_us FROM advisories WHERE id = ?", (advisory.id,)
        ).fetchone()
        if row is not None:
            stored = {r[0] for r in conn.execute(
                "SELECT DISTINCT ecosystem FROM affected WHERE advisory = ?", (advisory.id,))}
            if row[0] > modified or (row[0] == modified and ecosystems <= stored):
                unchanged += 1
                continue
            if row[0] == modified:
                ecosystems -= stored  # same record, more of it: add only what is missing
            marks = ",".join("?" * len(ecosystems))
            scope = f"advisory = ? AND ecosystem IN ({marks})"
            old = conn.execute(f"SELECT ecosystem, package FROM affected WHERE {scope}",
                               (advisory.id, *ecosystems)).fetchall()
            changed.update((r[0], r[1]) for r in old)
            conn.execute(f"DELETE FROM affected WHERE {scope}", (advisory.id, *ecosystems))
            conn.execute("DELETE FROM aliases WHERE advisory = ?", (advisory.id,))
        conn.execute(
            "INSERT INTO advisories (id, modified_us, aliases, summary, withdrawn)"
            " VALUES (?, ?, ?, ?, ?) ON CONFLICT (id) DO UPDATE SET"
            " modified_us = excluded.modified_us, aliases = excluded.aliases,"
            " summary = excluded.summary, withdrawn = excluded.withdrawn",
            (advisory.id, modified, orjson.dumps(advisory.aliases).decode(), advisory.summary,
             int(advisory.withdrawn)),
        )
        conn.executemany(
            "INSERT OR IGNORE INTO aliases (alias, advisory) VALUES (?, ?)",
            [(alias, advisory.id) for alias in (advisory.id, *advisory.aliases)],
        )
        shared = (orjson.dumps(advisory.aliases).decode(), advisory.summary,
                  int(advisory.withdrawn))
        if row is not None:  # entries of the advisory's other ecosystems stay, updated
            conn.execute("UPDATE affected SET aliases = ?, summary = ?, withdrawn = ?"
                         " WHERE advisory = ?", (*shared, advisory.id))
        fresh = [entry for entry in advisory.affected if entry.ecosystem in ecosystems]
        conn.executemany(
            "INSERT INTO affected (advisory, ecosystem, package, ranges, versions, severity,"
            " aliases, summary, withdrawn) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [(advisory.id, e.ecosystem, e.name, orjson.dumps(stored_ranges(e)).decode(),
              orjson.dumps(e.versions).decode(), int(e.severity), *shared) for e in fresh],
        )
        changed.update((e.ecosystem, e.name) for e in fresh)
        if row is None:
            added += 1
        else:
            updated += 1
    conn.executemany(
        "INSERT INTO changes (ecosystem, package) VALUES (?, ?)", sorted(changed)
    )
    stamp = micros(imported_at)
    conn.executemany(
        "INSERT INTO imports (ecosystem, imported_at_us) VALUES (?, ?) ON CONFLICT (ecosystem)"
        " DO UPDATE SET imported_at_us = excluded.imported_at_us",
        [(ecosystem, stamp) for ecosystem in sorted(seen)],
    )
    return UpsertResult(added, updated, unchanged, frozenset(changed))
