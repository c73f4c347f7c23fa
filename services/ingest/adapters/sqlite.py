"""The catalog (``catalog.db``) and the activity log (``activity.db``) on SQLite.

Two files so the catalog and activity consumers never wait for each other's writes.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import asdict

from services.core.dump import Dumped
from services.core.reference import namespace_of
from services.core.sqlite import Database, SqliteStore, Table, insert_record, row_record
from services.core.times import from_micros, micros, rfc3339
from services.ingest.models import (
    Activity,
    ActivityFilter,
    DeleteManifest,
    DeleteRepository,
    DeleteTag,
    Operation,
    PutManifest,
    PutTag,
    RecordPull,
)
from services.ingest.ports import Row

__all__ = ["SqliteActivityStore", "SqliteCatalogStore", "from_micros", "micros"]

CATALOG_MIGRATIONS = (
    """
    CREATE TABLE repositories (
        name           TEXT PRIMARY KEY,
        namespace      TEXT NOT NULL,
        created_at     INTEGER NOT NULL,
        updated_at     INTEGER NOT NULL,
        pull_count     INTEGER NOT NULL DEFAULT 0,
        last_pulled_at INTEGER
    );
    CREATE INDEX repositories_namespace ON repositories (namespace, name);
    CREATE TABLE manifests (
        repository    TEXT NOT NULL REFERENCES repositories (name) ON DELETE CASCADE,
        digest        TEXT NOT NULL,
        media_type    TEXT NOT NULL,
        kind          TEXT NOT NULL,
        artifact_type TEXT,
        size          INTEGER,
        platforms     TEXT NOT NULL,
        subject       TEXT,
        pushed_by     TEXT,
        pushed_at     INTEGER NOT NULL,
        PRIMARY KEY (repository, digest)
    );
    CREATE INDEX manifests_subject ON manifests (repository, subject) WHERE subject IS NOT NULL;
    CREATE TABLE tags (
        repository     TEXT NOT NULL REFERENCES repositories (name) ON DELETE CASCADE,
        name           TEXT NOT NULL,
        digest         TEXT NOT NULL,
        pushed_by      TEXT,
        pushed_at      INTEGER NOT NULL,
        pull_count     INTEGER NOT NULL DEFAULT 0,
        last_pulled_at INTEGER,
        PRIMARY KEY (repository, name)
    );
    CREATE INDEX tags_digest ON tags (repository, digest);
    CREATE TABLE applied_events (
        id         TEXT PRIMARY KEY,
        applied_at REAL NOT NULL
    );
    """,
)

ACTIVITY_MIGRATIONS = (
    """
    CREATE TABLE activities (
        seq        INTEGER PRIMARY KEY,
        id         TEXT NOT NULL UNIQUE,
        type       TEXT NOT NULL,
        actor      TEXT,
        repository TEXT,
        namespace  TEXT NOT NULL,
        tag        TEXT,
        digest     TEXT,
        time_us    INTEGER NOT NULL,
        address    TEXT,
        user_agent TEXT,
        synthetic  INTEGER NOT NULL,
        subject    TEXT,
        team       TEXT,
        details    TEXT NOT NULL DEFAULT '{}',
        audience   TEXT NOT NULL CHECK (audience IN ('namespace', 'admin'))
    );
    -- One index per filter, each ending in the keyset (time_us, seq) the feed pages by.
    CREATE INDEX activities_time ON activities (time_us, seq);
    CREATE INDEX activities_repository ON activities (repository, time_us, seq);
    CREATE INDEX activities_namespace ON activities (namespace, time_us, seq);
    CREATE INDEX activities_actor ON activities (actor, time_us, seq);
    CREATE INDEX activities_type ON activities (type, time_us, seq);
    """,
)


def _iso(value: int | None) -> str | None:
    moment = from_micros(value)
    return None if moment is None else rfc3339(moment)


class SqliteCatalogStore(SqliteStore):
    migrations = CATALOG_MIGRATIONS

    async def apply(self, changes: Sequence[tuple[str, Sequence[Operation]]]) -> int:
        def work(conn: sqlite3.Connection) -> int:
            now = time.time()
            new = 0
            for event_id, operations in changes:
                inserted = conn.execute(
                    "INSERT OR IGNORE INTO applied_events (id, applied_at) VALUES (?, ?)",
                    (event_id, now),
                ).rowcount
                if not inserted:
                    continue
                new += 1
                for operation in operations:
                    _apply(conn, operation)
            return new

        return await self.db.write(work)

    async def repositories(
        self,
        *,
        namespace: str | None,
        after: str | None,
        limit: int,
        visible: frozenset[str] | None = None,
    ) -> list[Row]:
        clauses, args = ["name > ?"], [after or ""]
        if namespace is not None:
            clauses.append("namespace = ?")
            args.append(namespace)
        if visible is not None:
            clauses.append("namespace IN (SELECT value FROM json_each(?))")
            args.append(json.dumps(sorted(visible)))
        sql = (
            "SELECT name, namespace, created_at, updated_at, pull_count, last_pulled_at,"
            " (SELECT count(*) FROM tags t WHERE t.repository = r.name)"
            f" FROM repositories r WHERE {' AND '.join(clauses)} ORDER BY name LIMIT ?"
        )
        rows = await self.db.read(lambda conn: conn.execute(sql, (*args, limit)).fetchall())
        return [_repository_row(row) for row in rows]

    async def repository(self, name: str) -> Row | None:
        rows = await self.db.read(
            lambda conn: conn.execute(
                "SELECT name, namespace, created_at, updated_at, pull_count, last_pulled_at,"
                " (SELECT count(*) FROM tags t WHERE t.repository = r.name)"
                " FROM repositories r WHERE name = ?",
                (name,),
            ).fetchall()
        )
        return _repository_row(rows[0]) if rows else None

    async def tags(self, repository: str, *, after: str | None, limit: int) -> list[Row]:
        def query(conn: sqlite3.Connection) -> list[Row]:
            rows = conn.execute(
                """
                SELECT t.name, t.digest, m.media_type, m.kind, m.artifact_type, m.size,
                       m.platforms, m.subject, t.pushed_by, t.pushed_at, t.pull_count,
                       t.last_pulled_at
                FROM tags t LEFT JOIN manifests m
                  ON m.repository = t.repository AND m.digest = t.digest
                WHERE t.repository = ? AND t.name > ?
                ORDER BY t.name LIMIT ?
                """,
                (repository, after or "", limit),
            ).fetchall()
            digests = sorted({row[1] for row in rows})
            referrers: dict[str, list[Row]] = {}
            if digests:
                marks = ",".join("?" * len(digests))
                for subject, digest, kind, artifact_type in conn.execute(
                    "SELECT subject, digest, kind, artifact_type FROM manifests"
                    f" WHERE repository = ? AND subject IN ({marks}) ORDER BY digest",
                    (repository, *digests),
                ):
                    referrers.setdefault(subject, []).append(
                        {"digest": digest, "kind": kind, "artifact_type": artifact_type}
                    )
            return [_tag_row(repository, row, referrers.get(row[1], [])) for row in rows]

        return await self.db.read(query)

    async def tag_digests(self, repository: str) -> dict[str, str]:
        rows = await self.db.read(
            lambda conn: conn.execute(
                "SELECT name, digest FROM tags WHERE repository = ?", (repository,)
            ).fetchall()
        )
        return dict(rows)

    async def repository_names(self) -> list[str]:
        rows = await self.db.read(
            lambda conn: conn.execute("SELECT name FROM repositories ORDER BY name").fetchall()
        )
        return [row[0] for row in rows]

    async def dump(self) -> AsyncIterator[Dumped]:
        async for record in _dump(self.db, _CATALOG_DUMPED):
            yield record

    async def is_empty(self) -> bool:
        row = await self.db.read(lambda conn: conn.execute(
            "SELECT (SELECT count(*) FROM repositories) + (SELECT count(*) FROM applied_events)"
        ).fetchone())
        return int(row[0]) == 0

    async def load(self, records: Sequence[Dumped]) -> None:
        await _load(self.db, _CATALOG_DUMPED, records)


# The dumps, in CATALOG_RECORDS / ACTIVITY_RECORDS order.
_CATALOG_DUMPED = {
    "repository": Table("repositories", ("name", "namespace", "created_at", "updated_at",
                                         "pull_count", "last_pulled_at")),
    "manifest": Table("manifests", ("repository", "digest", "media_type", "kind",
                                    "artifact_type", "size", "platforms", "subject", "pushed_by",
                                    "pushed_at"), json=frozenset({"platforms"})),
    "tag": Table("tags", ("repository", "name", "digest", "pushed_by", "pushed_at",
                          "pull_count", "last_pulled_at")),
    "applied_event": Table("applied_events", ("id", "applied_at")),
}
_ACTIVITY_DUMPED = {
    "activity": Table("activities", ("seq", "id", "type", "actor", "repository", "namespace",
                                     "tag", "digest", "time_us", "address", "user_agent",
                                     "synthetic", "subject", "team", "details", "audience"),
                      booleans=frozenset({"synthetic"}), json=frozenset({"details"})),
}


async def _dump(db: Database, tables: dict[str, Table]) -> AsyncIterator[Dumped]:
    for kind, table in tables.items():
        async for rows in db.scan(table.name, ", ".join(table.columns)):
            for row in rows:
                yield kind, row_record(table, row)


async def _load(db: Database, tables: dict[str, Table], records: Sequence[Dumped]) -> None:
    def insert(conn: sqlite3.Connection) -> None:
        for kind, fields in records:
            insert_record(conn, tables[kind], fields)

    await db.write(insert)


def _apply(conn: sqlite3.Connection, operation: Operation) -> None:
    match operation:
        case PutManifest():
            _touch_repository(conn, operation.repository, micros(operation.pushed_at))
            conn.execute(
                """
                INSERT INTO manifests (repository, digest, media_type, kind, artifact_type, size,
                                       platforms, subject, pushed_by, pushed_at)
                VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
                ON CONFLICT (repository, digest) DO UPDATE SET
                    media_type = excluded.media_type, kind = excluded.kind,
                    artifact_type = excluded.artifact_type, size = excluded.size,
                    platforms = excluded.platforms, subject = excluded.subject
                """,
                (
                    operation.repository, operation.digest, operation.media_type, operation.kind,
                    operation.artifact_type, operation.size,
                    json.dumps([asdict(p) for p in operation.platforms]), operation.subject,
                    operation.pushed_by, micros(operation.pushed_at),
                ),
            )
        case PutTag():
            _touch_repository(conn, operation.repository, micros(operation.pushed_at))
            conn.execute(
                """
                INSERT INTO tags (repository, name, digest, pushed_by, pushed_at)
                VALUES (?, ?, ?, ?, ?)
                ON CONFLICT (repository, name) DO UPDATE SET
                    digest = excluded.digest, pushed_by = excluded.pushed_by,
                    pushed_at = excluded.pushed_at
                """,
                (operation.repository, operation.tag, operation.digest, operation.pushed_by,
                 micros(operation.pushed_at)),
            )
        case DeleteManifest():
            conn.execute(
                "DELETE FROM tags WHERE repository = ? AND digest = ?",
                (operation.repository, operation.digest),
            )
            conn.execute(
                "DELETE FROM manifests WHERE repository = ? AND digest = ?",
                (operation.repository, operation.digest),
            )
        case DeleteTag():
            conn.execute(
                "DELETE FROM tags WHERE repository = ? AND name = ?",
                (operation.repository, operation.tag),
            )
        case DeleteRepository():
            conn.execute("DELETE FROM repositories WHERE name = ?", (operation.repository,))
        case RecordPull():
            _record_pull(conn, operation)


def _touch_repository(conn: sqlite3.Connection, name: str, at: int) -> None:
    conn.execute(
        """
        INSERT INTO repositories (name, namespace, created_at, updated_at) VALUES (?, ?, ?, ?)
        ON CONFLICT (name) DO UPDATE SET updated_at = max(updated_at, excluded.updated_at)
        """,
        (name, namespace_of(name), at, at),
    )


def _record_pull(conn: sqlite3.Connection, pull: RecordPull) -> None:
    at = micros(pull.at)
    if pull.tag:
        counted = conn.execute(
            "UPDATE tags SET pull_count = pull_count + 1,"
            " last_pulled_at = max(coalesce(last_pulled_at, 0), ?)"
            " WHERE repository = ? AND name = ?",
            (at, pull.repository, pull.tag),
        ).rowcount
    else:
        # A pull by digest counts for the repository when a tag points at that digest, so the
        # platform manifests fetched after an index are not counted twice.
        counted = conn.execute(
            "SELECT count(*) FROM tags WHERE repository = ? AND digest = ?",
            (pull.repository, pull.digest),
        ).fetchone()[0]
    if counted:
        conn.execute(
            "UPDATE repositories SET pull_count = pull_count + 1,"
            " last_pulled_at = max(coalesce(last_pulled_at, 0), ?) WHERE name = ?",
            (at, pull.repository),
        )


def _repository_row(row: sqlite3.Row) -> Row:
    name, namespace, created, updated, pulls, last_pulled, tag_count = row
    return {
        "name": name,
        "namespace": namespace,
        "tag_count": tag_count,
        "pull_count": pulls,
        "created_at": _iso(created),
        "updated_at": _iso(updated),
        "last_pulled_at": _iso(last_pulled),
    }


def _tag_row(repository: str, row: sqlite3.Row, referrers: list[Row]) -> Row:
    (name, digest, media_type, kind, artifact_type, size, platforms, subject, pushed_by,
     pushed_at, pulls, last_pulled) = row
    return {
        "repository": repository,
        "name": name,
        "digest": digest,
        "media_type": media_type,
        "kind": kind,
        "artifact_type": artifact_type,
        "size": size,
        "platforms": json.loads(platforms) if isinstance(platforms, str) else [],
        "subject": subject,
        "referrers": referrers,
        "pushed_by": pushed_by,
        "pushed_at": _iso(pushed_at),
        "pull_count": pulls,
        "last_pulled_at": _iso(last_pulled),
    }


class SqliteActivityStore(SqliteStore):
    migrations = ACTIVITY_MIGRATIONS

    async def record(self, activities: Sequence[Activity]) -> list[Activity]:
        def insert(conn: sqlite3.Connection) -> list[Activity]:
            new = []
            for a in activities:
                cursor = conn.execute(
                    """
                    INSERT OR IGNORE INTO activities (id, type, actor, repository, namespace, tag,
                        digest, time_us, address, user_agent, synthetic, subject, team, details,
                        audience)
                    VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
                    """,
                    (a.id, a.type, a.actor, a.repository, a.namespace, a.tag, a.digest,
                     micros(a.time), a.address, a.user_agent, a.synthetic, a.subject, a.team,
                     json.dumps(a.details), a.audience),
                )
                if cursor.rowcount:
                    new.append(a)
            return new

        return await self.db.write(insert)

    async def search(
        self, where: ActivityFilter, *, before: tuple[int, int] | None, limit: int
    ) -> list[tuple[tuple[int, int], Activity]]:
        sql, args = _search_sql(where, before)
        rows = await self.db.read(lambda conn: conn.execute(sql, (*args, limit)).fetchall())
        return [((row[8], row[0]), _activity(row)) for row in rows]

    async def since(self, sequence: int, limit: int) -> list[tuple[int, Activity]]:
        rows = await self.db.read(
            lambda conn: conn.execute(
                f"SELECT {_ACTIVITY_COLUMNS} FROM activities WHERE seq > ? ORDER BY seq LIMIT ?",
                (sequence, limit),
            ).fetchall()
        )
        return [(row[0], _activity(row)) for row in rows]

    async def last_sequence(self) -> int:
        row = await self.db.read(
            lambda conn: conn.execute("SELECT coalesce(max(seq), 0) FROM activities").fetchone()
        )
        return int(row[0])

    async def dump(self) -> AsyncIterator[Dumped]:
        async for record in _dump(self.db, _ACTIVITY_DUMPED):
            yield record

    async def is_empty(self) -> bool:
        return await self.last_sequence() == 0

    async def load(self, records: Sequence[Dumped]) -> None:
        await _load(self.db, _ACTIVITY_DUMPED, records)


def _search_sql(
    where: ActivityFilter, before: tuple[int, int] | None
) -> tuple[str, list[object]]:
    """The feed query: newest first, walking one index ending in (time_us, seq).

    Without statistics SQLite may pick the index of a filter that matches most rows (type);
    so the most selective filter given drives, in the order repository, actor, namespace,
    type, visible namespaces, and the others are written ``+column``, which keeps SQLite from
    using their indexes (sqlite.org/optoverview.html#disqualifying_where_clause_terms_using_unary_).
    """
    clauses: list[str] = []
    args: list[object] = []
    driving = True

    def term(column: str, condition: str) -> str:
        nonlocal driving
        prefix = "" if driving else "+"
        driving = False
        return f"{prefix}{column} {condition}"

    for column, value in (("repository", where.repository), ("actor", where.actor),
                          ("namespace", where.namespace)):
        if value is not None:
            clauses.append(term(column, "= ?"))
            args.append(value)
    if where.types:
        clauses.append(term("type", f"IN ({','.join('?' * len(where.types))})"))
        args.extend(where.types)
    if where.visible is not None:
        clauses.append("audience = 'namespace'")
        clauses.append(term("namespace", "IN (SELECT value FROM json_each(?))"))
        args.append(json.dumps(sorted(where.visible)))
    if where.since is not None:
        clauses.append("time_us >= ?")
        args.append(micros(where.since))
    until = None if where.until is None else micros(where.until)
    if before is not None:
        clauses.append("(time_us, seq) < (?, ?)")
        args.extend(before)
    # A cursor older than ``until`` already bounds the walk; a second upper bound would make
    # SQLite start the walk at ``until`` and read every row down to the cursor.
    if until is not None and (before is None or before[0] >= until):
        clauses.append("time_us < ?")
        args.append(until)
    sql = (
        f"SELECT {_ACTIVITY_COLUMNS} FROM activities"
        f" {'WHERE ' + ' AND '.join(clauses) if clauses else ''}"
        " ORDER BY time_us DESC, seq DESC LIMIT ?"
    )
    return sql, args


_ACTIVITY_COLUMNS = (
    "seq, id, type, actor, repository, namespace, tag, digest, time_us, address, user_agent,"
    " synthetic, subject, team, details, audience"
)


def _activity(row: sqlite3.Row) -> Activity:
    (_, id_, type_, actor, repository, namespace, tag, digest, time_us, address, user_agent,
     synthetic, subject, team, details, audience) = row
    return Activity(
        id=id_, type=type_, actor=actor, repository=repository, namespace=namespace, tag=tag,
        digest=digest, time=from_micros(time_us), address=address,
        user_agent=user_agent, synthetic=bool(synthetic), subject=subject, team=team,
        details=json.loads(details), audience=audience,
    )
