"""Deep keyset pages of the activity feed at millions of entries.

What it measures
    ``activity.db`` is filled with ``--entries`` activities (default 5,000,000): opened once
    through ``SqliteActivityStore`` so its migrations make the schema, then bulk inserted with
    raw ``sqlite3`` (secondary indexes dropped during the load and re-created from their own
    SQL, so the schema ends exactly as the migrations wrote it). Distributions: ``--repositories``
    repositories in ``--namespaces`` namespaces with Zipf-like popularity, ``--actors`` actors,
    all five activity types (mostly ``tag.pushed``), times spread over the past year in
    arrival order. The filled file is cached as ``<cache-dir>/activity-<entries>-<schema>.db``
    (``<schema>``: a hash of the migrations) and reused by later runs (``--rebuild`` makes it
    anew); the first fill of 5 M entries takes a minute or two.

    For each query shape (no filter, each filter, two types, a since/until window, and common
    pairs, and a non-admin's feed limited to the namespaces they may pull from) it picks
    ``--samples`` real rows 40-60 % deep into that shape's result and asks for
    the page after each, ``limit=50``, three ways: the SQL alone on a fresh connection, the
    store call (``SqliteActivityStore.search``, thread hop included), and
    ``GET /api/v1/activities?cursor=…`` against ``dockyard serve`` in a child process whose
    data directory links to the filled file. ``EXPLAIN QUERY PLAN`` is printed for the SQL
    the store actually ran (captured with a trace callback), so the index used is visible.

Target
    p95 ≤ 5 ms for a deep page, over HTTP, for every shape.

Reading the output
    The plans come first, one block per shape. Then one row per shape: p50/p95 in ms for the
    SQL, the store and HTTP, and whether the HTTP p95 met the target. Pages are read warm (the
    file sits in the OS page cache after the first pass); figures move with machine load, so
    ``--repeat`` measures everything again to show the spread. With ``--compare-fix``
    the SQL this script proposes for ``search`` (see ``proposed_statements``) is planned and
    timed too, for every shape, as evidence for the fix.

    .venv/bin/python bench/activity_feed.py [--entries 5000000] [--samples 200] [--repeat 2]
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import http.client
import json
import random
import sqlite3
import tempfile
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlencode, urlsplit

from harness import (
    DockyardServer,
    admin_auth,
    describe_machine,
    initialised,
    percentile,
    print_table,
)

from services.core.http import encode_cursor
from services.ingest.activity import REGISTRY_ACTIVITY_TYPES
from services.ingest.adapters.sqlite import ACTIVITY_MIGRATIONS, SqliteActivityStore, micros
from services.ingest.models import ActivityFilter

TARGET_P95_MS = 5.0
PAGE = 50
# Shares of each type in the log (record_pulls on): pushes dominate, repository deletes are rare.
TYPE_WEIGHTS = {"tag.pushed": 62, "manifest.pulled": 30, "tag.deleted": 5,
                "manifest.deleted": 2.5, "repository.deleted": 0.5}
USER_AGENTS = ("docker/24.0.7 go/go1.20.10 os/linux arch/amd64",
               "containers/5.29.2 (github.com/containers/image)", "buildkit/v0.12",
               "helm/v3.14.0", "crane/v0.19.0")
FILL_CHUNK = 200_000
YEAR = timedelta(days=365)


@dataclass(frozen=True)
class Shape:
    """A filter of the feed: as the API's query string and as the store's ActivityFilter."""

    name: str
    query: dict[str, str] | None  # None: not expressible over HTTP as the admin (see below)
    where: ActivityFilter
    # SQL over the activities table matching the same rows, to pick cursors from.
    clauses: list[str] = field(default_factory=list)
    args: Sequence[object] = field(default_factory=list)


@dataclass
class Timings:
    sql: list[float] = field(default_factory=list)
    store: list[float] = field(default_factory=list)
    http: list[float] = field(default_factory=list)
    proposed: list[float] = field(default_factory=list)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.partition("\n")[0])
    parser.add_argument("--entries", type=int, default=5_000_000)
    parser.add_argument("--repositories", type=int, default=5_000)
    parser.add_argument("--namespaces", type=int, default=200)
    parser.add_argument("--actors", type=int, default=500)
    parser.add_argument("--samples", type=int, default=200, help="pages timed per shape")
    parser.add_argument("--repeat", type=int, default=2, help="measure everything N times")
    parser.add_argument("--cache-dir", type=Path,
                        default=Path(tempfile.gettempdir()) / "dockyard-bench")
    parser.add_argument("--rebuild", action="store_true", help="fill the cached file anew")
    parser.add_argument("--compare-fix", action="store_true",
                        help="also plan and time the SQL proposed for search()")
    args = parser.parse_args()

    # Keyed by the schema too: a changed migration must not meet a file filled for the old one.
    schema = hashlib.sha256("".join(ACTIVITY_MIGRATIONS).encode()).hexdigest()[:8]
    path = args.cache_dir / f"activity-{args.entries}-{schema}.db"
    if args.rebuild or not path.exists():
        fill(path, args)
    else:
        print(f"reusing {path} (--rebuild to fill it anew)")
    print(describe_machine(path.parent))
    shapes = choose_shapes(path)
    cursors = {shape.name: pick_cursors(path, shape, args.samples) for shape in shapes}
    captured = asyncio.run(capture_sql(path, shapes, cursors))
    print("\nquery plans of the SQL SqliteActivityStore.search ran")
    print_plans(path, {name: [(sql, ()) for sql in found[:1]] for name, found in captured.items()})
    if args.compare_fix:
        print("\nquery plans of the proposed SQL")
        print_plans(path, {shape.name: proposed_statements(
            shape, cursors[shape.name][:1], columns_of(captured[shape.name][0]))
            for shape in shapes})
    with tempfile.TemporaryDirectory(prefix="dockyard-bench-feed-") as tmp:
        data_dir = Path(tmp) / "data"
        config = initialised(data_dir, "http://127.0.0.1:9")
        # The server opens the cached file through a link rather than a 2 GB copy. It adds one
        # row to it per run (the init's admin account, a ``user.create`` entry of today), which
        # sits at the head of the feed and moves no deep page.
        (data_dir / "activity.db").symlink_to(path)
        with DockyardServer(config) as server:
            for round_ in range(1, args.repeat + 1):
                results = measure(path, server.url, shapes, cursors, captured,
                                  compare_fix=args.compare_fix)
                report(round_, shapes, results, compare_fix=args.compare_fix)


def fill(path: Path, args: argparse.Namespace) -> None:
    """Create ``path`` through the store, then bulk insert; renamed into place when complete."""
    if set(TYPE_WEIGHTS) != set(REGISTRY_ACTIVITY_TYPES):
        raise SystemExit(f"TYPE_WEIGHTS must cover exactly {REGISTRY_ACTIVITY_TYPES}")
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    for leftover in path.parent.glob(partial.name + "*"):
        leftover.unlink()
    started = time.perf_counter()
    print(f"filling {path} with {args.entries:,} entries (once; later runs reuse it)…")

    async def migrate() -> None:
        store = SqliteActivityStore(partial)
        await store.open()
        await store.close()

    asyncio.run(migrate())
    conn = sqlite3.connect(partial, isolation_level=None)
    conn.execute("PRAGMA synchronous = OFF")
    conn.execute("PRAGMA cache_size = -1000000")
    indexes = conn.execute(
        "SELECT name, sql FROM sqlite_master WHERE type = 'index' AND sql IS NOT NULL"
    ).fetchall()
    for name, _ in indexes:
        conn.execute(f"DROP INDEX {name}")
    rows = Population(args, random.Random(args.entries))
    for start in range(0, args.entries, FILL_CHUNK):
        chunk = rows.chunk(start, min(FILL_CHUNK, args.entries - start), args.entries)
        conn.execute("BEGIN")
        conn.executemany(
            "INSERT INTO activities (id, type, actor, repository, namespace, tag, digest,"
            " time_us, address, user_agent, synthetic, audience)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 'namespace')",
            chunk,
        )
        conn.execute("COMMIT")
        print(f"\r  {start + len(chunk):,} rows", end="", flush=True)
    print("\n  building indexes…")
    for _, sql in indexes:
        conn.execute(sql)
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()
    partial.rename(path)
    print(f"  done in {time.perf_counter() - started:.0f}s")


class Population:
    """Repositories, namespaces and actors with Zipf-like popularity, and rows drawn from them."""

    def __init__(self, args: argparse.Namespace, rng: random.Random) -> None:
        self.rng = rng
        namespaces = [f"org{i:03d}" for i in range(args.namespaces)]
        namespace_weights = [1 / (i + 1) ** 0.7 for i in range(len(namespaces))]
        # One repository in a hundred sits in the global namespace (``nginx``, not ``a/b``).
        self.repositories = [
            (f"tool{i:04d}", "") if i % 100 == 99 else
            (f"{ns}/svc{i:04d}", ns)
            for i, ns in enumerate(rng.choices(namespaces, namespace_weights,
                                               k=args.repositories))
        ]
        self.repository_weights = [1 / (i + 1) ** 0.8 for i in range(len(self.repositories))]
        self.actors = [f"user{i:03d}" for i in range(args.actors)]
        self.actor_weights = [1 / (i + 1) ** 0.9 for i in range(len(self.actors))]
        self.now = datetime.now(UTC).replace(microsecond=0)

    def chunk(self, start: int, count: int, total: int) -> list[tuple[Any, ...]]:
        rng = self.rng
        year_us = int(YEAR.total_seconds() * 1_000_000)
        origin = micros(self.now - YEAR)
        low, high = origin + year_us * start // total, origin + year_us * (start + count) // total
        times = sorted(rng.randrange(low, high) for _ in range(count))
        types = rng.choices(list(TYPE_WEIGHTS), list(TYPE_WEIGHTS.values()), k=count)
        repositories = rng.choices(self.repositories, self.repository_weights, k=count)
        actors = rng.choices(self.actors, self.actor_weights, k=count)
        rows = []
        for time_us, kind, (repository, namespace), actor in zip(
            times, types, repositories, actors, strict=True
        ):
            anonymous = kind == "manifest.pulled" and rng.random() < 0.3
            has_tag = kind in {"tag.pushed", "tag.deleted"} or (
                kind == "manifest.pulled" and rng.random() < 0.7)
            has_digest = kind not in {"repository.deleted", "tag.deleted"}
            rows.append((
                str(uuid.UUID(int=rng.getrandbits(128), version=4)),
                kind,
                None if anonymous else actor,
                repository,
                namespace,
                f"1.{rng.randrange(40)}.{rng.randrange(10)}" if has_tag else None,
                f"sha256:{rng.getrandbits(256):064x}" if has_digest else None,
                time_us,
                f"10.{rng.randrange(256)}.{rng.randrange(256)}.{rng.randrange(1, 255)}",
                rng.choice(USER_AGENTS),
                int(rng.random() < 0.01),
            ))
        return rows


def choose_shapes(path: Path) -> list[Shape]:
    """Query shapes over real values: a busy repository, a mid-sized namespace and actor…"""
    with sqlite3.connect(path) as conn:
        def ranked(column: str, rank: int) -> str:
            row = conn.execute(
                f"SELECT {column} FROM activities WHERE {column} IS NOT NULL"
                f" AND {column} != '' AND seq % 50 = 0"
                f" GROUP BY {column} ORDER BY count(*) DESC LIMIT 1 OFFSET ?", (rank,)
            ).fetchone()
            return str(row[0])

        repository, namespace, actor = (ranked("repository", 20), ranked("namespace", 10),
                                        ranked("actor", 20))
        # A developer's view: three mid-sized namespaces of the teams they belong to.
        teams = sorted(ranked("namespace", rank) for rank in (30, 60, 90))
        low, high = conn.execute("SELECT min(time_us), max(time_us) FROM activities").fetchone()
    conn.close()
    middle = (low + high) // 2
    month = int(timedelta(days=15).total_seconds() * 1_000_000)
    since = datetime.fromtimestamp((middle - month) / 1e6, UTC).replace(microsecond=0)
    until = datetime.fromtimestamp((middle + month) / 1e6, UTC).replace(microsecond=0)
    window = {"since": iso(since), "until": iso(until)}
    window_clauses = ["time_us >= ?", "time_us < ?"]
    window_args: list[object] = [micros(since), micros(until)]
    two_types = ("tag.deleted", "manifest.deleted")
    return [
        Shape("no filter", {}, ActivityFilter()),
        Shape(f"repository={repository}", {"repository": repository},
              ActivityFilter(repository=repository), ["repository = ?"], [repository]),
        Shape(f"namespace={namespace}", {"namespace": namespace},
              ActivityFilter(namespace=namespace), ["namespace = ?"], [namespace]),
        Shape(f"actor={actor}", {"actor": actor}, ActivityFilter(actor=actor),
              ["actor = ?"], [actor]),
        Shape("type=tag.deleted", {"type": "tag.deleted"}, ActivityFilter(types=("tag.deleted",)),
              ["type = ?"], ["tag.deleted"]),
        Shape("type=tag.deleted,manifest.deleted", {"type": ",".join(two_types)},
              ActivityFilter(types=two_types), ["type IN (?, ?)"], list(two_types)),
        Shape("since/until (30 days)", window, ActivityFilter(since=since, until=until),
              window_clauses, window_args),
        Shape("repository + type=tag.pushed",
              {"repository": repository, "type": "tag.pushed"},
              ActivityFilter(repository=repository, types=("tag.pushed",)),
              ["repository = ?", "type = ?"], [repository, "tag.pushed"]),
        Shape("namespace + since/until", {"namespace": namespace, **window},
              ActivityFilter(namespace=namespace, since=since, until=until),
              ["namespace = ?", *window_clauses], [namespace, *window_args]),
        Shape("actor + type=tag.deleted", {"actor": actor, "type": "tag.deleted"},
              ActivityFilter(actor=actor, types=("tag.deleted",)),
              ["actor = ?", "type = ?"], [actor, "tag.deleted"]),
        # Non-admins see only what they may pull; signing one in needs users, teams and
        # namespaces in auth.db, so this shape is timed at the store only.
        Shape("non-admin, 3 namespaces visible", None, ActivityFilter(visible=frozenset(teams)),
              ["audience = 'namespace'", "namespace IN (?, ?, ?)"], teams),
    ]


def iso(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


def pick_cursors(path: Path, shape: Shape, samples: int) -> list[tuple[int, int]]:
    """``samples`` real (time_us, seq) positions spread over 40-60 % deep into the shape."""
    where = f"WHERE {' AND '.join(shape.clauses)}" if shape.clauses else ""
    with sqlite3.connect(path) as conn:
        (count,) = conn.execute(f"SELECT count(*) FROM activities {where}", shape.args).fetchone()
        span = max(samples, count // 5)
        rows = conn.execute(
            f"SELECT time_us, seq FROM activities {where}"
            " ORDER BY time_us DESC, seq DESC LIMIT ? OFFSET ?",
            (*shape.args, span, max(0, int(count * 0.4))),
        ).fetchall()
    conn.close()
    step = max(1, len(rows) // samples)
    picked = rows[::step][:samples]
    # Every cursor needs a full page after it.
    if len(picked) < samples or count - int(count * 0.4) - span <= PAGE:
        raise RuntimeError(f"{shape.name}: only {count} rows match;"
                           " use more --entries or fewer --samples")
    return picked


async def capture_sql(
    path: Path, shapes: list[Shape], cursors: dict[str, list[tuple[int, int]]]
) -> dict[str, list[str]]:
    """The SQL ``SqliteActivityStore.search`` runs for each cursor, values inlined.

    Captured with a trace callback on the store's own reader connection, so what is timed and
    explained below is exactly what the store sends.
    """
    store = SqliteActivityStore(path)
    await store.open()
    captured: dict[str, list[str]] = {}
    try:
        for shape in shapes:
            seen = captured.setdefault(shape.name, [])
            await store.db.read(tracing(seen.append))
            for before in cursors[shape.name]:
                await store.search(shape.where, before=before, limit=PAGE + 1)
            await store.db.read(tracing(None))
    finally:
        await store.close()
    return captured


def tracing(callback: Callable[[str], object] | None) -> Callable[[sqlite3.Connection], None]:
    """A unit of work for ``Database.read`` that sets its connection's trace callback."""

    def install(conn: sqlite3.Connection) -> None:
        conn.set_trace_callback(callback)

    return install


