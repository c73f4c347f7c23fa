"""Ranked search over search.db: one query per match class, each choosing how to find its rows.

Results rank by (match class, neg_popularity, neg_updated, id), ascending; that tuple is also
the keyset cursor. The classes are read in turn, exact (0), prefix (1), substring (2), each
until the page is full. Within a class two plans exist, and the cheaper one is taken:

- *candidates*: the rows that can match come from an index (an equality or range on a name
  column, or the FTS5 trigram index, sqlite.org/fts5.html#the_trigram_tokenizer), are checked
  and sorted. The cost grows with the number of candidates.
- *walk*: the table's rank index is walked in ranking order and each row checked, stopping at
  the page size. The cost grows with the rows skipped, so it wins when matches are dense.

Candidates are counted up to ``CAP`` first (index-only and cheap); at ``CAP`` the class walks,
at most ``WALK`` rows: candidates of another class (``latest`` is an exact tag name ten
thousand times and a substring nowhere) must not send a class through the whole index.
The caller's namespaces are a WHERE term in both plans, never a filter after the LIMIT, so a
page is full whenever that many visible matches exist.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass, field, replace

from services.search.models import Position, Query
from services.search.query import MIN_SUBSTRING

__all__ = ["ranked_rows"]

Sql = tuple[str, list[object]]
# Above every character a name can hold: ``name < text || _TOP`` bounds a prefix range.
_TOP = "\U0010ffff"
_KIND_FILTER = {"image": ("image", "index")}
# Candidates counted before a class walks instead. About sqrt(page * rows) balances the two
# plans' worst cases for 10⁵ repositories and 10⁶ tags (see bench/search.py).
REPOSITORY_CAP = 1500
TAG_CAP = 5000
# Rows of the rank index a class reads before it gives up walking and sorts its candidates.
WALK = 5000
# Reading candidate ids costs too: a caller who sees a small share of the namespaces has the
# cap of one who sees this share.
MIN_SHARE = 0.25


@dataclass
class Shape:
    """How to read one kind of result (see the module docstring)."""

    source: str  # FROM clause; alias ``x`` is the ranked table
    walk: str | None  # the table whose ``<table>_rank`` index may be walked (None: never)
    columns: str  # what a row renders from
    match: Sql  # SQL for the match class of a row (NULL: no match)
    tiers: dict[int, Sql]  # per class, the ids of the rows that may be in it
    cap: int  # ignored without ``walk``
    namespace: str  # the column holding a row's namespace
    where: list[str] = field(default_factory=list)
    args: list[object] = field(default_factory=list)


def ranked_rows(
    conn: sqlite3.Connection,
    query: Query,
    *,
    visible: frozenset[str] | None,
    after: Position | None,
    limit: int,
) -> list[sqlite3.Row]:
    """The page after ``after``; each row starts with its position (4 columns)."""
    shape = _SHAPES[query.type](query) if query.type in _SHAPES else None
    if shape is None:
        return []
    if visible is not None:
        shape.where.append(f"+{shape.namespace} IN (SELECT value FROM json_each(?))")
        shape.args.append(json.dumps(sorted(visible)))
    if query.namespace is not None:
        shape.where.append(f"+{shape.namespace} = ?")
        shape.args.append(query.namespace)
    rows: list[sqlite3.Row] = []
    cap = None if shape.walk is None else _cap(conn, shape.cap, visible)
    # Each class's candidates are exactly the rows of that class or a better one, so once the
    # better classes' candidates are known, a class is its candidates without them and its
    # rows need no match test. ``better`` is None when some were too many to keep.
    start = after[0] if after else 0
    better: set[int] | None = set() if start == 0 else None
    for match_class in range(start, 3):
        if match_class not in shape.tiers:
            continue
        ids, id_args = shape.tiers[match_class]
        found = _candidates(conn, ids, id_args, cap)
        only = None if found is None or better is None else [i for i in found if i not in better]
        rows.extend(_tier(conn, shape, match_class, found if only is None else only,
                          tested=only is None, after=after, limit=limit - len(rows)))
        better = None if found is None or better is None else better.union(found)
        if len(rows) >= limit:
            break
    return rows


def _cap(conn: sqlite3.Connection, cap: int, visible: frozenset[str] | None) -> int:
    """A walk skips the rows the caller may not see too: the fewer namespaces they see, the
    more candidates it takes before walking is the cheaper plan."""
    if visible is None:
        return cap
    namespaces = conn.execute("SELECT count(*) FROM namespaces").fetchone()[0]
    share = min(1.0, len(visible) / max(1, namespaces))
    return int(cap / max(share, MIN_SHARE))


def _candidates(
    conn: sqlite3.Connection, ids: str, args: list[object], cap: int | None
) -> list[int] | None:
    """The candidate ids, or None when there are ``cap`` or more."""
    limit = "" if cap is None else f" LIMIT {cap}"
    # UNION ALL streams where UNION would gather every row first; repeats are dropped here.
    found = [row[0] for row in conn.execute(ids + limit, args)]
    if cap is not None and len(found) >= cap:
        return None
    return list(dict.fromkeys(found))


def _tier(conn: sqlite3.Connection, shape: Shape, match_class: int,
          candidates: list[int] | None, *, tested: bool, after: Position | None,
          limit: int) -> list[sqlite3.Row]:
    """``tested``: the candidates may hold rows of better classes, so test each row's match."""
    match, match_args = shape.match
    where = [f"{match} = {match_class}", *shape.where]
    args = [*match_args, *shape.args]
    if candidates is not None and not tested:
        where, args = list(shape.where), list(shape.args)
    since: list[object] = []
    if after is not None and after[0] == match_class:
        where.append("(x.neg_popularity, x.neg_updated, x.id) > (?, ?, ?)")
        since = list(after[1:])
        args.extend(since)
    ids, id_args = shape.tiers[match_class]
    if candidates is not None or shape.walk is None:  # (no walk: never capped)
        return _select(conn, shape, match_class, "json_each(?) AS candidate",
                       where=["x.id = candidate.value", *where],
                       args=[json.dumps(candidates or []), *args], limit=limit)
    # Many candidates: walk the rank index, a bounded stretch of it. Dense matches fill the
    # page within it; if they do not, the candidates are sorted after all.
    walk = (f"(SELECT id FROM {shape.walk} INDEXED BY {shape.walk}_rank"
            f" {'WHERE (neg_popularity, neg_updated, id) > (?, ?, ?)' if since else ''}"
            f" ORDER BY neg_popularity, neg_updated, id LIMIT {WALK}) AS walked")
    rows = _select(conn, shape, match_class, walk, where=["x.id = walked.id", *where],
                   args=[*since, *args], limit=limit)
    if len(rows) == limit:
        return rows
    return _select(conn, shape, match_class, f"(SELECT DISTINCT id FROM ({ids})) AS candidate",
                   where=["x.id = candidate.id", *where], args=[*id_args, *args], limit=limit)


