"""The search index on SQLite (``search.db``): plain tables plus FTS5 trigram indexes.

Names are matched through FTS5's trigram tokenizer (sqlite.org/fts5.html#the_trigram_tokenizer),
which finds any substring of three characters or more; shorter texts use B-tree range scans
on the name columns (prefix matches only, see services.search.query). The FTS tables are
contentless (``content=''``): they hold only the index, keyed by the row id of the table they
index, and are kept in step by this adapter (a delete must repeat the indexed text).

One statement answers a search: candidates from the FTS index (or the range scan), the caller's
namespaces and the filters as WHERE terms, ranked by (match class, -popularity, -recency, id).
That tuple is also the keyset: the next page starts after the last position, so the caller's
visibility never leaves a page short.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Sequence
from typing import Any

from services.core.reference import namespace_of
from services.core.sqlite import SqliteStore
from services.core.times import from_micros, micros
from services.ingest.models import (
    DeleteManifest,
    DeleteRepository,
    DeleteTag,
    PutManifest,
    PutTag,
    RecordPull,
)
from services.search.adapters.sqlite_search import ranked_rows
from services.search.models import (
    IndexChange,
    IndexedRepository,
    Position,
    PutFindings,
    PutNamespace,
    Query,
    platform_fields,
)
from services.search.ports import Hit
from services.search.query import last_component

__all__ = ["MIGRATIONS", "SqliteSearchIndex"]

REBUILD_CACHE_KIB = 64 * 1024
READER_MMAP_BYTES = 1 << 30

MIGRATIONS = (
    """
    CREATE TABLE namespaces (
        id          INTEGER PRIMARY KEY,
        name        TEXT NOT NULL UNIQUE,
        description TEXT NOT NULL DEFAULT '',
        updated_at  INTEGER NOT NULL,
        neg_popularity INTEGER GENERATED ALWAYS AS (0) VIRTUAL,
        neg_updated    INTEGER GENERATED ALWAYS AS (-updated_at) VIRTUAL
    );
    CREATE VIRTUAL TABLE namespaces_fts USING fts5(name, content='', tokenize='trigram');
    CREATE TABLE repositories (
        id         INTEGER PRIMARY KEY,
        name       TEXT NOT NULL UNIQUE,
        namespace  TEXT NOT NULL,
        short      TEXT NOT NULL,
        tag_count  INTEGER NOT NULL DEFAULT 0,
        pulls      INTEGER NOT NULL DEFAULT 0,
        stars      INTEGER NOT NULL DEFAULT 0,
        created_at INTEGER NOT NULL,
        updated_at INTEGER NOT NULL,
        -- The ranking after the match class, ascending (services/search/adapters/sqlite_search.py).
        neg_popularity INTEGER GENERATED ALWAYS AS (-(pulls + stars)) VIRTUAL,
        neg_updated    INTEGER GENERATED ALWAYS AS (-updated_at) VIRTUAL
    );
    CREATE INDEX repositories_short ON repositories (short);
    CREATE INDEX repositories_namespace ON repositories (namespace);
    CREATE INDEX repositories_rank ON repositories (neg_popularity, neg_updated, id);
    CREATE VIRTUAL TABLE repositories_fts USING fts5(name, content='', tokenize='trigram');
    CREATE TABLE manifests (
        repository    TEXT NOT NULL,
        digest        TEXT NOT NULL,
        kind          TEXT NOT NULL,
        artifact_type TEXT,
        platforms     TEXT NOT NULL,
        PRIMARY KEY (repository, digest)
    ) WITHOUT ROWID;
    CREATE TABLE tags (
        id            INTEGER PRIMARY KEY,
        repository_id INTEGER NOT NULL,
        name          TEXT NOT NULL,
        lname         TEXT NOT NULL,
        digest        TEXT NOT NULL,
        kind          TEXT,
        artifact_type TEXT,
        platforms     TEXT NOT NULL DEFAULT '[]',
        pushed_by     TEXT,
        pushed_at     INTEGER NOT NULL,
        pulls         INTEGER NOT NULL DEFAULT 0,
        -- The repository's pulls + stars, negated: a tag ranks by its repository's popularity.
        neg_popularity INTEGER NOT NULL DEFAULT 0,
        neg_updated    INTEGER GENERATED ALWAYS AS (-pushed_at) VIRTUAL
    );
    CREATE UNIQUE INDEX tags_name ON tags (repository_id, lname, name);
    CREATE INDEX tags_lname ON tags (lname, neg_popularity, neg_updated, id);
    CREATE INDEX tags_digest ON tags (digest);
    CREATE INDEX tags_rank ON tags (neg_popularity, neg_updated, id);
    CREATE VIRTUAL TABLE tags_fts USING fts5(name, content='', tokenize='trigram');
    -- Scan results by manifest digest (content-addressed: the same in every repository), and
    -- which image manifests an index holds, so an index's tags find its platforms' findings.
    CREATE TABLE findings (
        digest  TEXT PRIMARY KEY,
        summary TEXT
    ) WITHOUT ROWID;
    CREATE TABLE vulnerabilities (
        id     TEXT NOT NULL,
        digest TEXT NOT NULL,
        PRIMARY KEY (id, digest)
    ) WITHOUT ROWID;
    CREATE INDEX vulnerabilities_digest ON vulnerabilities (digest);
    CREATE TABLE children (
        parent TEXT NOT NULL,
        child  TEXT NOT NULL,
        PRIMARY KEY (child, parent)
    ) WITHOUT ROWID;
    CREATE INDEX children_parent ON children (parent);
    CREATE TABLE stars (
        user       TEXT NOT NULL,
        repository TEXT NOT NULL,
        starred_at INTEGER NOT NULL,
        PRIMARY KEY (user, repository)
    ) WITHOUT ROWID;
    CREATE INDEX stars_repository ON stars (repository);
    CREATE TABLE applied_events (
        id         TEXT PRIMARY KEY,
        applied_at REAL NOT NULL
    ) WITHOUT ROWID;
    """,
    """
    -- Covering indexes for services/search/adapters/sqlite_search.py: repo:tag queries read
    -- tags by repository and name, with the rank, from the index alone; the repositories they
    -- start from are narrowed to the caller's namespaces without reading rows, by short name
    -- or, for a caller who sees few namespaces, namespace by namespace.
    CREATE INDEX tags_repository_rank ON tags (repository_id, lname, neg_popularity, neg_updated);
    DROP INDEX repositories_short;
    CREATE INDEX repositories_short ON repositories (short, namespace);
    DROP INDEX repositories_namespace;
    CREATE INDEX repositories_namespace ON repositories (namespace, name, short);
    """,
)


class SqliteSearchIndex(SqliteStore):
    # synchronous NORMAL (Database's default): a lost tail is re-fed by the log, a lost file
    # rebuilt by reindex.
    migrations = MIGRATIONS

    async def open(self) -> None:
        await super().open()

        def tune(conn: sqlite3.Connection) -> None:
            # Searches read rows at random places of a file of hundreds of MB: mapped pages
            # and a 64 MiB cache save a read() per row (sqlite.org/mmap.html).
            conn.execute(f"PRAGMA mmap_size = {READER_MMAP_BYTES}")
            conn.execute(f"PRAGMA cache_size = -{REBUILD_CACHE_KIB}")

        await self.db.read(tune)

    # writing -------------------------------------------------------------------------------

    async def apply(self, changes: Sequence[tuple[str, Sequence[IndexChange]]]) -> int:
        def work(conn: sqlite3.Connection) -> int:
            now = time.time()
            new = 0
            for event_id, operations in changes:
                if not conn.execute(
                    "INSERT OR IGNORE INTO applied_events (id, applied_at) VALUES (?, ?)",
                    (event_id, now),
                ).rowcount:
                    continue
                new += 1
                for operation in operations:
                    _apply(conn, operation)
            return new

        return await self.db.write(work)

    async def clear(self) -> None:
        def work(conn: sqlite3.Connection) -> None:
            # Findings and stars do not come from the catalog: they stay.
            conn.execute("DELETE FROM children")
            for table in ("tags", "manifests", "repositories", "namespaces"):
                conn.execute(f"DELETE FROM {table}")
                if table != "manifests":
                    conn.execute(f"INSERT INTO {table}_fts ({table}_fts) VALUES ('delete-all')")

        await self.db.write(work)

    async def load(self, repositories: Sequence[IndexedRepository]) -> None:
        def work(conn: sqlite3.Connection) -> None:
            # A rebuild writes a million index entries at random places of five B-trees and
            # the FTS segments: 64 MiB of page cache instead of 2 keeps them from thrashing.
            conn.execute(f"PRAGMA cache_size = -{REBUILD_CACHE_KIB}")
            for repository in repositories:
                _drop_repository(conn, repository.name)
            tags: list[tuple[Any, ...]] = []
            manifests: dict[tuple[str, str], tuple[Any, ...]] = {}
            for repository in repositories:
                namespace = namespace_of(repository.name)
                _ensure_namespace(conn, namespace, micros(repository.created_at))
                repository_id, stars = _insert_repository(
                    conn, repository.name, micros(repository.created_at),
                    micros(repository.updated_at), pulls=repository.pulls,
                    tag_count=len(repository.tags))
                for tag in repository.tags:
                    platforms = json.dumps(platform_fields(tag.platforms))
                    tags.append((repository_id, tag.name, tag.name.lower(), tag.digest, tag.kind,
                                 tag.artifact_type, platforms, tag.pushed_by,
                                 micros(tag.pushed_at), tag.pulls,
                                 -(repository.pulls + stars)))
                    manifests[repository.name, tag.digest] = (
                        repository.name, tag.digest, tag.kind or "other", tag.artifact_type,
                        platforms)
            first = _next_id(conn, "tags")
            conn.executemany(
                "INSERT INTO tags (id, repository_id, name, lname, digest, kind, artifact_type,"
                " platforms, pushed_by, pushed_at, pulls, neg_popularity)"
                " VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
                [(first + i, *row) for i, row in enumerate(tags)],
            )
            conn.executemany("INSERT INTO tags_fts (rowid, name) VALUES (?, ?)",
                             [(first + i, row[2]) for i, row in enumerate(tags)])
            conn.executemany(
                "INSERT OR REPLACE INTO manifests (repository, digest, kind, artifact_type,"
                " platforms) VALUES (?, ?, ?, ?, ?)", manifests.values())
            conn.executemany(
                "INSERT OR IGNORE INTO children (parent, child) VALUES (?, ?)",
                [(tag.digest, p.digest) for r in repositories for tag in r.tags
                 for p in tag.platforms])

        await self.db.write(work)

    async def add_namespaces(self, names: dict[str, str]) -> None:
        def work(conn: sqlite3.Connection) -> None:
            now = micros_now()
            for name, description in names.items():
                _put_namespace(conn, name, description, now)

        await self.db.write(work)

    # stars ---------------------------------------------------------------------------------

    async def star(self, user: str, repository: str) -> bool:
        def work(conn: sqlite3.Connection) -> bool:
            if conn.execute("SELECT 1 FROM repositories WHERE name = ?",
                            (repository,)).fetchone() is None:
                return False
            if conn.execute(
                "INSERT OR IGNORE INTO stars (user, repository, starred_at) VALUES (?, ?, ?)",
                (user, repository, micros_now()),
            ).rowcount:
                conn.execute("UPDATE repositories SET stars = stars + 1 WHERE name = ?",
                             (repository,))
                _spread_popularity(conn, "name = ?", repository)
            return True

        return await self.db.write(work)

    async def unstar(self, user: str, repository: str) -> None:
        def work(conn: sqlite3.Connection) -> None:
            if conn.execute("DELETE FROM stars WHERE user = ? AND repository = ?",
                            (user, repository)).rowcount:
                conn.execute("UPDATE repositories SET stars = stars - 1 WHERE name = ?",
                             (repository,))
                _spread_popularity(conn, "name = ?", repository)

        await self.db.write(work)

    async def starred(
        self, user: str, *, visible: frozenset[str] | None, after: str | None, limit: int
    ) -> list[dict[str, Any]]:
        sql = (
            "SELECT r.name, r.namespace, r.pulls, r.stars, r.updated_at, s.starred_at"
            " FROM stars s JOIN repositories r ON r.name = s.repository"
            " WHERE s.user = ? AND s.repository > ?"
        )
        args: list[object] = [user, after or ""]
        if visible is not None:
            sql += " AND r.namespace IN (SELECT value FROM json_each(?))"
            args.append(json.dumps(sorted(visible)))
        sql += " ORDER BY s.repository LIMIT ?"
        rows = await self.db.read(lambda conn: conn.execute(sql, (*args, limit)).fetchall())
        return [
            {"repository": name, "namespace": namespace, "pulls": pulls, "stars": stars,
             "updated": _iso(updated), "starred_at": _iso(starred)}
            for name, namespace, pulls, stars, updated, starred in rows
        ]

    async def size_bytes(self) -> int:
        def work(conn: sqlite3.Connection) -> int:
            pages = conn.execute("PRAGMA page_count").fetchone()[0]
            free = conn.execute("PRAGMA freelist_count").fetchone()[0]
            return int((pages - free) * conn.execute("PRAGMA page_size").fetchone()[0])

        return await self.db.read(work)

    # searching -----------------------------------------------------------------------------

    async def search(
        self,
        query: Query,
        *,
        visible: frozenset[str] | None,
        after: Position | None,
        limit: int,
    ) -> list[Hit]:
        def work(conn: sqlite3.Connection) -> list[Hit]:
            rows = ranked_rows(conn, query, visible=visible, after=after, limit=limit)
            hits = [((row[0], row[1], row[2], row[3]), _RENDER[query.type](row)) for row in rows]
            if query.type in {"tag", "vulnerability"}:
                _add_findings(conn, [item for _, item in hits],
                              query.text if query.type == "vulnerability" else None)
            return hits

        return await self.db.read(work)


def micros_now() -> int:
    return int(time.time() * 1_000_000)


def _iso(value: int | None) -> str | None:
    moment = from_micros(value)
    return None if moment is None else moment.isoformat().replace("+00:00", "Z")


_MATCH_NAMES = ("exact", "prefix", "substring")


def _render_repository(row: sqlite3.Row) -> dict[str, Any]:
    return {"type": "repository", "match": _MATCH_NAMES[row["match_class"]],
            "repository": row["name"], "namespace": row["namespace"], "tag": None,
            "digest": None, "pulls": row["pulls"], "stars": row["stars"],
            "updated": _iso(row["updated_at"])}


def _render_namespace(row: sqlite3.Row) -> dict[str, Any]:
    return {"type": "namespace", "match": _MATCH_NAMES[row["match_class"]],
            "namespace": row["name"], "repository": None, "tag": None, "digest": None,
            "description": row["description"], "updated": _iso(row["updated_at"])}


def _render_tag(row: sqlite3.Row, type_: str = "tag") -> dict[str, Any]:
    return {"type": type_, "match": _MATCH_NAMES[row["match_class"]],
            "repository": row["repository"], "namespace": row["namespace"], "tag": row["tag"],
            "digest": row["digest"], "kind": row["kind"], "artifact_type": row["artifact_type"],
            "platforms": json.loads(row["platforms"]), "pushed_by": row["pushed_by"],
            "pulls": row["pulls"], "stars": row["stars"], "updated": _iso(row["pushed_at"])}


def _render_vulnerability(row: sqlite3.Row) -> dict[str, Any]:
    return _render_tag(row, "vulnerability")


_RENDER = {"repository": _render_repository, "namespace": _render_namespace, "tag": _render_tag,
           "vulnerability": _render_vulnerability}


def _add_findings(conn: sqlite3.Connection, items: list[dict[str, Any]],
                  matching: str | None) -> None:
    """Each tag's ``vulnerability_summary`` (its image's, or its platforms' added up; null
    when nothing was scanned) and, for a vulnerability search, the ids that matched."""
    digests = sorted({item["digest"] for item in items})
    if not digests:
        return
    marks = ",".join("?" * len(digests))
    parts: dict[str, set[str]] = {digest: {digest} for digest in digests}
    for parent, child in conn.execute(
        f"SELECT parent, child FROM children WHERE parent IN ({marks})", digests
    ):
        parts[parent].add(child)
    everything = sorted(set().union(*parts.values()))
    marks = ",".join("?" * len(everything))
    summaries = {digest: json.loads(summary) for digest, summary in conn.execute(
        f"SELECT digest, summary FROM findings WHERE digest IN ({marks})"
        " AND summary IS NOT NULL", everything)}
    ids: dict[str, set[str]] = {}
    if matching is not None:
        for vulnerability, digest in conn.execute(
            f"SELECT id, digest FROM vulnerabilities WHERE digest IN ({marks})"
            " AND id >= ? AND id < ?", [*everything, matching, matching + "\U0010ffff"]
        ):
            ids.setdefault(digest, set()).add(vulnerability)
    for item in items:
        known = [summaries[d] for d in sorted(parts[item["digest"]]) if d in summaries]
        item["vulnerability_summary"] = (
            {label: sum(s.get(label, 0) for s in known) for label in known[0]} if known else None)
        if matching is not None:
            item["vulnerabilities"] = sorted(set().union(
                *(ids.get(d, set()) for d in parts[item["digest"]])))


# applying changes ---------------------------------------------------------------------------


def _apply(conn: sqlite3.Connection, change: IndexChange) -> None:
    match change:
        case PutNamespace():
            _put_namespace(conn, change.name, change.description, micros(change.at))
        case PutFindings():
            _put_findings(conn, change)
        case PutManifest():
            _touch_repository(conn, change.repository, micros(change.pushed_at))
            conn.executemany("INSERT OR IGNORE INTO children (parent, child) VALUES (?, ?)",
                             [(change.digest, p.digest) for p in change.platforms])
            platforms = json.dumps(platform_fields(change.platforms))
            conn.execute(
                "INSERT OR REPLACE INTO manifests (repository, digest, kind, artifact_type,"
                " platforms) VALUES (?, ?, ?, ?, ?)",
                (change.repository, change.digest, change.kind, change.artifact_type, platforms),
            )
        case PutTag():
            _put_tag(conn, change)
        case DeleteTag():
            _delete_tags(conn, "t.lname = lower(?2) AND t.name = ?2",
                         (change.repository, change.tag))
        case DeleteManifest():
            _delete_tags(conn, "t.digest = ?2", (change.repository, change.digest))
            conn.execute("DELETE FROM manifests WHERE repository = ? AND digest = ?",
                         (change.repository, change.digest))
        case DeleteRepository():
            _drop_repository(conn, change.repository)
            conn.execute("DELETE FROM stars WHERE repository = ?", (change.repository,))
        case RecordPull():
            _record_pull(conn, change)


def _put_findings(conn: sqlite3.Connection, findings: PutFindings) -> None:
    summary = None if findings.summary is None else json.dumps(findings.summary)
    conn.execute("INSERT OR REPLACE INTO findings (digest, summary) VALUES (?, ?)",
                 (findings.digest, summary))
    conn.execute("DELETE FROM vulnerabilities WHERE digest = ?", (findings.digest,))
    conn.executemany("INSERT OR IGNORE INTO vulnerabilities (id, digest) VALUES (?, ?)",
                     [(vulnerability, findings.digest) for vulnerability in
                      findings.vulnerabilities])


def _put_namespace(conn: sqlite3.Connection, name: str, description: str, at: int) -> None:
    found = conn.execute("SELECT id FROM namespaces WHERE name = ?", (name,)).fetchone()
    if found is None:
        new_id = conn.execute(
            "INSERT INTO namespaces (name, description, updated_at) VALUES (?, ?, ?)",
            (name, description, at),
        ).lastrowid
        conn.execute("INSERT INTO namespaces_fts (rowid, name) VALUES (?, ?)", (new_id, name))
    else:
        conn.execute("UPDATE namespaces SET description = ?, updated_at = max(updated_at, ?)"
                     " WHERE id = ?", (description, at, found[0]))


def _ensure_namespace(conn: sqlite3.Connection, name: str, at: int) -> None:
    """A repository implies its namespace; the global one ("") is no search result."""
    if name and conn.execute("SELECT 1 FROM namespaces WHERE name = ?",
                             (name,)).fetchone() is None:
        _put_namespace(conn, name, "", at)


def _insert_repository(conn: sqlite3.Connection, name: str, created: int, updated: int, *,
                       pulls: int = 0, tag_count: int = 0) -> tuple[int, int]:
    """The new repository's id, and its stars (kept across a rebuild)."""
    stars = conn.execute("SELECT count(*) FROM stars WHERE repository = ?", (name,)).fetchone()[0]
    repository_id = conn.execute(
        "INSERT INTO repositories (name, namespace, short, tag_count, pulls, stars, created_at,"
        " updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        (name, namespace_of(name), last_component(name), tag_count, pulls, stars, created,
         updated),
    ).lastrowid
    conn.execute("INSERT INTO repositories_fts (rowid, name) VALUES (?, ?)",
                 (repository_id, name))
    return int(repository_id or 0), int(stars)


