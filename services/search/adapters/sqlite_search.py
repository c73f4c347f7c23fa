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

Three shapes have a plan of their own:

- exact tag names (``latest`` is in every repository) are read from ``tags_lname`` (name,
  then rank) in rank order, so the LIMIT stops the read after a page (``Shape.ordered``);
- ``repo:tag`` starts from the repositories that may match, already narrowed to the caller's
  namespaces, and reads their tags from ``tags_repository_rank`` (repository, name, rank),
  which holds all the match and the rank need: only the page's rows are read from the table;
- a caller who sees few namespaces (``NARROW_SHARE``) has the repositories whose names may
  match read namespace by namespace from ``repositories_namespace`` (namespace, name, short),
  so the candidates are visible ones only.
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
# A caller who sees at most this share of the namespaces (or asks for one namespace) has the
# repositories that may match read namespace by namespace, from the covering index
# ``repositories_namespace`` (namespace, name, short): a tenth of the namespaces is a tenth of
# that index, where the name indexes would find every match and look up each one's namespace.
NARROW_SHARE = 0.25
SUBSTRING = 2  # the match class of substrings


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
    # Per class, sources (FROM clause, WHERE term) whose rows together are exactly that class,
    # each read in rank order through an index (or sorted, when it is small): the class's
    # page is merged from their first pages, with no candidates counted and no walk.
    ordered: dict[int, list[tuple[str, Sql]]] = field(default_factory=dict)


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
    scope = _scope(visible, query.namespace)
    share = _share(conn, visible)
    narrow = query.namespace is not None or share <= NARROW_SHARE
    if query.type == "tag" and query.repository and query.tag is not None:
        return _repository_tag_rows(conn, query, shape, scope, narrow=narrow, after=after,
                                    limit=limit)
    if query.type == "repository" and narrow:
        # The candidates are visible ones only. Exact names and prefixes of three characters
        # or more are few enough to look up by name; substrings and shorter prefixes, which
        # the name indexes would find by the thousand, are read namespace by namespace.
        wide = SUBSTRING if len(query.text) >= MIN_SUBSTRING else 1
        shape.tiers = {match_class: _repository_ids(query.text, match_class, scope,
                                                    narrow=match_class >= wide)
                       for match_class in shape.tiers}
        share = 1.0  # a walk is as dense as candidates of a caller who sees all
    for term, term_args in scope:
        shape.where.append(term.format(namespace=f"+{shape.namespace}"))
        shape.args.extend(term_args)
    rows: list[sqlite3.Row] = []
    # A walk skips the rows the caller may not see too: the fewer namespaces they see, the
    # more candidates it takes before walking is the cheaper plan.
    cap = None if shape.walk is None else int(shape.cap / max(share, MIN_SHARE))
    # Each class's candidates are exactly the rows of that class or a better one, so once the
    # better classes' candidates are known, a class is its candidates without them and its
    # rows need no match test. ``better`` is None when some were too many to keep.
    start = after[0] if after else 0
    better: set[int] | None = set() if start == 0 else None
    for match_class in range(start, 3):
        if match_class in shape.ordered:
            rows.extend(_ordered(conn, shape, match_class, after=after, limit=limit - len(rows)))
            better = None
            if len(rows) >= limit:
                break
            continue
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


def _scope(visible: frozenset[str] | None, namespace: str | None) -> list[Sql]:
    """WHERE terms on ``{namespace}``, the column holding a row's namespace: what the caller
    may see, and the namespace asked for."""
    scope: list[Sql] = []
    if visible is not None:
        scope.append(("{namespace} IN (SELECT value FROM json_each(?))",
                      [json.dumps(sorted(visible))]))
    if namespace is not None:
        scope.append(("{namespace} = ?", [namespace]))
    return scope


def _share(conn: sqlite3.Connection, visible: frozenset[str] | None) -> float:
    """The share of the namespaces the caller sees."""
    if visible is None:
        return 1.0
    namespaces = int(conn.execute("SELECT count(*) FROM namespaces").fetchone()[0])
    return min(1.0, len(visible) / max(1, namespaces))


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
    ranked = (f"SELECT x.neg_popularity, x.neg_updated, x.id FROM {driver}"
              f" CROSS JOIN {shape.source} WHERE {' AND '.join(where)}"
              " ORDER BY +x.neg_popularity, +x.neg_updated, +x.id LIMIT ?")
    return _page(conn, shape, match_class, ranked, [*args, limit])