def _select(conn: sqlite3.Connection, shape: Shape, match_class: int, driver: str, *,
            where: list[str], args: list[object], limit: int) -> list[sqlite3.Row]:
    # CROSS JOIN: the driver's rows are the outer loop, whatever SQLite guesses their number.
    # The sort carries positions only; the page's rows are read afterwards, by id.
    ranked = (f"SELECT x.neg_popularity, x.neg_updated, x.id FROM {driver}"
              f" CROSS JOIN {shape.source} WHERE {' AND '.join(where)}"
              " ORDER BY +x.neg_popularity, +x.neg_updated, +x.id LIMIT ?")
    sql = (f"SELECT {match_class} AS match_class, x.neg_popularity, x.neg_updated, x.id,"
           f" {shape.columns} FROM ({ranked}) AS page CROSS JOIN {shape.source}"
           " WHERE x.id = page.id ORDER BY page.neg_popularity, page.neg_updated, page.id")
    return list(conn.execute(sql, [*args, limit]).fetchall())


def _class_sql(names: Sequence[str], text: str) -> Sql:
    """SQL for services.search.query.classify: names[0] is the full name."""
    if not text:
        return "0", []
    args: list[object] = []
    exact = " OR ".join(f"{name} = ?" for name in names)
    args.extend([text] * len(names))
    prefix = " OR ".join(f"substr({name}, 1, ?) = ?" for name in names)
    for _ in names:
        args.extend([len(text), text])
    substring = f"WHEN instr({names[0]}, ?) > 0 THEN 2 " if len(text) >= MIN_SUBSTRING else ""
    if substring:
        args.append(text)
    return f"(CASE WHEN {exact} THEN 0 WHEN {prefix} THEN 1 {substring}END)", args