def _touch_repository(conn: sqlite3.Connection, name: str, at: int) -> int:
    found = conn.execute("SELECT id FROM repositories WHERE name = ?", (name,)).fetchone()
    if found is None:
        _ensure_namespace(conn, namespace_of(name), at)
        return _insert_repository(conn, name, at, at)[0]
    conn.execute("UPDATE repositories SET updated_at = max(updated_at, ?) WHERE id = ?",
                 (at, found[0]))
    return int(found[0])


def _put_tag(conn: sqlite3.Connection, tag: PutTag) -> None:
    repository_id = _touch_repository(conn, tag.repository, micros(tag.pushed_at))
    manifest = conn.execute(
        "SELECT kind, artifact_type, platforms FROM manifests WHERE repository = ? AND digest = ?",
        (tag.repository, tag.digest),
    ).fetchone()
    kind, artifact_type, platforms = manifest if manifest is not None else (None, None, "[]")
    updated = conn.execute(
        "UPDATE tags SET digest = ?, kind = ?, artifact_type = ?, platforms = ?, pushed_by = ?,"
        " pushed_at = ? WHERE repository_id = ? AND lname = ? AND name = ?",
        (tag.digest, kind, artifact_type, platforms, tag.pushed_by, micros(tag.pushed_at),
         repository_id, tag.tag.lower(), tag.tag),
    ).rowcount
    if updated:
        return  # a tag move: same name, new digest; the name index is unchanged
    tag_id = conn.execute(
        "INSERT INTO tags (repository_id, name, lname, digest, kind, artifact_type, platforms,"
        " pushed_by, pushed_at, neg_popularity) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?,"
        " (SELECT neg_popularity FROM repositories WHERE id = ?))",
        (repository_id, tag.tag, tag.tag.lower(), tag.digest, kind, artifact_type, platforms,
         tag.pushed_by, micros(tag.pushed_at), repository_id),
    ).lastrowid
    conn.execute("INSERT INTO tags_fts (rowid, name) VALUES (?, ?)", (tag_id, tag.tag.lower()))
    conn.execute("UPDATE repositories SET tag_count = tag_count + 1 WHERE id = ?",
                 (repository_id,))


