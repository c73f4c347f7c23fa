"""The scan state machine, the consumer that queues scans, and what a finished scan publishes."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest

from services.core.eventlog import Delivered
from services.core.schemas import load_schema
from services.ingest.activity import scan_activity
from services.ingest.api import activity_json
from services.scanner.adapters.sqlite import SqliteScanStore
from services.scanner.consumers import ScanConsumer, scan_event
from services.scanner.inventory import inventory_from_json, inventory_to_json
from services.scanner.models import Distribution, Finding, Inventory, Package, ScanRecord, Severity
from services.scanner.sbom import purl
from services.scanner.scans import (
    InvalidTransition,
    check_transition,
    findings_from_json,
    findings_to_json,
    is_stale,
    public_reason,
    rescan_wait,
    summary,
)
from tests.factories import DIGEST_A, DIGEST_B, OCI_MANIFEST, event_dict

PACKAGE = Package("deb", "libssl3", "3.0.19-1~deb12u2", "openssl", None, "var/lib/dpkg/status",
                  "sha256:" + "1" * 64)
FINDING = Finding("DSA-9901-1", ("CVE-2025-9901",), PACKAGE, None, Severity.HIGH, "text")


@pytest.mark.parametrize(("current", "new", "allowed"), [
    (None, "queued", True),
    (None, "done", False),
    ("queued", "scanning", True),
    ("queued", "done", False),
    ("queued", "failed", False),
    ("scanning", "done", True),
    ("scanning", "failed", True),
    ("scanning", "unsupported", True),
    ("scanning", "queued", True),
    ("done", "queued", True),
    ("done", "scanning", False),
    ("failed", "queued", True),
    ("failed", "done", False),
    ("unsupported", "queued", True),
])
def test_transitions(current, new, allowed) -> None:
    if allowed:
        check_transition(current, new)
    else:
        with pytest.raises(InvalidTransition, match=f"to {new}"):
            check_transition(current, new)


@pytest.mark.parametrize(("status", "queued_ago", "wait"), [
    ("done", 100.0, 0.0), ("failed", 45.0, 15.0), ("unsupported", 60.0, 0.0),
    # Queued or running: never queued twice, even long after.
    ("queued", 1000.0, 1.0), ("scanning", 10.0, 50.0),
])
def test_a_rescan_waits_for_the_running_scan_and_the_interval(
    status: str, queued_ago: float, wait: float
) -> None:
    record = ScanRecord(DIGEST_A, "team/app", status, None,  # type: ignore[arg-type]
                        queued_at=1000.0 - queued_ago, updated_at=1000.0)
    assert rescan_wait(record, 1000.0, 60.0) == wait
    assert rescan_wait(None, 1000.0, 60.0) == 0.0


def test_a_public_reason_names_no_address() -> None:
    reason = ("GET http://registry.internal:5000/v2/team/app/blobs/x: registry unreachable"
              " (ConnectError('https://10.0.0.7/')); check that it runs")
    assert public_reason(reason) == (
        "GET <internal address>/v2/team/app/blobs/x: registry unreachable"
        " (ConnectError('<internal address>/')); check that it runs")


def test_summary_counts_every_severity_label() -> None:
    assert summary([FINDING, FINDING]) == {"Unknown": 0, "Negligible": 0, "Low": 0,
                                           "Medium": 0, "High": 2, "Critical": 0}


def test_inventory_and_findings_round_trip_through_json() -> None:
    inventory = Inventory(Distribution("debian", "12", "Debian 12", "bookworm"), (PACKAGE,),
                          {"dpkg": "1"}, ("w",))
    assert inventory_from_json(json.loads(json.dumps(inventory_to_json(inventory)))) == inventory
    assert findings_from_json(json.loads(json.dumps(findings_to_json([FINDING])))) == (FINDING,)


def delivered(event: dict[str, object], offset: int = 0) -> Delivered:
    value = json.dumps({**event, "received_at": "2026-01-02T03:04:06Z"}).encode()
    return Delivered("registry-events", 0, offset, "team/app", value, 0.0)


async def test_the_consumer_queues_manifest_pushes_once_and_ignores_the_rest(
    tmp_path: Path,
) -> None:
    store = SqliteScanStore(tmp_path / "scans.db")
    await store.open()
    try:
        consumer = ScanConsumer(store)
        batch = [
            delivered(event_dict("push", mediaType=OCI_MANIFEST, digest=DIGEST_A, tag="1")),
            delivered(event_dict("push", mediaType=OCI_MANIFEST, digest=DIGEST_A, tag="2")),
            delivered(event_dict("push", mediaType="application/octet-stream", digest=DIGEST_B)),
            delivered(event_dict("pull", mediaType=OCI_MANIFEST, digest=DIGEST_B)),
            delivered(event_dict("delete", digest=DIGEST_B)),
        ]
        await consumer(batch)
        await consumer(batch)  # redelivered: nothing changes
        record = await store.get(DIGEST_A)
        assert record is not None
        assert (record.status, record.repository) == ("queued", "team/app")
        assert await store.get(DIGEST_B) is None
        assert (await store.claim()) is not None
        assert await store.claim() is None
        assert await store.tagged("team/app", "1") == DIGEST_A
        assert await store.tagged("team/app", "2") == DIGEST_A
        await consumer([delivered(event_dict("delete", tag="1"))])
        assert await store.tagged("team/app", "1") is None
        await consumer([delivered(event_dict("delete", digest=DIGEST_A))])
        assert await store.tagged("team/app", "2") is None
    finally:
        await store.close()


async def test_a_deleted_manifest_takes_its_scan_along_unless_a_tag_elsewhere_names_it(
    tmp_path: Path,
) -> None:
    index, amd64, arm64 = DIGEST_A, DIGEST_B, "sha256:" + "c" * 64
    store = SqliteScanStore(tmp_path / "scans.db")
    await store.open()
    try:
        consumer = ScanConsumer(store)
        for repository, digest, tag in [("team/app", index, "1"), ("team/copy", amd64, "x")]:
            await consumer([delivered(event_dict("push", repository, mediaType=OCI_MANIFEST,
                                                 digest=digest, tag=tag))])
        for digest in (amd64, arm64):
            await store.queue(digest, "team/app")  # the worker fanned the index out
        await store.set_platforms(index, [(amd64, "linux/amd64"), (arm64, "linux/arm64")])

        # A tag deleted alone (registry 3.x) leaves the manifest, and its scans, in place.
        await consumer([delivered(event_dict("delete", "team/copy", tag="x"))])
        assert await store.get(amd64) is not None
        await store.tag("team/copy", "x", amd64)

        # The index goes: arm64 is named by nothing else, amd64 is still team/copy:x.
        delete = delivered(event_dict("delete", digest=index))
        await consumer([delete])
        await consumer([delete])  # redelivered: nothing changes
        assert [await store.get(d) is None for d in (index, amd64, arm64)] == [True, False, True]
        assert await store.platforms(index) == []

        # The whole repository goes: the scans its tags named go with it.
        await consumer([delivered(event_dict("delete", "team/copy"))])
        assert await store.get(amd64) is None
    finally:
        await store.close()


@pytest.mark.parametrize(("status", "findings", "expected_summary"), [
    ("done", (FINDING,), {"Unknown": 0, "Negligible": 0, "Low": 0, "Medium": 0, "High": 1,
                          "Critical": 0}),
    ("failed", (), None),
])
def test_a_scan_event_matches_its_schema_and_becomes_an_activity(
    status, findings, expected_summary,
) -> None:
    inventory = Inventory(None, (PACKAGE,)) if status == "done" else None
    record = ScanRecord(DIGEST_A, "team/app", status, None if status == "done" else "boom",
                        1.0, 2.0, inventory, findings)
    event = scan_event(record)
    jsonschema.validate(event, load_schema("events/scan-event.schema.json"))
    assert event["summary"] == expected_summary
    activity = scan_activity(json.dumps(event).encode())
    rendered = activity_json(activity)
    jsonschema.validate(rendered, load_schema("activity.schema.json"))
    assert (rendered["type"], rendered["repository"], rendered["namespace"], rendered["digest"],
            rendered["details"]["status"]) == ("scan.completed", "team/app", "team", DIGEST_A,
                                               status)


@pytest.mark.parametrize(("package", "distribution", "expected"), [
    (PACKAGE, Distribution("debian", "12"),
     "pkg:deb/debian/libssl3@3.0.19-1~deb12u2?distro=debian-12"),
    (Package("apk", "ssl_client", "1.36.1-r15", "busybox"), Distribution("alpine", "3.19.1"),
     "pkg:apk/alpine/ssl_client@1.36.1-r15?distro=alpine-3.19.1"),
    (Package("rpm", "openssl-libs", "1:3.0.7-24.el9"), Distribution("rhel", "9.3"),
     "pkg:rpm/rhel/openssl-libs@1:3.0.7-24.el9?distro=rhel-9.3"),
    (Package("npm", "@babel/core", "7.23.3"), None, "pkg:npm/%40babel/core@7.23.3"),
    (Package("pypi", "requests", "2.31.0"), None, "pkg:pypi/requests@2.31.0"),
])
def test_package_urls_follow_the_purl_types(package, distribution, expected) -> None:
    assert purl(package, distribution).to_string() == expected


@pytest.mark.parametrize(("detectors", "stale"), [
    ({"dpkg": "1", "apk": "1"}, False),
    ({"dpkg": "0", "apk": "1"}, True),
    ({"dpkg": "1"}, True),
    (None, False),
])
def test_an_inventory_by_other_detector_versions_is_stale(detectors, stale) -> None:
    inventory = None if detectors is None else Inventory(None, (), detectors)
    record = ScanRecord(DIGEST_A, "team/app", "done", None, 1.0, 2.0, inventory)
    assert is_stale(record, {"dpkg": "1", "apk": "1"}) is stale
    assert is_stale(None, {"dpkg": "1"}) is False