def _name_tiers(table: str, columns: Sequence[str], text: str) -> dict[int, Sql]:
    """Ids of ``table`` rows whose ``columns`` equal, start with, or (FTS) hold ``text``."""
    equal = " UNION ALL ".join(f"SELECT id FROM {table} WHERE {c} = ?" for c in columns)
    starts = " UNION ALL ".join(f"SELECT id FROM {table} WHERE {c} >= ? AND {c} < ?"
                                for c in columns)
    tiers: dict[int, Sql] = {
        0: (equal, [text] * len(columns)),
        1: (starts, [v for _ in columns for v in (text, text + _TOP)]),
    }
    if len(text) >= MIN_SUBSTRING:
        tiers[2] = (f"SELECT rowid AS id FROM {table}_fts WHERE {table}_fts MATCH ?",
                    [_phrase(text)])
    return tiers


def _phrase(text: str) -> str:
    """An FTS5 string literal: the text as one phrase, quotes doubled (fts5.html#fts5_strings)."""
    return '"' + text.replace('"', '""') + '"'


def _kinds(query: Query) -> tuple[str, ...]:
    assert query.artifact_type is not None  # noqa: S101 - callers check
    return _KIND_FILTER.get(query.artifact_type, (query.artifact_type,))


def _repositories(query: Query) -> Shape:
    shape = Shape(
        source="repositories AS x",
        walk="repositories",
        columns="x.name, x.namespace, x.pulls, x.stars, x.updated_at",
        match=_class_sql(("x.name", "x.short"), query.text),
        tiers=_name_tiers("repositories", ("name", "short"), query.text),
        cap=REPOSITORY_CAP,
        namespace="x.namespace",
        where=["x.tag_count > 0"],
    )
    if query.artifact_type is not None:
        kinds = _kinds(query)
        shape.where.append("EXISTS (SELECT 1 FROM tags t WHERE t.repository_id = x.id"
                           f" AND t.kind IN ({','.join('?' * len(kinds))}))")
        shape.args.extend(kinds)
    return shape


def _namespaces(query: Query) -> Shape:
    # Namespaces are few: their candidates are always read, never walked.
    return Shape(
        source="namespaces AS x",
        walk=None,
        columns="x.name, x.name AS namespace, x.description, x.updated_at",
        match=_class_sql(("x.name",), query.text),
        tiers=_name_tiers("namespaces", ("name",), query.text),
        cap=REPOSITORY_CAP,
        namespace="x.name",
    )


_TAG_COLUMNS = ("r.name AS repository, r.namespace AS namespace, x.name AS tag, x.digest,"
                " x.kind, x.artifact_type, x.platforms, x.pushed_by, x.pushed_at, x.pulls,"
                " r.stars")


def _tags(query: Query) -> Shape:
    if query.digest is not None:
        match: Sql = ("(CASE WHEN x.digest = ? THEN 0 ELSE 1 END)", [query.digest])
        tiers: dict[int, Sql] = {
            0: ("SELECT id FROM tags WHERE digest = ?", [query.digest]),
            1: ("SELECT id FROM tags WHERE digest >= ? AND digest < ?",
                [query.digest, query.digest + _TOP]),
        }
    elif query.repository is not None and query.tag is not None:
        match, tiers = _repository_tag(query.repository, query.tag)
    else:
        match, tiers = _tag_text(query.text)
    shape = Shape(
        source="tags AS x JOIN repositories AS r ON r.id = x.repository_id",
        walk="tags",
        columns=_TAG_COLUMNS,
        match=match,
        tiers=tiers,
        cap=TAG_CAP,
        namespace="r.namespace",
    )
    if query.artifact_type is not None:
        kinds = _kinds(query)
        shape.where.append(f"x.kind IN ({','.join('?' * len(kinds))})")
        shape.args.extend(kinds)
    return shape