def _page(conn: sqlite3.Connection, shape: Shape, match_class: int, ranked: str,
          args: list[object]) -> list[sqlite3.Row]:
    """The rows of the positions ``ranked`` selects: the sort carries positions only, the
    page's rows are read afterwards, by id."""
    sql = (f"SELECT {match_class} AS match_class, x.neg_popularity, x.neg_updated, x.id,"
           f" {shape.columns} FROM ({ranked}) AS page CROSS JOIN {shape.source}"
           " WHERE x.id = page.id ORDER BY page.neg_popularity, page.neg_updated, page.id")
    return list(conn.execute(sql, args).fetchall())


def _since(match_class: int, after: Position | None) -> Sql | None:
    """The keyset term of a class the previous page ended in."""
    if after is None or after[0] != match_class:
        return None
    return "(x.neg_popularity, x.neg_updated, x.id) > (?, ?, ?)", list(after[1:])


def _ordered(conn: sqlite3.Connection, shape: Shape, match_class: int, *,
             after: Position | None, limit: int) -> list[sqlite3.Row]:
    """A class from its ordered sources: each source's first ``limit`` rows, merged."""
    since = _since(match_class, after)
    rows: dict[int, sqlite3.Row] = {}
    for source, (term, term_args) in shape.ordered[match_class]:
        where, args = [term, *shape.where], [*term_args, *shape.args]
        if since is not None:
            where.append(since[0])
            args.extend(since[1])
        # No unary plus here: the source's index serves the ORDER BY, so the LIMIT stops
        # the read after the page instead of sorting every row of the source.
        ranked = (f"SELECT x.neg_popularity, x.neg_updated, x.id FROM {source}"
                  f" WHERE {' AND '.join(where)}"
                  " ORDER BY x.neg_popularity, x.neg_updated, x.id LIMIT ?")
        for row in _page(conn, shape, match_class, ranked, [*args, limit]):
            rows[row[3]] = row
    return sorted(rows.values(), key=lambda row: (row[1], row[2], row[3]))[:limit]


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
    ordered: dict[int, list[tuple[str, Sql]]] = {}
    if query.digest is not None:
        match: Sql = ("(CASE WHEN x.digest = ? THEN 0 ELSE 1 END)", [query.digest])
        tiers: dict[int, Sql] = {
            0: ("SELECT id FROM tags WHERE digest = ?", [query.digest]),
            1: ("SELECT id FROM tags WHERE digest >= ? AND digest < ?",
                [query.digest, query.digest + _TOP]),
        }
    elif query.repository is not None and query.tag is not None:
        # Only ``:tag`` is read through these: ranked_rows gives a repository side its own plan.
        match, tiers = _tag_only(query.tag)
    else:
        match, tiers = _tag_text(query.text)
        ordered = _tag_text_ordered(query.text)
    shape = Shape(
        source="tags AS x JOIN repositories AS r ON r.id = x.repository_id",
        walk="tags",
        columns=_TAG_COLUMNS,
        match=match,
        tiers=tiers,
        cap=TAG_CAP,
        namespace="r.namespace",
        ordered=ordered,
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


_BY_TAG_NAME = ("tags AS x INDEXED BY tags_lname CROSS JOIN repositories AS r"
                " ON r.id = x.repository_id")


def _tag_text_ordered(text: str) -> dict[int, list[tuple[str, Sql]]]:
    """Exact matches of a tag search: tags of that name, read from ``tags_lname`` (name, then
    rank), so ``latest``, a name in every repository, reads a page and not a hundred thousand
    candidates; and the tags of repositories of that name, few enough to sort."""
    equal = " UNION ALL ".join(f"SELECT id FROM repositories WHERE {column} = ?"
                               for column in ("name", "short"))
    return {0: [
        (_BY_TAG_NAME, ("x.lname = ?", [text])),
        ("repositories AS r CROSS JOIN tags AS x ON x.repository_id = r.id",
         (f"r.id IN ({equal})", [text, text])),
    ]}


def _repository_tag_rows(conn: sqlite3.Connection, query: Query, shape: Shape,
                         scope: list[Sql], *, narrow: bool, after: Position | None,
                         limit: int) -> list[sqlite3.Row]:
    """``repo:tag`` with a repository side: the repositories that may match, already narrowed
    to what the caller may see and read once per class, drive ``tags_repository_rank``
    (repository, name, rank), which holds all a row's match and rank need, so only the page's
    rows are read from the table. A row of class c has both sides of class c or better and
    not both of a better class."""
    assert query.repository is not None  # noqa: S101 - the caller checks
    assert query.tag is not None  # noqa: S101
    repository, tag = query.repository, query.tag
    found: dict[int, str] = {}

    def both_sides(match_class: int) -> Sql:
        """Both sides match with this class or better."""
        on_repository = _effective(repository, match_class)
        # Substrings of names are found namespace by namespace when the caller sees few
        # (NARROW_SHARE), once: a class and the next both ask. Exact names and prefixes are
        # index ranges either way, cheap enough to stay inside the statement.
        ids, args = _repository_ids(repository, on_repository, scope,
                                    narrow=narrow and on_repository == SUBSTRING)
        if narrow and on_repository == SUBSTRING:
            if on_repository not in found:
                found[on_repository] = json.dumps([row[0] for row in conn.execute(ids, args)])
            ids, args = "SELECT value FROM json_each(?)", [found[on_repository]]
        term = f"x.repository_id IN ({ids})"
        if tag:
            tag_terms: dict[int, Sql] = {
                0: ("x.lname = ?", [tag]),
                1: ("x.lname >= ? AND x.lname < ?", [tag, tag + _TOP]),
                2: ("instr(x.lname, ?) > 0", [tag]),
            }
            tag_term, tag_args = tag_terms[_effective(tag, match_class)]
            term = f"{term} AND {tag_term}"
            args.extend(tag_args)
        return term, args

    rows: list[sqlite3.Row] = []
    start = after[0] if after else 0
    for match_class in range(start, 3):
        if match_class > 0 and (_effective(repository, match_class),
                                _effective(tag, match_class)) == (
                _effective(repository, match_class - 1), _effective(tag, match_class - 1)):
            continue  # nothing can be of this class and no better
        term, args = both_sides(match_class)
        if match_class > 0:
            worse, worse_args = both_sides(match_class - 1)
            term = f"{term} AND NOT ({worse})"
            args = [*args, *worse_args]
        where, args = [term, *shape.where], [*args, *shape.args]
        since = _since(match_class, after)
        if since is not None:
            where.append(since[0])
            args.extend(since[1])
        ranked = ("SELECT x.neg_popularity, x.neg_updated, x.id"
                  f" FROM tags AS x INDEXED BY tags_repository_rank WHERE {' AND '.join(where)}"
                  " ORDER BY x.neg_popularity, x.neg_updated, x.id LIMIT ?")
        rows.extend(_page(conn, shape, match_class, ranked, [*args, limit - len(rows)]))
        if len(rows) >= limit:
            break
    return rows


def _effective(text: str, match_class: int) -> int:
    """The class whose terms find matches of ``match_class`` or better: substrings of one or
    two characters are not looked for (services.search.query), so those are prefixes."""
    if match_class == SUBSTRING and len(text) < MIN_SUBSTRING:
        return 1
    return match_class


def _repository_ids(text: str, match_class: int, scope: list[Sql], *, narrow: bool) -> Sql:
    """SQL for the ids of the repositories in the caller's scope whose name matches ``text``
    with this class or better (services.search.query.classify)."""
    match_class = _effective(text, match_class)
    if narrow:  # namespace by namespace, see NARROW_SHARE
        conditions: dict[int, Sql] = {
            0: ("(name = ? OR short = ?)", [text, text]),
            1: ("(substr(name, 1, ?) = ? OR substr(short, 1, ?) = ?)",
                [len(text), text, len(text), text]),
            2: ("instr(name, ?) > 0", [text]),
        }
        condition, condition_args = conditions[match_class]
        where = " AND ".join([*(term.format(namespace="namespace") for term, _ in scope),
                              condition])
        return (f"SELECT id FROM repositories INDEXED BY repositories_namespace WHERE {where}",
                [a for _, values in scope for a in values] + condition_args)
    terms: list[Sql] = [
        (f"{column} = ?", [text]) if match_class == 0 else
        (f"{column} >= ? AND {column} < ?", [text, text + _TOP])
        for column in ("name", "short")
    ]
    if match_class == SUBSTRING:
        fts = "id IN (SELECT rowid FROM repositories_fts WHERE repositories_fts MATCH ?)"
        terms.append((fts, [_phrase(text)]))
    # ``repositories_short`` holds the namespace: the short-name ranges need no row.
    filters = "".join(f" AND {term.format(namespace='+namespace')}" for term, _ in scope)
    filter_args = [a for _, values in scope for a in values]
    return (" UNION ALL ".join(f"SELECT id FROM repositories WHERE {term}{filters}"
                               for term, _ in terms),
            [a for _, values in terms for a in (*values, *filter_args)])


def _tag_only(tag: str) -> tuple[Sql, dict[int, Sql]]:
    """``:tag``: no repository side, so the tag's name alone is the class, and the tag-name
    index (or FTS) finds the tags. With a repository side, see _repository_tag_rows."""
    return _class_sql(("x.lname",), tag), _name_tiers("tags", ("lname",), tag)


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
    shape.ordered = {}
    shape.match = match
    shape.tiers = tiers
    return shape


_SHAPES = {"repository": _repositories, "namespace": _namespaces, "tag": _tags,
           "vulnerability": _vulnerabilities}
