"""Scan workers against a real registry (no auth): outcomes other than done, and the fan-out
of an index, each recorded with its reason and published once."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp.test_utils import TestServer

from services.core.registry import RegistryClient
from services.scanner.adapters.sqlite import SqliteScanStore
from services.scanner.clair import ClairScanner
from services.scanner.models import ScanRecord
from services.scanner.scans import INVENTORY_ONLY, ScanWorkers
from tests.support.clair_fake import FakeClair, FakePackage, FakeVulnerability
from tests.support.images import build_oci_image, build_oci_index, read_json_blob
from tests.support.registry import RegistryProcess, skopeo_copy

pytestmark = pytest.mark.registry
OS_RELEASE = {"etc/os-release": b"ID=alpine\nVERSION_ID=3.19.1\n"}


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SqliteScanStore]:
    opened = SqliteScanStore(tmp_path / "scans.db")
    await opened.open()
    yield opened
    await opened.close()


async def push(layout: Path, tag: str, registry: RegistryProcess, ref: str, **options) -> str:
    return await asyncio.to_thread(skopeo_copy, f"oci:{layout}:{tag}",
                                   f"docker://{registry.host}/{ref}", **options)


async def test_an_image_without_a_matcher_is_done_as_inventory_only_and_published(
    registry: RegistryProcess, store: SqliteScanStore, tmp_path: Path
) -> None:
    digest = build_oci_image(tmp_path / "oci", "a", [OS_RELEASE], salt="a")
    await push(tmp_path / "oci", "a", registry, "team/a:1")
    published: list[ScanRecord] = []

    async def publish(record: ScanRecord) -> None:
        published.append(record)

    async with RegistryClient(registry.url) as client:
        await store.queue(digest, "team/a")
        await ScanWorkers(store, client, matcher=None, publish=publish).drain()
    record = await store.get(digest)
    assert record is not None
    assert (record.status, record.reason, record.findings) == ("done", INVENTORY_ONLY, ())
    assert record.inventory is not None
    assert record.inventory.distribution is not None
    assert record.inventory.distribution.id == "alpine"
    assert published == [record]


async def test_an_index_fans_out_to_its_platforms(
    registry: RegistryProcess, store: SqliteScanStore, tmp_path: Path
) -> None:
    index = build_oci_index(tmp_path / "oci", "i", layers=[OS_RELEASE], salt="i")
    await push(tmp_path / "oci", "i", registry, "team/i:1", all=True)
    async with RegistryClient(registry.url) as client:
        await store.queue(index, "team/i")
        await ScanWorkers(store, client, matcher=None, concurrency=2).drain()
    platforms = await store.platforms(index)
    assert [name for _, name in platforms] == ["linux/amd64", "linux/arm64/v8"]
    assert await store.get(index) is None
    for digest, _ in platforms:
        record = await store.get(digest)
        assert record is not None
        assert record.status == "done"


@pytest.mark.parametrize(("timeout", "reference", "reason"), [
    (1e-6, None, "scan timed out after 0 s"),
    (60.0, "sha256:" + "0" * 64, "is no longer in team/gone"),
])
async def test_failures_are_recorded_with_their_reason(
    registry: RegistryProcess, store: SqliteScanStore, tmp_path: Path,
    timeout: float, reference: str | None, reason: str,
) -> None:
    digest = build_oci_image(tmp_path / "oci", "g", [OS_RELEASE], salt="g")
    await push(tmp_path / "oci", "g", registry, "team/gone:1")
    target = reference or digest
    async with RegistryClient(registry.url) as client:
        await store.queue(target, "team/gone")
        await ScanWorkers(store, client, matcher=None, timeout=timeout).drain()
    record = await store.get(target)
    assert record is not None
    assert record.status == "failed"
    assert reason in (record.reason or "")
    assert record.inventory is None


async def test_an_unreachable_registry_fails_the_scan_and_it_can_be_retried(
    store: SqliteScanStore,
) -> None:
    digest = "sha256:" + "1" * 64
    async with RegistryClient("http://127.0.0.1:9", timeout=2) as client:
        await store.queue(digest, "team/app")
        await ScanWorkers(store, client, matcher=None).drain()
    record = await store.get(digest)
    assert record is not None
    assert record.status == "failed"
    assert "registry unreachable" in (record.reason or "")
    # The registry's internal address stays in the server log, not in what readers see.
    assert "127.0.0.1:9" not in (record.reason or "")
    assert "<internal address>" in (record.reason or "")
    assert await store.queue(digest, "team/app", again=True)


async def test_a_remote_backend_reports_the_findings_through_the_same_pipeline(
    registry: RegistryProcess, store: SqliteScanStore, tmp_path: Path
) -> None:
    """Clair v4 as the backend, played by tests/support/clair_fake.py (a FAKE: real Clair needs
    PostgreSQL and feeds); it fetches the layers from the real registry itself."""
    digest = build_oci_image(tmp_path / "oci", "c", [OS_RELEASE], salt="c")
    await push(tmp_path / "oci", "c", registry, "team/c:1")
    layer = read_json_blob(tmp_path / "oci", digest)["layers"][0]["digest"]
    psk = b"a pre-shared key of thirty-two b"
    fake = FakeClair(psk, contents={layer: [FakePackage("musl", "1.2.4-r2", "musl",
                                                        "lib/apk/db/installed")]},
                     vulnerabilities=[FakeVulnerability("CVE-2025-0001", "musl", "1.2.4-r2",
                                                        "1.2.4-r3", "High", "musl bug")])
    server = TestServer(fake.app())
    await server.start_server()
    scopes: list[str] = []

    async def pull_token(scope: str) -> str:
        scopes.append(scope)
        return "pull-only"

    clair = ClairScanner(str(server.make_url("")), psk, "dockyard", registry.url, pull_token)
    try:
        async with RegistryClient(registry.url) as client:
            await store.queue(digest, "team/c")
            await ScanWorkers(store, client, matcher=None, remote=clair).drain()
    finally:
        await clair.aclose()
        await server.close()
    record = await store.get(digest)
    assert record is not None
    assert (record.status, record.reason, record.inventory) == ("done", None, None)
    assert [(f.vulnerability_id, f.package.name, f.fixed_version, f.severity.label)
            for f in record.findings] == [("CVE-2025-0001", "musl", "1.2.4-r3", "High")]
    assert scopes == ["repository:team/c:pull"]
