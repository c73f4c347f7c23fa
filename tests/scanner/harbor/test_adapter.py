"""Dockyard's Harbor scanner adapter, driven as Harbor drives it, and the client against it.

Everything is real: a registry that trusts this Dockyard's tokens, an image pushed with skopeo
(os-release and a dpkg status database), the OSV test records imported into vulndb.db. Harbor
hands the adapter the registry URL and robot-style Basic credentials; the adapter exchanges
them for a token at the registry's realm (this Dockyard's /v2/token) and reads the layers.
"""

from __future__ import annotations

import asyncio
import base64
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from aiohttp import web

from services.core.config import Config
from services.core.web import SERVICE_TOKENS
from services.scanner.harbor.client import AdapterError, HarborAdapterClient
from services.scanner.harbor.wire import ERROR, METADATA, REPORT_HARBOR, REPORT_V11, SCAN_REQUEST
from services.scanner.models import ImageRef, LayerRef
from services.scanner.vulndb.adapters.sqlite import SqliteVulnStore
from services.scanner.vulndb.importer import import_path
from services.server import build_app
from tests.scanner.vulndb.conftest import TESTDATA
from tests.support.dockyard import ADMIN_PASSWORD, initialised, registry_for
from tests.support.images import build_oci_image, read_json_blob
from tests.support.registry import (
    RegistryProcess,
    free_port,
    require_registry_tools,
    skopeo_copy,
)

pytestmark = pytest.mark.registry

TOKEN = "harbor-registration-token-0123456789"
ADMIN = f"admin:{ADMIN_PASSWORD}"
BASIC = "Basic " + base64.b64encode(ADMIN.encode()).decode()
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"

STATUS = b"""Package: libssl3
Status: install ok installed
Architecture: amd64
Source: openssl
Version: 3.0.11-1~deb12u1
Description: Secure Sockets Layer toolkit - shared libraries

Package: libc6
Status: install ok installed
Architecture: amd64
Source: glibc
Version: 2.36-9+deb12u1
Description: GNU C Library: Shared libraries

Package: zlib1g
Status: install ok installed
Architecture: amd64
Source: zlib
Version: 1:1.3.dfsg-3
Description: compression library - runtime
"""
OS_RELEASE = b'PRETTY_NAME="Debian GNU/Linux 12 (bookworm)"\nID=debian\nVERSION_ID="12"\n'


@dataclass
class Running:
    config: Config
    app: web.Application
    url: str
    registry: RegistryProcess
    image: ImageRef


@pytest.fixture
def config(tmp_path: Path) -> Config:
    require_registry_tools()
    return initialised(tmp_path / "data", f"http://127.0.0.1:{free_port()}",
                       harbor_api_token=TOKEN, scanner_enabled="false", sync_interval_seconds="0")


@pytest.fixture
def registry(config: Config) -> Iterator[RegistryProcess]:
    with registry_for(config) as process:
        yield process


@pytest.fixture
def osv_records() -> Path | None:
    """What is imported into the vulnerability database before Dockyard starts."""
    return TESTDATA


@pytest.fixture
async def running(config: Config, registry: RegistryProcess, tmp_path: Path,
                  osv_records: Path | None) -> AsyncIterator[Running]:
    if osv_records is not None:
        store = SqliteVulnStore(config.path(config.scanner.vulndb))
        await store.open()
        await import_path(store, osv_records)
        await store.close()
    app = build_app(config)  # the scanner serves the adapter API
    runner = web.AppRunner(app, handler_cancellation=True)
    await runner.setup()
    await web.TCPSite(runner, config.server.host, config.server.port).start()
    try:
        layout = tmp_path / "layout"
        build_oci_image(layout, "1", [{"etc/os-release": OS_RELEASE},
                                      {"var/lib/dpkg/status": STATUS}])
        # skopeo in a thread: this Dockyard, on this loop, answers the registry's token requests.
        digest = await asyncio.to_thread(skopeo_copy, f"oci:{layout}:1",
                                         f"docker://{registry.host}/admin/app:1", creds=ADMIN)
        layers = tuple(LayerRef(d["digest"], d["mediaType"])
                       for d in read_json_blob(layout, digest)["layers"])
        image = ImageRef("admin/app", digest, layers, OCI_MANIFEST, "1")
        yield Running(config, app, f"http://{config.server.listen}", registry, image)
    finally:
        await runner.cleanup()


def scan_request(running: Running, authorization: str = BASIC) -> dict[str, object]:
    return {"registry": {"url": running.registry.url, "authorization": authorization},
            "artifact": {"repository": running.image.repository, "digest": running.image.digest,
                         "tag": "1", "mime_type": OCI_MANIFEST}}


async def poll(client: httpx.AsyncClient, identifier: str, accept: str) -> httpx.Response:
    for _ in range(200):
        response = await client.get(f"/scan/{identifier}/report", headers={"Accept": accept})
        if response.status_code != 302:
            return response
        assert response.headers["Refresh-After"] == "2"
        await asyncio.sleep(0.1)
    raise AssertionError("the report never came")


def harbor_client(running: Running, token: str | None = TOKEN) -> httpx.AsyncClient:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return httpx.AsyncClient(base_url=f"{running.url}/api/harbor/api/v1", headers=headers,
                             timeout=30)


