"""Portal page times at 10,000 repositories: every main page, as a member and as an admin.

What it measures
    ``dockyard serve`` runs as a child process on a data directory holding ``--repositories``
    repositories spread over ``--namespaces`` team namespaces (a third each private, protected,
    public), three tags each, and one repository with ``--tags`` tags whose manifest is really in
    a registry (a plain registry without auth, which Dockyard reads for the tag page's layers);
    ``--activities`` activity entries; the search index rebuilt from that catalog
    (``dockyard search reindex``). The catalog is written through the catalog store, the
    accounts through IdentityService, as the consumers and the CLI would.

    Two signed-in browsers (a session cookie each, through the sign-in form): ``member``, in a
    team owning a tenth of the namespaces, who sees the protected and public ones too; and the
    ``admin``, who sees everything. Each page is fetched ``--samples`` times per browser, one
    request at a time; the time is the client's, from request to the last byte, so it bounds
    the server's time from above (loopback and the client's own work are in it).

Target
    No page over 200 ms: p95 ≤ 200 ms for every page and browser.

    .venv/bin/python bench/portal_pages.py [--repositories 10000] [--samples 30]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
from harness import (
    ADMIN_PASSWORD,
    DockyardServer,
    RegistryProcess,
    describe_machine,
    initialised,
    percentile,
    print_table,
    seed_repositories,
)

from services.auth.app import open_auth
from services.auth.policy import Principal, Visibility
from services.core.config import Config
from services.core.eventlog.sqlite import SqliteEventLog
from services.ingest.adapters.sqlite import SqliteActivityStore, SqliteCatalogStore
from services.ingest.app import ACTIVITY_DB, CATALOG_DB, open_catalog_reader
from services.ingest.models import Activity, PlatformEntry, PutManifest, PutTag

TARGET_MS = 200.0
PASSWORD = "bench-password-1"  # noqa: S105 - a throwaway account of the run
ADMIN = Principal("admin", "user", admin=True)
OCI = "application/vnd.oci.image.manifest.v1+json"
VISIBILITIES: tuple[Visibility, ...] = ("private", "protected", "public")
_CSRF = re.compile(r'name="csrf" value="([^"]+)"')


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.partition("\n")[0])
    parser.add_argument("--repositories", type=int, default=10_000)
    parser.add_argument("--namespaces", type=int, default=100)
    parser.add_argument("--tags", type=int, default=200, help="tags of the big repository")
    parser.add_argument("--activities", type=int, default=50_000)
    parser.add_argument("--samples", type=int, default=30, help="fetches per page and browser")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="dockyard-portal-bench-") as scratch_dir:
        scratch = Path(scratch_dir)
        with RegistryProcess(scratch / "registry") as registry:
            big = "ns000/app00000"
            image = seed_repositories(registry.url, [big], scratch)
            # The periodic sync would only re-read what the seeding wrote: off for the run.
            env = {"DOCKYARD_SYNC_INTERVAL_SECONDS": "0"}
            config = initialised(scratch / "data", registry.url, sync_interval_seconds="0")
            started = time.monotonic()
            asyncio.run(seed(config, args, big, image.digest))
            reindex(config, env)
            print(f"seeded {args.repositories} repositories, {args.activities} activities in"
                  f" {time.monotonic() - started:.1f}s")
            print(describe_machine(config.server.data_dir))
            with DockyardServer(config, env) as server:
                rows = measure(server.url, big, args.samples)
    print_table(["page", "browser", "p50 ms", "p95 ms", "max ms", "bytes"], rows)
    worst = max(float(row[3]) for row in rows)
    slowest = max(float(row[4]) for row in rows)
    verdict = "met" if worst <= TARGET_MS else "MISSED"
    print(f"\nslowest p95 {worst:.1f} ms, slowest single fetch {slowest:.1f} ms;"
          f" target p95 ≤ {TARGET_MS:.0f} ms on every page: {verdict}")


async def seed(config: Config, args: argparse.Namespace, big: str, digest: str) -> None:
    event_log = SqliteEventLog(config.path(config.eventlog.path))
    await event_log.open()
    try:
        async with (open_catalog_reader(config) as catalog,
                    open_auth(config, event_log, catalog) as auth):
            identity = auth.identity
            for name in ("member", "outsider"):
                await identity.create_user(ADMIN, name, email=f"{name}@example.test",
                                           password=PASSWORD)
            for n in range(args.namespaces):
                team = f"team{n:03d}"
                owner = "member" if n % 10 == 0 else "admin"
                await identity.create_team(ADMIN, team, owner=owner)
                await identity.create_namespace(ADMIN, f"ns{n:03d}", team=team,
                                                visibility=VISIBILITIES[n % 3],
                                                description=f"Namespace **{n}**")
    finally:
        await event_log.close()
    catalog = SqliteCatalogStore(config.path(CATALOG_DB))
    await catalog.open()
    at = datetime(2026, 1, 1, tzinfo=UTC)
    platforms = (PlatformEntry("linux", "amd64", None, digest, 1024),)
    batch: list[tuple[str, list[PutManifest | PutTag]]] = []
    for r in range(args.repositories):
        name = f"ns{r % args.namespaces:03d}/app{r:05d}"
        tags = [f"t{t:03d}" for t in range(args.tags if name == big else 3)]
        operations: list[PutManifest | PutTag] = [
            PutManifest(name, digest, OCI, "image", None, 1024, platforms, None, "member", at)]
        operations += [PutTag(name, tag, digest, "member", at + timedelta(seconds=r))
                       for tag in tags]
        batch.append((f"seed-{r}", operations))
        if len(batch) == 500:
            await catalog.apply(batch)
            batch = []
    await catalog.apply(batch)
    await catalog.close()
    activity = SqliteActivityStore(config.path(ACTIVITY_DB))
    await activity.open()
    entries = [Activity(f"bench-{i}", "tag.pushed", "member",
                        f"ns{i % args.namespaces:03d}/app{i % args.repositories:05d}",
                        f"ns{i % args.namespaces:03d}", "t000", digest,
                        at + timedelta(seconds=i), "10.0.0.1", "docker/24")
               for i in range(args.activities)]
    for start in range(0, len(entries), 5000):
        await activity.record(entries[start:start + 5000])
    await activity.close()


def reindex(config: Config, env: dict[str, str]) -> None:
    """``dockyard search reindex``: the search index from the seeded catalog."""
    subprocess.run([str(Path(sys.executable).parent / "dockyard"), "search", "reindex",
                    "--config", str(config.server.data_dir / "dockyard.toml")],
                   check=True, env={**os.environ, **env}, capture_output=True)


def signed_in(url: str, username: str, password: str) -> httpx.Client:
    client = httpx.Client(base_url=url, timeout=30, follow_redirects=True)
    token = _CSRF.search(client.get("/login").text)
    if token is None:
        raise RuntimeError("the sign-in page has no form token")
    response = client.post("/login", data={"username": username, "password": password,
                                           "csrf": token[1], "next": "/"})
    response.raise_for_status()
    if "Welcome," not in response.text:
        raise RuntimeError(f"{username} could not sign in: {response.text[:300]}")
    return client


def measure(url: str, big: str, samples: int) -> list[list[object]]:
    pages = ["/", "/explore", "/explore?q=app00", "/explore?q=app00&partial=1",
             "/n/ns000", "/n/ns001", f"/r/{big}", f"/r/{big}/-/tags/t000",
             f"/r/{big}/-/tags/t000/delete", "/activity", "/activity?namespace=ns001",
             "/namespaces", "/teams", "/tokens", "/profile"]
    rows: list[list[object]] = []
    for who, password in (("member", PASSWORD), ("admin", ADMIN_PASSWORD)):
        client = signed_in(url, who, password)
        try:
            for path in [*pages, *(["/admin/users"] if who == "admin" else [])]:
                times, size = [], 0
                for _ in range(samples):
                    start = time.perf_counter()
                    response = client.get(path)
                    times.append((time.perf_counter() - start) * 1000)
                    if response.status_code != 200:
                        raise RuntimeError(f"{who} GET {path}: {response.status_code}")
                    size = len(response.content)
                rows.append([path, who, f"{percentile(times, 50):.1f}",
                             f"{percentile(times, 95):.1f}", f"{max(times):.1f}", size])
        finally:
            client.close()
    return rows


if __name__ == "__main__":
    main()