def _tag_text(text: str) -> tuple[Sql, dict[int, Sql]]:
    """A tag matches by its name or its repository's, whichever is better."""
    on_repository, repository_args = _class_sql(("r.name", "r.short"), text)
    on_tag, tag_args = _class_sql(("x.lname",), text)
    match = (f"min(coalesce({on_repository}, 3), coalesce({on_tag}, 3))",
             [*repository_args, *tag_args])
    repositories = _name_tiers("repositories", ("name", "short"), text)
    names = _name_tiers("tags", ("lname",), text)
    tiers = {}
    for match_class, (ids, args) in repositories.items():
        by_name, name_args = names[match_class]
        tiers[match_class] = (
            f"SELECT t.id FROM tags t WHERE t.repository_id IN ({ids}) UNION ALL {by_name}",
            [*args, *name_args])
    return match, tiers


def _repository_tag(repository: str, tag: str) -> tuple[Sql, dict[int, Sql]]:
    """``repo:tag``: both sides must match; the worse of the two is the class. A row of class
    c has both sides of class c or better, so each class reads only such candidates."""
    on_repository, repository_args = _class_sql(("r.name", "r.short"), repository)
    on_tag, tag_args = _class_sql(("x.lname",), tag)
    match = f"max({on_repository}, {on_tag})", [*repository_args, *tag_args]
    repositories = _name_tiers("repositories", ("name", "short"), repository)
    tag_terms: dict[int, Sql] = {0: ("t.lname = ?", [tag]),
                                 1: ("t.lname >= ? AND t.lname < ?", [tag, tag + _TOP])}
    if len(tag) >= MIN_SUBSTRING:
        tag_terms[2] = ("instr(t.lname, ?) > 0", [tag])
    names = _name_tiers("tags", ("lname",), tag)
    tiers: dict[int, Sql] = {}
    for match_class in (0, 1, 2):
        where: list[str] = []
        args: list[object] = []
        if repository:
            if match_class not in repositories:
                continue  # no substring matches on one or two characters
            better = [repositories[c] for c in range(match_class + 1) if c in repositories]
            where.append("t.repository_id IN ("
                         + " UNION ALL ".join(sql for sql, _ in better) + ")")
            args.extend(a for _, values in better for a in values)
        if tag and repository:
            term, values = tag_terms.get(match_class, tag_terms[1])
            where.append(term)
            args.extend(values)
        elif tag:
            # No repository side: the tag-name index (or FTS) finds the tags themselves.
            ids, values = names.get(match_class, names[1])
            where.append(f"t.id IN ({ids})")
            args.extend(values)
        # The repositories drive, each read through (repository_id, lname, name).
        table = "tags t INDEXED BY tags_name" if repository else "tags t"
        tiers[match_class] = (f"SELECT t.id FROM {table} WHERE {' AND '.join(where)}", args)
    return match, tiers


def _vulnerabilities(query: Query) -> Shape:
    """Tags whose image, or one of whose platform images, has a finding with this id."""
    text = query.text
    on_digest = ("(v.digest = x.digest"
                 " OR v.digest IN (SELECT child FROM children WHERE parent = x.digest))")
    match: Sql = (
        (f"(CASE WHEN EXISTS (SELECT 1 FROM vulnerabilities v WHERE v.id = ? AND {on_digest})"
         " THEN 0 WHEN EXISTS (SELECT 1 FROM vulnerabilities v WHERE v.id >= ? AND v.id < ?"
         f" AND {on_digest}) THEN 1 END)"),
        [text, text, text + _TOP])
    tiers: dict[int, Sql] = {}
    hits: tuple[Sql, Sql] = (
        ("SELECT digest FROM vulnerabilities WHERE id = ?", [text]),
        ("SELECT digest FROM vulnerabilities WHERE id >= ? AND id < ?", [text, text + _TOP]),
    )
    for match_class, (found, args) in enumerate(hits):
        digests = f"{found} UNION ALL SELECT parent FROM children WHERE child IN ({found})"
        tiers[match_class] = (f"SELECT id FROM tags WHERE digest IN ({digests})", args + args)
    shape = _tags(replace(query, type="tag", text=text.lower()))
    shape.walk = None  # affected tags are few next to all tags: always read them
    shape.match = match
    shape.tiers = tiers
    return shape


_SHAPES = {"repository": _repositories, "namespace": _namespaces, "tag": _tags,
           "vulnerability": _vulnerabilities}