def print_plans(path: Path, statements: dict[str, list[tuple[str, tuple[object, ...]]]]) -> None:
    with sqlite3.connect(path) as conn:
        for name, ((sql, params), *_) in statements.items():
            plan = conn.execute(f"EXPLAIN QUERY PLAN {sql}", params).fetchall()
            print(f"\n{name}: ...{sql.partition(' FROM activities')[2][:400]}")
            for row in plan:
                print(f"    {row[3]}")
    conn.close()


def columns_of(sql: str) -> str:
    """The column list of a captured ``SELECT … FROM``, so the proposed SQL reads the same."""
    return sql.removeprefix("SELECT ").partition(" FROM ")[0]


def measure(
    path: Path,
    url: str,
    shapes: list[Shape],
    cursors: dict[str, list[tuple[int, int]]],
    captured: dict[str, list[str]],
    *,
    compare_fix: bool,
) -> dict[str, Timings]:
    results = {shape.name: Timings() for shape in shapes}
    asyncio.run(time_store(path, shapes, cursors, results))
    with sqlite3.connect(path) as conn:
        for shape in shapes:
            timings = results[shape.name]
            timings.sql = time_sql(conn, shape, [(sql, ()) for sql in captured[shape.name]],
                                   cursors[shape.name])
            if compare_fix:
                proposed = proposed_statements(shape, cursors[shape.name],
                                               columns_of(captured[shape.name][0]))
                timings.proposed = time_sql(conn, shape, proposed, cursors[shape.name])
    conn.close()
    client = http.client.HTTPConnection(urlsplit(url).netloc, timeout=30)
    try:
        for shape in shapes:
            if shape.query is not None:
                results[shape.name].http = time_http(client, shape, shape.query,
                                                     cursors[shape.name])
    finally:
        client.close()
    return results


