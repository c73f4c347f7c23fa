"""Scan on push, end to end: skopeo pushes OCI images to the real registry, whose notifications
reach this Dockyard; the scanner streams the layers back with a pull-only service token and
reports the exact inventory and findings (OSV fixture in tests/scanner/e2e_osv). Then a scan's
life beyond its first run: scanned while the database is empty (and saying so), matched by
``dockyard vulndb import`` without a layer read (the registry is stopped), found by
vulnerability id, and forgotten when the manifest is deleted from the registry."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest

from services.cli import main
from services.core.config import Config
from services.core.web import JOBS
from services.scanner.scans import INVENTORY_ONLY
from services.scanner.vulndb.adapters.sqlite import SqliteVulnStore
from services.scanner.vulndb.importer import import_path
from tests.scanner.serving import (
    ADMIN,
    finished,
    initialised_for_scans,
    push,
    registry_for,
    scans,
)
from tests.scanner.status_data import DEBIAN_OS_RELEASE, stanza, status
from tests.support.dockyard import Dockyard, running_dockyard
from tests.support.images import (
    OCI_CONFIG,
    OCI_LAYER_GZIP,
    build_helm_chart,
    build_oci_artifact,
    build_oci_image,
    build_oci_index,
    read_json_blob,
)
from tests.support.openapi import assert_matches_openapi
from tests.support.registry import RegistryProcess, skopeo_delete
from tests.support.waiting import eventually

OSV = Path(__file__).parent / "e2e_osv"
IMAGES = "/api/v1/vulnerabilities/{id}/images"
SITE = "usr/lib/python3/dist-packages"
STATUS = "var/lib/dpkg/status"

# Bottom-up: a Debian base with bash and Python's requests; a layer installing tzdata; a layer
# that purges bash (dpkg rewrites status) and deletes requests through a whiteout.
LAYERS: list[dict[str, bytes]] = [
    {
        "etc/os-release": DEBIAN_OS_RELEASE,
        STATUS: status(stanza("base-files"), stanza("bash"), stanza("libssl3"),
                       stanza("zlib1g")),
        f"{SITE}/requests-2.31.0.dist-info/METADATA":
            b"Metadata-Version: 2.1\nName: requests\nVersion: 2.31.0\n",
    },
    {
        STATUS: status(stanza("base-files"), stanza("bash"), stanza("libssl3"),
                       stanza("zlib1g"), stanza("tzdata")),
        "usr/share/zoneinfo/UTC": b"TZif2",
    },
    {
        STATUS: status(stanza("base-files"), stanza("libssl3"), stanza("zlib1g"),
                       stanza("tzdata")),
        f"{SITE}/.wh.requests-2.31.0.dist-info": b"",
    },
]

# One layer with two packages the OSV fixture knows about.
IMAGE = [{"etc/os-release": DEBIAN_OS_RELEASE,
          "var/lib/dpkg/status": status(stanza("libssl3"), stanza("zlib1g"))}]


@pytest.fixture
def config(tmp_path: Path) -> Config:
    return initialised_for_scans(tmp_path / "data")


@pytest.fixture
def registry(config: Config) -> Iterator[RegistryProcess]:
    with registry_for(config) as process:
        yield process


@pytest.fixture
def osv_records() -> Path | None:
    """What is imported into the vulnerability database before Dockyard starts."""
    return OSV


@pytest.fixture
async def dockyard(config: Config, registry: RegistryProcess,
                   osv_records: Path | None) -> AsyncIterator[Dockyard]:
    if osv_records is not None:
        vulns = SqliteVulnStore(config.path(config.scanner.vulndb))
        await vulns.open()
        report = await import_path(vulns, osv_records)
        await vulns.close()
        assert report.broken == []
    async with running_dockyard(config) as running:
        yield running


def layer_digests(layout: Path, manifest_digest: str) -> list[str]:
    hex_digest = manifest_digest.removeprefix("sha256:")
    manifest = json.loads((layout / "blobs" / "sha256" / hex_digest).read_text())
    return [layer["digest"] for layer in manifest["layers"]]


@pytest.mark.registry
async def test_a_pushed_image_gets_its_exact_inventory_and_findings(
    dockyard: Dockyard, registry: RegistryProcess, tmp_path: Path
) -> None:
    layout = tmp_path / "layout"
    digest = build_oci_image(layout, "app", LAYERS, salt="e2e")
    base, tz, purge = layer_digests(layout, digest)
    assert await push(layout, "app", registry, "team/app:1.0") == digest

    (item,) = await eventually(lambda: scans(dockyard.client, "team/app", "1.0"), finished,
                               what="the scan of team/app:1.0", timeout=60)
    assert (item["digest"], item["status"], item["reason"]) == (digest, "done", None)
    assert item["distribution"] == "debian 12"
    assert item["warnings"] == []
    assert item["summary"] == {"Unknown": 1, "Negligible": 0, "Low": 0, "Medium": 0,
                               "High": 0, "Critical": 1}
    assert sorted((f["vulnerability_id"], f["aliases"], f["package"], f["source_name"],
                   f["installed_version"], f["fixed_version"], f["fixed"], f["severity"],
                   f["layer"]) for f in item["findings"]) == [
        ("DEBIAN-CVE-2025-9902", ["CVE-2025-9902"], "zlib1g", "zlib", "1:1.2.13.dfsg-1", None,
         False, "Unknown", base),
        ("DSA-9901-1", ["CVE-2025-9901"], "libssl3", "openssl", "3.0.19-1~deb12u2",
         "3.0.20-1~deb12u1", True, "Critical", base),
    ]

    # The catalog's tags carry the summary, through the scanner's module API.
    tags = (await dockyard.client.get("/api/v1/tags", params={"repository": "team/app"})).json()
    assert [(t["name"], t["scan"]) for t in tags["items"]] == [
        ("1.0", {"status": "done", "summary": item["summary"]})]

    response = await dockyard.client.get(f"/api/v1/scans/{digest}/sbom")
    assert response.status_code == 200
    assert response.headers["Content-Type"].startswith("application/vnd.cyclonedx+json")
    sbom = response.json()
    components = {(c["name"], c["version"]): {p["name"]: p["value"] for p in c["properties"]}
                  ["dockyard:layer"] for c in sbom["components"]}
    # bash was purged and requests whited out by the top layer: neither is installed.
    assert components == {
        ("base-files", "12.4+deb12u11"): base,
        ("libssl3", "3.0.19-1~deb12u2"): base,
        ("zlib1g", "1:1.2.13.dfsg-1"): base,
        ("tzdata", "2025b-0+deb12u2"): tz,
    }
    assert purge not in components.values()
    assert sbom["metadata"]["component"]["version"] == digest


@pytest.mark.registry
async def test_each_platform_is_scanned_and_non_images_are_unsupported(
    dockyard: Dockyard, registry: RegistryProcess, tmp_path: Path
) -> None:
    layout = tmp_path / "layout"
    index = build_oci_index(layout, "multi", layers=LAYERS[:1], salt="multi",
                            attestations=True)
    await push(layout, "multi", registry, "team/multi:1", all=True)
    items = await eventually(lambda: scans(dockyard.client, "team/multi", "1"), finished,
                             what="the scans of team/multi:1", timeout=60)
    # Four dpkg packages and requests, in each platform's own scan.
    assert sorted((i["platform"], i["status"], i["packages"]) for i in items) == [
        ("linux/amd64", "done", 5), ("linux/arm64/v8", "done", 5)]
    tags = (await dockyard.client.get("/api/v1/tags", params={"repository": "team/multi"}))
    (tag,) = tags.json()["items"]
    # Only the base layer here, so bash and requests are still installed: each platform has
    # libssl3 (Critical), zlib1g and bash (unfixed, Unknown), requests (Medium); the index adds
    # both platforms up.
    assert tag["scan"] == {"status": "done", "summary": {
        "Unknown": 4, "Negligible": 0, "Low": 0, "Medium": 2, "High": 0, "Critical": 2}}
    # BuildKit attestation manifests are pushed too: recorded as unsupported, not as images.
    attestations = [entry["digest"] for entry in read_json_blob(layout, index)["manifests"]
                    if entry["platform"]["os"] == "unknown"]
    for attestation in attestations:
        record = await eventually(
            lambda a=attestation: dockyard.client.get(f"/api/v1/scans/{a}"),
            lambda r: r.status_code == 200 and r.json()["status"] == "unsupported",
            what="the attestation's scan record", timeout=60)
        assert record.json()["reason"].startswith("attestation artifact")

    build_helm_chart(layout, "chart")
    chart = await push(layout, "chart", registry, "team/chart:0.1.0")
    (item,) = await eventually(lambda: scans(dockyard.client, "team/chart", "0.1.0"),
                               finished, what="the scan of a Helm chart", timeout=60)
    assert (item["digest"], item["status"], item["summary"], item["findings"]) == (
        chart, "unsupported", None, None)
    assert item["reason"] == ("helm chart artifact (application/vnd.cncf.helm.config.v1+json),"
                              " not a container image")
    response = await dockyard.client.get(f"/api/v1/scans/{chart}/sbom")
    assert response.status_code == 409
    assert response.json()["error"]["code"] == "scan_not_done"


@pytest.mark.registry
async def test_scans_respect_visibility_and_bad_input_is_refused(
    dockyard: Dockyard, registry: RegistryProcess, tmp_path: Path
) -> None:
    layout = tmp_path / "layout"
    digest = build_oci_image(layout, "app", LAYERS[:1], salt="private")
    await push(layout, "app", registry, "team/private:1")
    await eventually(lambda: scans(dockyard.client, "team/private", "1"), finished,
                     what="the scan of team/private:1", timeout=60)
    async with httpx.AsyncClient(base_url=dockyard.url) as anonymous:
        hidden = await anonymous.get("/api/v1/scans",
                                     params={"repository": "team/private", "tag": "1"})
        assert hidden.status_code == 404
        assert (await anonymous.get(f"/api/v1/scans/{digest}")).status_code == 404
        refused = await anonymous.post("/api/v1/scans",
                                       json={"repository": "team/private", "tag": "1"})
        assert refused.status_code == 401
    for params, code in [({"repository": "../x", "tag": "1"}, "invalid_repository"),
                         ({"repository": "team/private", "tag": "-bad"}, "invalid_tag"),
                         ({"repository": "team/private", "tag": "nope"}, "tag_not_found")]:
        response = await dockyard.client.get("/api/v1/scans", params=params)
        assert response.json()["error"]["code"] == code
    assert (await dockyard.client.get("/api/v1/scans/sha256:xyz")).status_code == 400

    # A rescan queues the tag's manifests again and they come back done.
    response = await dockyard.client.post("/api/v1/scans",
                                          json={"repository": "team/private", "tag": "1"})
    assert response.status_code == 202
    assert [i["status"] for i in response.json()["items"]] == ["queued"]
    (item,) = await eventually(lambda: scans(dockyard.client, "team/private", "1"), finished,
                               what="the rescan", timeout=60)
    assert item["status"] == "done"


@pytest.mark.registry
async def test_a_broken_layer_fails_the_scan_with_its_reason_and_is_in_the_activity_log(
    dockyard: Dockyard, registry: RegistryProcess, tmp_path: Path
) -> None:
    layout = tmp_path / "layout"
    broken = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\x03this is not deflate data at all"
    config = json.dumps({"architecture": "amd64", "os": "linux", "config": {},
                         "rootfs": {"type": "layers", "diff_ids": []}}).encode()
    digest = build_oci_artifact(layout, "broken", [(OCI_LAYER_GZIP, broken)],
                                config_media_type=OCI_CONFIG, config=config)
    await push(layout, "broken", registry, "team/broken:1")
    (item,) = await eventually(lambda: scans(dockyard.client, "team/broken", "1"), finished,
                               what="the scan of a broken image", timeout=60)
    assert (item["digest"], item["status"], item["summary"], item["findings"]) == (
        digest, "failed", None, None)
    assert "corrupt gzip data" in item["reason"]

    response = await eventually(
        lambda: dockyard.client.get("/api/v1/activities",
                                    params={"type": "scan.completed",
                                            "repository": "team/broken"}),
        lambda r: len(r.json()["items"]) == 1, what="the scan.completed activity")
    (entry,) = response.json()["items"]
    assert (entry["digest"], entry["details"]["status"], entry["details"]["summary"]) == (
        digest, "failed", None)
    assert "corrupt gzip data" in entry["details"]["reason"]


async def affected(client: httpx.AsyncClient, identifier: str) -> httpx.Response:
    response = await client.get(f"/api/v1/vulnerabilities/{identifier}/images")
    assert_matches_openapi(response, IMAGES, "get")
    return response


@pytest.mark.registry
@pytest.mark.parametrize("osv_records", [None])
async def test_empty_database_then_import_then_lookup_then_delete(
    dockyard: Dockyard, registry: RegistryProcess, tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert "rematch" in [job.name for job in dockyard.app[JOBS]]
    layout = tmp_path / "layout"
    digest = build_oci_image(layout, "1", IMAGE, salt="lifecycle")
    await push(layout, "1", registry, "team/app:1")
    (item,) = await eventually(lambda: scans(dockyard.client, "team/app", "1"), finished,
                               what="the scan of team/app:1", timeout=60)
    # Not "no vulnerabilities": nothing was matched, and the scan says why.
    assert (item["status"], item["reason"], item["summary"], item["findings"],
            item["packages"]) == ("done", INVENTORY_ONLY, None, None, 2)
    tags = (await dockyard.client.get("/api/v1/tags", params={"repository": "team/app"})).json()
    assert [t["scan"] for t in tags["items"]] == [{"status": "done", "summary": None}]

    registry.stop()  # the import matches the stored inventory: no layer is read again
    config_path = str(dockyard.data_dir / "dockyard.toml")
    assert await asyncio.to_thread(main, ["vulndb", "import", str(OSV),
                                          "--config", config_path]) == 0
    assert capsys.readouterr().out.splitlines()[-1] == "1 scanned images matched again"
    (item,) = await scans(dockyard.client, "team/app", "1")
    assert (item["status"], item["reason"]) == ("done", None)
    assert sorted((f["vulnerability_id"], f["package"]) for f in item["findings"]) == [
        ("DEBIAN-CVE-2025-9902", "zlib1g"), ("DSA-9901-1", "libssl3")]

    # By the OSV id, or by the CVE it aliases; only callers who may pull see the tag.
    for identifier in ("DSA-9901-1", "CVE-2025-9901"):
        response = await affected(dockyard.client, identifier)
        assert response.status_code == 200
        assert [(i["repository"], i["tag"], i["digest"], i["manifest"], i["platform"],
                 [f["vulnerability_id"] for f in i["findings"]])
                for i in response.json()["items"]] == [
            ("team/app", "1", digest, digest, None, ["DSA-9901-1"])]
    async with httpx.AsyncClient(base_url=dockyard.url) as anonymous:
        assert (await affected(anonymous, "CVE-2025-9901")).json()["items"] == []
    assert (await affected(dockyard.client, "CVE-1999-0001")).json()["items"] == []
    bad = await affected(dockyard.client, "not_an_id")
    assert (bad.status_code, bad.json()["error"]["code"]) == (400, "invalid_vulnerability_id")

    # Deleting the manifest from its only repository takes its scan along.
    registry.start()
    await asyncio.to_thread(skopeo_delete, f"docker://{registry.host}/team/app:1", ADMIN)
    await eventually(lambda: dockyard.client.get(f"/api/v1/scans/{digest}"),
                     lambda response: response.status_code == 404,
                     what="the deleted manifest's scan forgotten", timeout=60)
    assert (await affected(dockyard.client, "DSA-9901-1")).json()["items"] == []
