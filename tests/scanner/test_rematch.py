"""An empty vulnerability database, then an import: scans say "inventory only" until data is
loaded, and then get their findings from the stored inventory without reading a layer (the
registry is stopped before the import). Run on each store backend (SQLite files; MongoDB on
SecantusDB), which must behave the same."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from pathlib import Path

import pytest

from services.core.registry import RegistryClient
from services.scanner.adapters.mongo import MongoScanStore
from services.scanner.adapters.sqlite import SqliteScanStore
from services.scanner.matcher import OsvMatcher, Rematcher
from services.scanner.ports import ScanStore
from services.scanner.scans import INVENTORY_ONLY, ScanWorkers
from services.scanner.vulndb.adapters.mongo import MongoVulnStore
from services.scanner.vulndb.adapters.sqlite import SqliteVulnStore
from services.scanner.vulndb.importer import import_path
from services.scanner.vulndb.ports import VulnStore
from tests.scanner.status_data import DEBIAN_OS_RELEASE, stanza, status
from tests.support.images import build_oci_image
from tests.support.mongo import own_database
from tests.support.registry import RegistryProcess, skopeo_copy

pytestmark = pytest.mark.registry
OSV = Path(__file__).parent / "e2e_osv"
IMAGE = [{"etc/os-release": DEBIAN_OS_RELEASE,
          "var/lib/dpkg/status": status(stanza("libssl3"), stanza("zlib1g"))}]


@pytest.fixture(params=["sqlite", "mongodb"])
async def stores(
    request: pytest.FixtureRequest, tmp_path: Path
) -> AsyncIterator[tuple[ScanStore, VulnStore]]:
    async with AsyncExitStack() as stack:
        scans: SqliteScanStore | MongoScanStore
        vulns: SqliteVulnStore | MongoVulnStore
        if request.param == "mongodb":
            database = await stack.enter_async_context(own_database(request))
            scans, vulns = MongoScanStore(database), MongoVulnStore(database)
        else:
            scans = SqliteScanStore(tmp_path / "scans.db")
            vulns = SqliteVulnStore(tmp_path / "vulndb.db")
        for store in (scans, vulns):
            await store.open()
            stack.push_async_callback(store.close)
        yield scans, vulns


async def test_an_empty_database_says_so_and_an_import_brings_the_findings(
    stores: tuple[ScanStore, VulnStore], registry: RegistryProcess, tmp_path: Path
) -> None:
    scans, vulns = stores
    digest = build_oci_image(tmp_path / "oci", "1", IMAGE, salt="rematch")
    await asyncio.to_thread(skopeo_copy, f"oci:{tmp_path / 'oci'}:1",
                            f"docker://{registry.host}/team/app:1")
    matcher = OsvMatcher(vulns)
    async with RegistryClient(registry.url) as client:
        await scans.queue(digest, "team/app")
        await ScanWorkers(scans, client, matcher=matcher).drain()
    record = await scans.get(digest)
    assert record is not None
    assert (record.status, record.reason, record.findings) == ("done", INVENTORY_ONLY, ())
    assert record.inventory is not None
    assert len(record.inventory.packages) == 2

    rematcher = Rematcher(scans, vulns, matcher)
    assert await rematcher.run() == 0  # still nothing to match against
    registry.stop()  # whatever follows reads no layer
    report = await import_path(vulns, OSV)
    assert report.broken == []
    assert await rematcher.run() == 1
    record = await scans.get(digest)
    assert record is not None
    assert (record.status, record.reason) == ("done", None)
    assert sorted((f.vulnerability_id, f.package.name, f.fixed_version)
                  for f in record.findings) == [
        ("DEBIAN-CVE-2025-9902", "zlib1g", None),
        ("DSA-9901-1", "libssl3", "3.0.20-1~deb12u1"),
    ]
    assert await rematcher.run() == 0  # nothing changed since
    assert await scans.unmatched() == []