def _delete_tags(conn: sqlite3.Connection, condition: str, args: tuple[str, str]) -> None:
    rows = conn.execute(
        "SELECT t.id, t.lname, t.repository_id FROM tags t JOIN repositories r"
        f" ON r.id = t.repository_id WHERE r.name = ?1 AND {condition}",
        args,
    ).fetchall()
    for tag_id, lname, repository_id in rows:
        conn.execute("INSERT INTO tags_fts (tags_fts, rowid, name) VALUES ('delete', ?, ?)",
                     (tag_id, lname))
        conn.execute("DELETE FROM tags WHERE id = ?", (tag_id,))
        conn.execute("UPDATE repositories SET tag_count = tag_count - 1 WHERE id = ?",
                     (repository_id,))


def _drop_repository(conn: sqlite3.Connection, name: str) -> None:
    found = conn.execute("SELECT id FROM repositories WHERE name = ?", (name,)).fetchone()
    if found is None:
        return
    repository_id = found[0]
    for tag_id, lname in conn.execute("SELECT id, lname FROM tags WHERE repository_id = ?",
                                      (repository_id,)).fetchall():
        conn.execute("INSERT INTO tags_fts (tags_fts, rowid, name) VALUES ('delete', ?, ?)",
                     (tag_id, lname))
    conn.execute("DELETE FROM tags WHERE repository_id = ?", (repository_id,))
    conn.execute("DELETE FROM manifests WHERE repository = ?", (name,))
    conn.execute("INSERT INTO repositories_fts (repositories_fts, rowid, name)"
                 " VALUES ('delete', ?, ?)", (repository_id, name))
    conn.execute("DELETE FROM repositories WHERE id = ?", (repository_id,))


