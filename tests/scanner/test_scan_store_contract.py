"""Contract suite of the ScanStore port: the SQLite and MongoDB adapters behave the same.

The MongoDB adapter runs against SecantusDB (tests/support/mongo.py).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from services.scanner.adapters.mongo import MongoScanStore
from services.scanner.adapters.sqlite import SqliteScanStore
from services.scanner.models import Distribution, Finding, Inventory, Package, Severity
from services.scanner.ports import ScanStore
from services.scanner.scans import INVENTORY_ONLY, InvalidTransition
from tests.support.mongo import own_database

A, B, C = ("sha256:" + ch * 64 for ch in "abc")
PACKAGE = Package("deb", "libssl3", "3.0.19-1~deb12u2", "openssl", None,
                  "var/lib/dpkg/status", "sha256:" + "1" * 64)
INVENTORY = Inventory(Distribution("debian", "12"), (PACKAGE,), {"dpkg": "1"}, ("a warning",))
FINDING = Finding("DSA-9901-1", ("CVE-2025-9901",), PACKAGE, "3.0.20-1~deb12u1",
                  Severity.CRITICAL, "openssl - security update")


@pytest.fixture(params=["sqlite", "mongodb"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[ScanStore]:
    if request.param == "mongodb":
        async with own_database(request) as database:
            mongo = MongoScanStore(database)
            await mongo.open()
            yield mongo
        return
    sqlite = SqliteScanStore(tmp_path / "scans.db")
    await sqlite.open()
    yield sqlite
    await sqlite.close()


async def test_a_scan_goes_queued_scanning_done_with_its_report(store: ScanStore) -> None:
    assert await store.queue(A, "team/app")
    assert not await store.queue(A, "team/other")  # known: a retag or a copy scans nothing
    record = await store.get(A)
    assert record is not None
    assert (record.status, record.repository, record.inventory, record.findings) == (
        "queued", "team/app", None, ())
    claimed = await store.claim()
    assert claimed is not None
    assert (claimed.digest, claimed.status) == (A, "scanning")
    assert await store.claim() is None
    done = await store.finish(A, "done", inventory=INVENTORY, findings=[FINDING])
    assert (done.status, done.reason, done.inventory, done.findings) == (
        "done", None, INVENTORY, (FINDING,))
    assert await store.get(A) == done
    assert await store.inventories() == [(A, INVENTORY)]


async def test_claims_take_the_oldest_and_never_the_same_scan_twice(store: ScanStore) -> None:
    for digest in (A, B, C):
        await store.queue(digest, "team/app")
        await asyncio.sleep(0.002)
    claimed = await asyncio.gather(*(store.claim() for _ in range(4)))
    assert sorted(r.digest for r in claimed if r is not None) == [A, B, C]
    assert claimed.count(None) == 1


async def test_failed_and_unsupported_keep_their_reason_and_no_report(store: ScanStore) -> None:
    await store.queue(A, "team/app")
    await store.queue(B, "team/chart")
    await store.claim()
    await store.claim()
    failed = await store.finish(A, "failed", reason="layer sha256:…: corrupt gzip data")
    unsupported = await store.finish(B, "unsupported", reason="helm chart artifact")
    assert (failed.status, failed.reason, failed.findings) == (
        "failed", "layer sha256:…: corrupt gzip data", ())
    assert (unsupported.status, unsupported.reason) == ("unsupported", "helm chart artifact")
    assert await store.inventories() == []


async def test_transitions_outside_the_state_machine_are_refused(store: ScanStore) -> None:
    with pytest.raises(InvalidTransition):
        await store.finish(A, "done")
    await store.queue(A, "team/app")
    with pytest.raises(InvalidTransition):
        await store.finish(A, "done")  # still queued: it never ran
    assert (await store.get(A)).status == "queued"  # type: ignore[union-attr]


async def test_a_rescan_requeues_a_finished_scan_only(store: ScanStore) -> None:
    await store.queue(A, "team/app")
    assert not await store.queue(A, "team/app", again=True)  # already queued
    await store.claim()
    assert not await store.queue(A, "team/app", again=True)  # running
    await store.finish(A, "failed", reason="registry unreachable")
    assert await store.queue(A, "team/app", again=True)
    record = await store.get(A)
    assert record is not None
    assert (record.status, record.reason) == ("queued", None)


async def test_interrupted_scans_go_back_to_the_queue(store: ScanStore) -> None:
    await store.queue(A, "team/app")
    await store.claim()
    assert await store.requeue_interrupted() == 1
    assert (await store.get(A)).status == "queued"  # type: ignore[union-attr]


async def test_findings_are_replaced_for_a_done_scan_only(store: ScanStore) -> None:
    await store.queue(A, "team/app")
    await store.claim()
    await store.finish(A, "done", reason="inventory only", inventory=INVENTORY)
    await store.save_findings(A, [FINDING])
    record = await store.get(A)
    assert record is not None
    assert (record.findings, record.reason) == ((FINDING,), None)
    await store.queue(B, "team/app")
    with pytest.raises(LookupError):
        await store.save_findings(B, [FINDING])


async def test_forget_removes_the_record(store: ScanStore) -> None:
    await store.queue(A, "team/app")
    await store.forget(A)
    assert await store.get(A) is None
    await store.ping()


async def test_tags_follow_pushes_and_deletes(store: ScanStore) -> None:
    await store.tag("team/app", "1", A)
    await store.tag("team/app", "2", A)
    await store.tag("team/app", "3", B)
    await store.tag("team/other", "1", C)
    await store.tag("team/app", "1", B)  # moved
    assert [await store.tagged("team/app", t) for t in ("1", "2", "3", "4")] == [B, A, B, None]
    await store.untag("team/app", name="3")
    assert await store.tagged("team/app", "3") is None
    await store.untag("team/app", digest=A)
    assert await store.tagged("team/app", "2") is None
    assert await store.tagged("team/app", "1") == B
    await store.untag("team/app")
    assert await store.tagged("team/app", "1") is None
    assert await store.tagged("team/other", "1") == C


async def test_index_platforms_are_kept_in_order(store: ScanStore) -> None:
    assert await store.platforms(A) == []
    await store.set_platforms(A, [(C, "linux/arm64/v8"), (B, "linux/amd64")])
    assert await store.platforms(A) == [(C, "linux/arm64/v8"), (B, "linux/amd64")]
    await store.set_platforms(A, [(B, "linux/amd64")])
    assert await store.platforms(A) == [(B, "linux/amd64")]


async def finished(store: ScanStore, digest: str, **outcome: Any) -> None:
    await store.queue(digest, "team/app")
    await store.claim()
    await store.finish(digest, "done", **outcome)


async def test_unmatched_lists_the_scans_done_while_the_database_was_empty(
    store: ScanStore,
) -> None:
    await finished(store, A, reason=INVENTORY_ONLY, inventory=INVENTORY)
    await finished(store, B, inventory=INVENTORY, findings=[FINDING])
    await finished(store, C, reason=INVENTORY_ONLY)  # a remote scanner's: no inventory
    assert await store.unmatched() == [(A, INVENTORY)]
    await store.save_findings(A, [])
    assert await store.unmatched() == []


async def test_affected_finds_findings_by_id_or_alias_in_done_scans(store: ScanStore) -> None:
    other = Finding("GHSA-xxxx", (), PACKAGE, None, Severity.LOW)
    await finished(store, A, inventory=INVENTORY, findings=[FINDING, other])
    await finished(store, B, inventory=INVENTORY, findings=[other])
    assert await store.affected(["CVE-2025-9901"]) == [(A, FINDING)]
    assert await store.affected(["DSA-9901-1", "GHSA-xxxx"]) == [
        (A, FINDING), (A, other), (B, other)]
    assert await store.affected(["CVE-1999-0001"]) == []
    await store.queue(B, "team/app", again=True)  # a rescan: no report until it is done
    assert await store.affected(["GHSA-xxxx"]) == [(A, other)]


async def test_tags_of_reaches_manifests_directly_and_through_an_index(
    store: ScanStore,
) -> None:
    index = "sha256:" + "f" * 64
    await store.tag("team/app", "1", A)
    await store.tag("team/multi", "latest", index)
    await store.tag("team/multi", "also", index)
    await store.set_platforms(index, [(A, "linux/amd64"), (B, "linux/arm64")])
    assert await store.tags_of([A, B]) == [
        ("team/app", "1", A, A),
        ("team/multi", "also", index, A),
        ("team/multi", "also", index, B),
        ("team/multi", "latest", index, A),
        ("team/multi", "latest", index, B),
    ]
    assert await store.tags_of([C]) == []
    assert await store.untag("team/multi", name="also") == [index]
    assert await store.untag("team/multi", digest=index) == [index]
    assert await store.untag("team/multi") == []
    assert await store.tags_of([B]) == []
    await store.tag("team/app", "2", B)
    assert await store.untag("team/app") == [A, B]