async def time_store(
    path: Path,
    shapes: list[Shape],
    cursors: dict[str, list[tuple[int, int]]],
    results: dict[str, Timings],
) -> None:
    store = SqliteActivityStore(path)
    await store.open()
    try:
        for shape in shapes:
            for before in cursors[shape.name]:
                started = time.perf_counter()
                found = await store.search(shape.where, before=before, limit=PAGE + 1)
                results[shape.name].store.append(time.perf_counter() - started)
                check_page(shape, before, [position for position, _ in found])
    finally:
        await store.close()


def time_http(
    client: http.client.HTTPConnection,
    shape: Shape,
    query: dict[str, str],
    cursors: list[tuple[int, int]],
) -> list[float]:
    """One keep-alive connection and the standard library client: little client-side cost."""
    latencies = []
    headers = {"Authorization": admin_auth()}
    for before in cursors:
        params = {**query, "cursor": encode_cursor(list(before)), "limit": str(PAGE)}
        started = time.perf_counter()
        client.request("GET", f"/api/v1/activities?{urlencode(params)}", headers=headers)
        response = client.getresponse()
        body = response.read()
        latencies.append(time.perf_counter() - started)
        if response.status != 200 or len(json.loads(body)["items"]) != PAGE:
            raise RuntimeError(f"{shape.name}: {response.status} or a short page from the API")
    return latencies


