"""Webhook ingest throughput: registry notifications over HTTP into the SQLite event log.

What it measures
    ``dockyard serve`` runs as a child process (consumers included, as in production: there is
    no setting that turns them off) against a real registry seeded with one small image in each
    of ``--repositories`` repositories, so the catalog consumer's manifest fetches succeed. wrk
    (``bench/wrk_webhook.lua``) keeps ``--concurrency`` keep-alive connections busy posting
    ``--envelope-size``-event envelopes of manifest pushes (unique ids, random repositories,
    actors and tags) to ``POST /v2/webhooks/events`` for ``--seconds``, after a
    ``--warmup-seconds`` run of other envelopes. It sends ``--envelopes`` distinct envelopes in
    turn, starting again at the first if it gets through them all. Every response must be a 200.

    The load generator is wrk, not Python: on this 2-core machine an aiohttp client spent about
    95 µs of CPU per request, 40 % of a core at these rates, taken from the server it measured.
    wrk is C and needs a fraction of that. ``make bench`` installs it (Debian package ``wrk``).

    Baseline, in the same run: a raw ``sqlite3`` loop writes the very rows the server stored
    (read back from its ``events.db``) into a fresh file of the same schema, journal mode and
    ``synchronous`` setting, with ``SqliteEventLog.append``'s commit pattern for one envelope:
    per envelope ``BEGIN IMMEDIATE``, the ``max(offset)`` lookup, one ``executemany``,
    ``COMMIT``. The baseline is the best of three such loops, each on a fresh file, as fsync
    times on a shared disk jump around.

    Both ``[eventlog] synchronous`` settings are measured, FULL (the default) and NORMAL, each
    ``--runs`` times on a fresh data directory.

Target
    ≥ 10,000 events/s with 10-event envelopes, and ≥ 50 % of the raw loop's events/s.

Reading the output
    One row per run: accepted events/s over HTTP, the raw loop's events/s, their ratio,
    request latency p50/p95/max as wrk saw it, the server's CPU use during the load (100 % = one
    core; the server's asyncio loop can only use one), and how long after the load the catalog
    and activity consumers had handled every event. The summary gives the spread over runs and
    whether each target held. The machine line says how loaded the machine was and which
    filesystem took the fsyncs: on a shared 2-core machine expect run-to-run spread.

    .venv/bin/python bench/ingest.py [--seconds 5] [--concurrency 16] [--runs 2]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from harness import (
    DockyardServer,
    RegistryProcess,
    SeededImage,
    describe_machine,
    initialised,
    print_table,
    seed_repositories,
    spread,
)

from services.core.eventlog.sqlite import MIGRATIONS
from services.ingest.consumers import REGISTRY_EVENTS

TARGET_EVENTS_PER_SECOND = 10_000
TARGET_RATIO = 0.5
RAW_ATTEMPTS = 3
WRK_SCRIPT = Path(__file__).with_name("wrk_webhook.lua")
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
USER_AGENTS = (
    ("docker/24.0.7 go/go1.20.10 git-commit/311b9ff kernel/6.5.0-35-generic os/linux"
     " arch/amd64 UpstreamClient(Docker-Client/24.0.7 \\(linux\\))"),
    "containers/5.29.2 (github.com/containers/image)",
    "buildkit/v0.12",
)


@dataclass
class Load:
    """What wrk reports of one load: completed requests, seconds, latencies in seconds."""

    requests: int
    seconds: float
    p50: float
    p95: float
    max: float


@dataclass
class RunResult:
    synchronous: str
    run: int
    events: int  # accepted: 200 responses x envelope size
    load: Load
    server_cpu: float
    drained_after: float | None
    consumer_failures: float
    raw_events: int = 0  # on the log after the warm-up: the accepted ones, perhaps a few more
    raw_seconds: float = 0.0

    @property
    def rate(self) -> float:
        return self.events / self.load.seconds

    @property
    def raw_rate(self) -> float:
        return self.raw_events / self.raw_seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.partition("\n")[0])
    parser.add_argument("--seconds", type=int, default=5, help="measured load per run")
    parser.add_argument("--warmup-seconds", type=int, default=1, help="load before measuring")
    parser.add_argument("--envelopes", type=int, default=6_000,
                        help="distinct envelopes the load sends in turn")
    parser.add_argument("--envelope-size", type=int, default=10, help="events per envelope")
    parser.add_argument("--concurrency", type=int, default=16, help="keep-alive connections")
    parser.add_argument("--repositories", type=int, default=500)
    parser.add_argument("--runs", type=int, default=2, help="runs per synchronous setting")
    parser.add_argument("--synchronous", nargs="+", default=["FULL", "NORMAL"],
                        choices=["FULL", "NORMAL"])
    parser.add_argument("--drain-timeout", type=float, default=120,
                        help="seconds to wait for the consumers (0: skip, shown as timeout)")
    parser.add_argument("--dir", type=Path, default=None, help="where to make the temp dir")
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        sys.exit("bench/ingest.py drives the load with wrk: apt-get install wrk (make bench does)")

    results: list[RunResult] = []
    with tempfile.TemporaryDirectory(prefix="dockyard-bench-ingest-", dir=args.dir) as tmp:
        scratch = Path(tmp)
        print(describe_machine(scratch))
        with RegistryProcess(scratch / "registry") as registry:
            names = repository_names(args.repositories)
            image = seed_repositories(registry.url, names, scratch)
            rng = random.Random(1)
            bodies = {phase: scratch / f"{phase}.jsonl" for phase in ("warmup", "measured")}
            for phase, count in (("warmup", 500), ("measured", args.envelopes)):
                write_lines(bodies[phase], envelopes(
                    count * args.envelope_size, args.envelope_size, names=names, image=image,
                    registry_host=registry.host, rng=rng))
            print(f"registry {registry.url}: {len(names)} repositories seeded; consumers run in"
                  f" every run (no setting turns them off); load: wrk, {args.concurrency}"
                  f" connections, {args.envelopes:,} distinct envelopes\n")
            for synchronous in args.synchronous:
                for run in range(1, args.runs + 1):
                    result = one_run(args, scratch, bodies, registry=registry,
                                     synchronous=synchronous, run=run)
                    results.append(result)
                    report_run(result)
    print()
    report(results, args)


def repository_names(count: int) -> list[str]:
    """``count`` repositories spread over ``count // 10`` namespaces (at least one)."""
    namespaces = max(1, count // 10)
    return [f"team{i % namespaces:03d}/app{i:04d}" for i in range(count)]


def write_lines(path: Path, bodies: Sequence[bytes]) -> None:
    """One envelope per line, as bench/wrk_webhook.lua reads them."""
    if any(b"\n" in body for body in bodies):
        raise ValueError("an envelope holds a newline")
    path.write_bytes(b"\n".join(bodies) + b"\n")


def one_run(
    args: argparse.Namespace,
    scratch: Path,
    bodies: dict[str, Path],
    *,
    registry: RegistryProcess,
    synchronous: str,
    run: int,
) -> RunResult:
    data_dir = scratch / f"{synchronous.lower()}-{run}"
    config = initialised(data_dir, registry.url, eventlog_synchronous=synchronous)
    events_db = data_dir / "events.db"
    with DockyardServer(config, {"DOCKYARD_EVENTLOG_SYNCHRONOUS": synchronous}) as server:
        url = f"{server.url}/v2/webhooks/events"
        authorization = f"Bearer {config.webhook.secret}"
        wrk(url, bodies["warmup"], authorization, args.concurrency, args.warmup_seconds)
        warmed_up = settled_last_offset(events_db)
        cpu_before = server.cpu_seconds()
        load = wrk(url, bodies["measured"], authorization, args.concurrency, args.seconds)
        server_cpu = (server.cpu_seconds() - cpu_before) / load.seconds
        # Requests in flight when wrk stopped may have been appended too: count what is there.
        drained_after = wait_for_consumers(server, settled_last_offset(events_db),
                                           args.drain_timeout)
        metrics = server.metrics()
    failures = sum(v for k, v in metrics.items()
                   if k.startswith(("dockyard_consumer_failures_total",
                                    "dockyard_consumer_dead_letters_total")))
    result = RunResult(synchronous, run, load.requests * args.envelope_size, load, server_cpu,
                       drained_after, failures)
    rows = stored_rows(events_db, skip=warmed_up)
    in_flight = args.concurrency * args.envelope_size
    if not result.events <= len(rows) <= result.events + in_flight:
        raise RuntimeError(f"{len(rows)} records on the log, {result.events} events accepted")
    result.raw_events = len(rows)
    # Best of a few fresh files: the disk is shared, and the baseline is what it can do.
    result.raw_seconds = min(
        raw_loop(scratch / f"raw-{synchronous.lower()}-{run}-{attempt}.db", synchronous, rows,
                 args.envelope_size)
        for attempt in range(RAW_ATTEMPTS)
    )
    return result


def wrk(url: str, bodies: Path, authorization: str, connections: int, seconds: int) -> Load:
    """Post the envelopes of ``bodies`` for ``seconds``; raise unless every response was 2xx."""
    completed = subprocess.run(
        ["wrk", "--threads", "1", "--connections", str(connections), "--duration", f"{seconds}s",
         "--timeout", "10s", "--script", str(WRK_SCRIPT), url, "--", str(bodies)],
        env={**os.environ, "WEBHOOK_AUTHORIZATION": authorization},
        capture_output=True, text=True, check=True, timeout=seconds + 60,
    )
    summary = json.loads(completed.stdout.strip().splitlines()[-1])
    if any(summary["errors"].values()) or not summary["requests"]:
        raise RuntimeError(f"wrk: {summary['requests']} requests, errors {summary['errors']}"
                           " (status: responses >= 400; see the server's dockyard.log)")
    return Load(summary["requests"], summary["duration_us"] / 1e6, summary["p50_us"] / 1e6,
                summary["p95_us"] / 1e6, summary["max_us"] / 1e6)


def settled_last_offset(path: Path) -> int:
    """The log's last offset once the appends still under way have had time to land."""
    time.sleep(0.5)
    with sqlite3.connect(path) as conn:
        last = conn.execute("SELECT coalesce(max(offset), 0) FROM records WHERE topic = ?",
                            (REGISTRY_EVENTS,)).fetchone()[0]
    conn.close()
    return int(last)


def envelopes(
    events: int,
    size: int,
    *,
    names: list[str],
    image: SeededImage,
    registry_host: str,
    rng: random.Random,
) -> list[bytes]:
    """Distinct envelopes of manifest pushes as registry 2.8 sends them (includereferences on)."""
    actors = [f"user{i:03d}" for i in range(500)]
    instance = str(uuid.uuid4())
    bodies = []
    for start in range(0, events - events % size, size):
        batch = []
        for number in range(start, start + size):
            repository = rng.choice(names)
            now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")
            batch.append({
                "id": str(uuid.uuid4()),
                "timestamp": f"{now}{rng.randrange(1000):03d}Z",  # Go sends nanoseconds
                "action": "push",
                "target": {
                    "mediaType": OCI_MANIFEST,
                    "size": image.size,
                    "digest": image.digest,
                    "length": image.size,
                    "repository": repository,
                    "url": f"http://{registry_host}/v2/{repository}/manifests/{image.digest}",
                    "tag": f"build-{number}",
                    "references": list(image.references),
                },
                "request": {
                    "id": str(uuid.uuid4()),
                    "addr": f"10.0.{rng.randrange(256)}.7:{rng.randrange(30000, 60000)}",
                    "host": registry_host,
                    "method": "PUT",
                    "useragent": rng.choice(USER_AGENTS),
                },
                "actor": {"name": rng.choice(actors)},
                "source": {"addr": "registry-0:5000", "instanceID": instance},
            })
        bodies.append(json.dumps({"events": batch}).encode())
    return bodies


def wait_for_consumers(server: DockyardServer, total: int, timeout: float) -> float | None:
    """Seconds until both consumer groups handled ``total`` records; None past ``timeout``."""
    started = time.perf_counter()
    while time.perf_counter() - started < timeout:
        metrics = server.metrics()
        handled = [
            metrics.get(f'dockyard_consumer_records_total{{group="{group}",topic="{topic}"}}', 0)
            for group, topic in (("catalog", "registry-events"), ("activity", "registry-events"))
        ]
        if min(handled) >= total:
            return time.perf_counter() - started
        time.sleep(0.2)
    return None


def stored_rows(path: Path, skip: int) -> list[tuple[str, bytes]]:
    with sqlite3.connect(path) as conn:
        rows = conn.execute(
            "SELECT key, value FROM records WHERE topic = ? AND offset > ? ORDER BY offset",
            (REGISTRY_EVENTS, skip),
        ).fetchall()
    conn.close()
    return rows


def raw_loop(path: Path, synchronous: str, rows: list[tuple[str, bytes]], size: int) -> float:
    """Seconds for plain sqlite3 to append ``rows`` as SqliteEventLog.append would."""
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute(f"PRAGMA synchronous = {synchronous}")
    for migration in MIGRATIONS:
        conn.executescript(migration)
    batches = [rows[i:i + size] for i in range(0, len(rows), size)]
    started = time.perf_counter()
    for batch in batches:
        conn.execute("BEGIN IMMEDIATE")
        last = conn.execute(
            "SELECT coalesce(max(offset), 0) FROM records WHERE topic = ?", (REGISTRY_EVENTS,)
        ).fetchone()[0]
        now = time.time()
        conn.executemany(
            "INSERT INTO records (topic, offset, key, value, appended_at) VALUES (?, ?, ?, ?, ?)",
            [(REGISTRY_EVENTS, last + i, key, value, now) for i, (key, value) in
             enumerate(batch, 1)],
        )
        conn.execute("COMMIT")
    seconds = time.perf_counter() - started
    conn.close()
    return seconds


HEADERS = ("sync", "run", "events", "HTTP ev/s", "raw ev/s", "ratio", "p50 ms", "p95 ms",
           "max ms", "server CPU", "consumers done")


def row_of(r: RunResult) -> tuple[object, ...]:
    drained = "timeout" if r.drained_after is None else f"+{r.drained_after:.1f}s"
    if r.consumer_failures:
        drained += f" ({r.consumer_failures:.0f} failures!)"
    return (r.synchronous, r.run, f"{r.events:,}", f"{r.rate:,.0f}", f"{r.raw_rate:,.0f}",
            f"{r.rate / r.raw_rate:.0%}", f"{r.load.p50 * 1000:.1f}", f"{r.load.p95 * 1000:.1f}",
            f"{r.load.max * 1000:.1f}",
            f"{r.server_cpu:.0%}", drained)


def report_run(r: RunResult) -> None:
    """One line as each run ends, so a long benchmark shows progress."""
    print("  ".join(f"{h}={c}" for h, c in zip(HEADERS, row_of(r), strict=True)))


def report(results: list[RunResult], args: argparse.Namespace) -> None:
    print_table(HEADERS, [row_of(r) for r in results])
    print(f"\n{args.envelope_size}-event envelopes, {args.concurrency} connections;"
          f" targets: ≥ {TARGET_EVENTS_PER_SECOND:,} events/s and ≥ {TARGET_RATIO:.0%} of raw")
    for synchronous in args.synchronous:
        runs = [r for r in results if r.synchronous == synchronous]
        rates = [r.rate for r in runs]
        ratios = [r.rate / r.raw_rate for r in runs]
        met = (min(rates) >= TARGET_EVENTS_PER_SECOND, min(ratios) >= TARGET_RATIO)
        print(f"synchronous={synchronous}: HTTP {spread(rates)} ev/s"
              f" ({'met' if met[0] else 'MISSED'}), raw {spread([r.raw_rate for r in runs])}"
              f" ev/s, ratio {min(ratios):.0%} to {max(ratios):.0%}"
              f" ({'met' if met[1] else 'MISSED'})")


if __name__ == "__main__":
    main()