def _record_pull(conn: sqlite3.Connection, pull: RecordPull) -> None:
    """Counted as the catalog counts them: by tag, or by a digest some tag points at."""
    found = conn.execute("SELECT id FROM repositories WHERE name = ?",
                         (pull.repository,)).fetchone()
    if found is None:
        return
    if pull.tag:
        counted = conn.execute("UPDATE tags SET pulls = pulls + 1 WHERE repository_id = ?"
                               " AND lname = ? AND name = ?",
                               (found[0], pull.tag.lower(), pull.tag)).rowcount
    else:
        counted = conn.execute("SELECT count(*) FROM tags WHERE repository_id = ? AND digest = ?",
                               (found[0], pull.digest)).fetchone()[0]
    if counted:
        conn.execute("UPDATE repositories SET pulls = pulls + 1 WHERE id = ?", (found[0],))
        _spread_popularity(conn, "id = ?", found[0])


def _spread_popularity(conn: sqlite3.Connection, where: str, key: object) -> None:
    """Tags rank by their repository's popularity: copy it to them after a pull or a star."""
    conn.execute(
        "UPDATE tags SET neg_popularity = r.neg_popularity FROM (SELECT id, neg_popularity"
        f" FROM repositories WHERE {where}) AS r WHERE tags.repository_id = r.id",
        (key,),
    )


def _next_id(conn: sqlite3.Connection, table: str) -> int:
    return int(conn.execute(f"SELECT coalesce(max(id), 0) + 1 FROM {table}").fetchone()[0])