def time_sql(
    conn: sqlite3.Connection,
    shape: Shape,
    statements: list[tuple[str, tuple[object, ...]]],
    cursors: list[tuple[int, int]],
) -> list[float]:
    latencies = []
    for (sql, params), before in zip(statements, cursors, strict=True):
        started = time.perf_counter()
        rows = conn.execute(sql, params).fetchall()
        latencies.append(time.perf_counter() - started)
        check_page(shape, before, [(row[8], row[0]) for row in rows])
    return latencies


def check_page(shape: Shape, before: tuple[int, int], positions: list[tuple[int, int]]) -> None:
    """A full page, strictly after the cursor, newest first: a fast wrong answer is no answer."""
    if len(positions) != PAGE + 1 or positions[0] >= before or positions != sorted(
        positions, reverse=True
    ):
        raise RuntimeError(f"{shape.name}: wrong page after {before}")


def proposed_statements(
    shape: Shape, cursors: list[tuple[int, int]], columns: str
) -> list[tuple[str, tuple[object, ...]]]:
    """The SQL this benchmark proposes for ``SqliteActivityStore.search``: same rows, same order.

    1. One index drives the walk, chosen by selectivity: repository, else actor, else namespace,
       else type, else time. The other filters on indexed columns are written ``+column`` so
       SQLite cannot pick their index instead: without ``ANALYZE`` statistics it cannot tell
       that ``type = 'tag.pushed'`` matches 60 % of the rows and a repository 0.1 %, and a
       wrong pick reads thousands of index entries per page.
    2. ``until`` is left out when the cursor is older than it. Given both, SQLite bounds the
       index range by ``until`` and reads every row from there down to the cursor; the cursor
       already implies ``time_us < until``.
    """
    where = shape.where
    statements = []
    for before in cursors:
        clauses: list[str] = []
        args: list[object] = []
        driven = False
        for column, value in (("repository", where.repository), ("actor", where.actor),
                              ("namespace", where.namespace)):
            if value is not None:
                clauses.append(f"{'+' if driven else ''}{column} = ?")
                args.append(value)
                driven = True
        if where.types:
            clauses.append(f"{'+' if driven else ''}type IN ({','.join('?' * len(where.types))})")
            args.extend(where.types)
            driven = True
        if where.visible is not None:
            clauses.append(f"audience = 'namespace' AND {'+' if driven else ''}namespace IN"
                           " (SELECT value FROM json_each(?))")
            args.append(json.dumps(sorted(where.visible)))
        if where.since is not None:
            clauses.append("time_us >= ?")
            args.append(micros(where.since))
        if where.until is not None and before[0] >= micros(where.until):
            clauses.append("time_us < ?")
            args.append(micros(where.until))
        clauses.append("(time_us, seq) < (?, ?)")
        sql = (f"SELECT {columns} FROM activities WHERE {' AND '.join(clauses)}"
               " ORDER BY time_us DESC, seq DESC LIMIT ?")
        statements.append((sql, (*args, *before, PAGE + 1)))
    return statements