async def test_harbor_scans_an_image_through_the_adapter(running):
    async with harbor_client(running) as harbor:
        metadata = await harbor.get("/metadata")
        assert metadata.status_code == 200
        assert metadata.headers["Content-Type"] == METADATA
        assert metadata.json()["properties"][
            "harbor.scanner-adapter/vulnerability-database-updated-at"] == "2024-09-18T03:28:59Z"

        accepted = await harbor.post("/scan", json=scan_request(running),
                                     headers={"Content-Type": SCAN_REQUEST})
        assert accepted.status_code == 202
        identifier = accepted.json()["id"]

        done = await poll(harbor, identifier, REPORT_V11)
        assert done.status_code == 200, done.text
        assert done.headers["Content-Type"] == REPORT_V11
        report = done.json()
        assert report["artifact"] == {"repository": "admin/app", "digest": running.image.digest,
                                      "tag": "1", "mime_type": OCI_MANIFEST}
        assert report["severity"] == "High"
        assert [(v["id"], v["package"], v["version"], v["fix_version"], v["severity"])
                for v in report["vulnerabilities"]] == [
            ("DEBIAN-CVE-2023-4911", "libc6", "2.36-9+deb12u1", "2.36-9+deb12u3", "High"),
            ("DEBIAN-CVE-2019-1010022", "libc6", "2.36-9+deb12u1", "", "Negligible"),
            ("DSA-5532-1", "libssl3", "3.0.11-1~deb12u1", "3.0.11-1~deb12u2", "Unknown"),
        ]
        assert {v["vendor_attributes"]["layer"] for v in report["vulnerabilities"]} == {
            running.image.layers[1].digest}

        other_type = await harbor.get(f"/scan/{identifier}/report",
                                      headers={"Accept": REPORT_HARBOR})
        assert other_type.headers["Content-Type"] == REPORT_HARBOR
        assert other_type.json()["vulnerabilities"] == report["vulnerabilities"]


async def test_credentials_harbor_got_wrong_fail_the_scan_with_the_reason(running):
    async with harbor_client(running) as harbor:
        wrong = "Basic " + base64.b64encode(b"admin:wrong-password").decode()
        accepted = await harbor.post("/scan", json=scan_request(running, wrong))
        failed = await poll(harbor, accepted.json()["id"], REPORT_V11)
        assert failed.status_code == 500
        assert failed.headers["Content-Type"] == ERROR
        assert "refused the credentials Harbor gave (401)" in failed.json()["error"]["message"]


@pytest.mark.parametrize("osv_records", [None])
async def test_an_empty_database_fails_the_scan_rather_than_report_nothing(running):
    async with harbor_client(running) as harbor:
        metadata = (await harbor.get("/metadata")).json()
        assert "harbor.scanner-adapter/vulnerability-database-updated-at" not in metadata[
            "properties"]
        accepted = await harbor.post("/scan", json=scan_request(running))
        failed = await poll(harbor, accepted.json()["id"], REPORT_V11)
        assert failed.status_code == 500
        assert failed.json()["error"]["message"].startswith("no vulnerability data is loaded")


@pytest.mark.parametrize("token", [None, "wrong-token"])
async def test_the_adapter_wants_its_token(running, token):
    async with harbor_client(running, token) as harbor:
        for response in (await harbor.get("/metadata"),
                         await harbor.post("/scan", json=scan_request(running)),
                         await harbor.get("/scan/x/report")):
            assert response.status_code == 401
            assert response.json()["error"]["message"].startswith("expected Authorization")


async def test_bad_requests(running):
    async with harbor_client(running) as harbor:
        not_json = await harbor.post("/scan", content=b"{oops")
        assert (not_json.status_code, not_json.json()) == (
            400, {"error": {"message": "the body is not JSON"}})
        bad = scan_request(running)
        bad["artifact"]["digest"] = "latest"  # type: ignore[index]
        assert (await harbor.post("/scan", json=bad)).status_code == 422
        assert (await harbor.get("/scan/unknown/report")).status_code == 404
        accepted = await harbor.post("/scan", json=scan_request(running))
        unsupported = await harbor.get(f"/scan/{accepted.json()['id']}/report",
                                       headers={"Accept": "text/html"})
        assert unsupported.status_code == 400


async def test_the_client_uses_dockyards_own_adapter(running):
    client = HarborAdapterClient(f"{running.url}/api/harbor", TOKEN, running.registry.url,
                                 running.app[SERVICE_TOKENS])
    try:
        findings = await client.scan(running.image)
    finally:
        await client.aclose()
    assert [(f.vulnerability_id, f.package.name, f.package.kind, f.package.source_name,
             f.fixed_version, f.severity.label, f.aliases) for f in findings] == [
        ("DEBIAN-CVE-2023-4911", "libc6", "deb", "glibc", "2.36-9+deb12u3", "High", ()),
        ("DEBIAN-CVE-2019-1010022", "libc6", "deb", "glibc", None, "Negligible", ()),
        ("DSA-5532-1", "libssl3", "deb", "openssl", "3.0.11-1~deb12u2", "Unknown", ()),
    ]


async def test_the_client_reports_an_adapter_that_refuses_it(running):
    client = HarborAdapterClient(f"{running.url}/api/harbor", "not-the-token", running.registry.url,
                                 running.app[SERVICE_TOKENS])
    try:
        with pytest.raises(AdapterError, match="answered 401 to GET /metadata"):
            await client.scan(running.image)
    finally:
        await client.aclose()
