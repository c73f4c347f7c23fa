"""The indexer's scan-events path: a finished scan, as the scanner records and publishes it,
makes the image's tags findable by the vulnerability ids found (advisories and aliases) and
gives them a summary; a failed rescan takes that back. The scanner's real SQLite store holds
the findings, read through ``scan_findings``, as in ``serve``."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp import web

from services.core.eventlog import Delivered
from services.core.registry import RegistryClient
from services.scanner.adapters.sqlite import SqliteScanStore
from services.scanner.api import SCAN_STORE
from services.scanner.consumers import SCAN_EVENTS, scan_event
from services.scanner.models import Finding, Package, Severity
from services.search.adapters.sqlite import SqliteSearchIndex
from services.search.app import scan_findings
from services.search.consumers import IndexConsumer
from tests.search.indexing import Changes, names, search_all

FINDING = Finding("DSA-5000-1", ("CVE-2024-1111",), Package("deb", "openssl", "3.0.1"), "3.0.2",
                  Severity.HIGH)


@pytest.fixture
async def parts(tmp_path: Path) -> AsyncIterator[tuple[SqliteSearchIndex, SqliteScanStore,
                                                        IndexConsumer]]:
    index = SqliteSearchIndex(tmp_path / "search.db")
    scans = SqliteScanStore(tmp_path / "scans.db")
    await index.open()
    await scans.open()
    app = web.Application()
    app[SCAN_STORE] = scans

    async def no_descriptions(_: list[str]) -> dict[str, str]:
        return {}

    # Scan events never reach the registry: the client points nowhere and is never called.
    async with RegistryClient("http://127.0.0.1:9", timeout=1) as registry:
        yield index, scans, IndexConsumer(index, registry, no_descriptions, scan_findings(app))
    await scans.close()
    await index.close()


def delivered(value: dict[str, object], offset: int) -> Delivered:
    return Delivered(SCAN_EVENTS, 0, offset, "team/app", json.dumps(value).encode(), 0.0)


async def test_scan_events_index_ids_and_summaries(
    parts: tuple[SqliteSearchIndex, SqliteScanStore, IndexConsumer],
) -> None:
    index, scans, consume = parts
    changes = Changes()
    digest = changes.push("team/app", "1")
    await changes.apply(index)
    await scans.queue(digest, "team/app")
    await scans.claim()
    done = await scans.finish(digest, "done", findings=[FINDING])
    await consume([delivered(scan_event(done), 1)])

    for text in ("CVE-2024-1111", "DSA-5000", "cve-2024"):
        found = await search_all(index, text)
        assert names(found) == ["team/app:1"], text
    (tag,) = await search_all(index, "app:1")
    assert tag["vulnerability_summary"]["High"] == 1

    await scans.queue(digest, "team/app", again=True)
    await scans.claim()
    failed = await scans.finish(digest, "failed", reason="layer gone")
    await consume([delivered(scan_event(failed), 2)])
    assert await search_all(index, "CVE-2024-1111") == []
    (tag,) = await search_all(index, "app:1")
    assert tag["vulnerability_summary"] is None