def report(
    round_: int, shapes: list[Shape], results: dict[str, Timings], *, compare_fix: bool
) -> None:
    def ms(values: list[float], q: float) -> str:
        return f"{percentile(values, q) * 1000:.2f}" if values else "-"

    headers = ["shape", "SQL p50", "SQL p95", "store p50", "store p95", "HTTP p50",
               "HTTP p95", "target"]
    if compare_fix:
        headers += ["proposed SQL p50", "proposed SQL p95"]
    rows = []
    for shape in shapes:
        t = results[shape.name]
        # Shapes not timed over HTTP are judged on the store call, noted with "(store)".
        met = percentile(t.http or t.store, 95) * 1000 <= TARGET_P95_MS
        row: list[object] = [shape.name, ms(t.sql, 50), ms(t.sql, 95), ms(t.store, 50),
                             ms(t.store, 95), ms(t.http, 50), ms(t.http, 95),
                             ("met" if met else "MISSED") + ("" if t.http else " (store)")]
        if compare_fix:
            row += [ms(t.proposed, 50), ms(t.proposed, 95)]
        rows.append(row)
    print(f"\nround {round_}: deep pages (40-60 % in), limit={PAGE}, ms;"
          f" target HTTP p95 ≤ {TARGET_P95_MS} ms")
    print_table(headers, rows)


if __name__ == "__main__":
    main()
