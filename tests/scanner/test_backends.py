"""``[scanner] backend`` through the whole pipeline: a push to the real registry reaches this
Dockyard, the scan runs on the backend the configuration names, and the API shows its findings.

- ``clair``: tests/support/clair_fake.py, a FAKE of Clair v4's documented API (real Clair needs
  PostgreSQL and its feeds), which fetches every layer from the real registry with the
  pull-only token Dockyard hands it, as Clair does.
- ``harbor``: Dockyard's own Harbor scanner adapter (a real peer: the same code Harbor would
  call), reached over HTTP at this Dockyard's ``/api/harbor``; it reads the image from the
  registry with the pull-only token and matches the OSV test records.
"""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestServer

from services.core.config import Config
from services.scanner.vulndb.adapters.sqlite import SqliteVulnStore
from services.scanner.vulndb.importer import import_path
from tests.scanner.serving import finished, initialised_for_scans, push, registry_for, scans
from tests.scanner.status_data import DEBIAN_OS_RELEASE, stanza, status
from tests.support.clair_fake import FakeClair, FakePackage, FakeVulnerability
from tests.support.dockyard import running_dockyard
from tests.support.images import build_oci_image, read_json_blob
from tests.support.registry import RegistryProcess
from tests.support.waiting import eventually

pytestmark = pytest.mark.registry

OSV = Path(__file__).parent / "e2e_osv"
PSK = b"a pre-shared key of thirty-two b"
HARBOR_TOKEN = "harbor-registration-token-0123456789"
IMAGE = [{"etc/os-release": DEBIAN_OS_RELEASE},
         {"var/lib/dpkg/status": status(stanza("libssl3"), stanza("zlib1g"))}]


@pytest.fixture
async def clair() -> AsyncIterator[tuple[FakeClair, str]]:
    fake = FakeClair(PSK)
    server = TestServer(fake.app())
    await server.start_server()
    yield fake, str(server.make_url("")).rstrip("/")
    await server.close()


@pytest.fixture
def registry(tmp_path: Path) -> Iterator[RegistryProcess]:
    # The data directory's registry; both tests' configurations come from the same init.
    with registry_for(initialised_for_scans(tmp_path / "data")) as process:
        yield process


async def scan_of_pushed_image(config: Config, registry: RegistryProcess, tmp_path: Path,
                               fake: FakeClair | None = None) -> dict[str, Any]:
    layout = tmp_path / "layout"
    digest = build_oci_image(layout, "1", IMAGE, salt=config.scanner.backend)
    if fake is not None:  # what the fake "finds" in each layer: the packages IMAGE installs
        top = read_json_blob(layout, digest)["layers"][1]["digest"]
        fake.contents[top] = [FakePackage("libssl3", "3.0.19-1~deb12u2", "openssl"),
                              FakePackage("zlib1g", "1:1.2.13.dfsg-1", "zlib")]
    async with running_dockyard(config) as dockyard:
        assert await push(layout, "1", registry, "team/app:1") == digest
        (item,) = await eventually(lambda: scans(dockyard.client, "team/app", "1"), finished,
                                   what=f"the scan by {config.scanner.backend}", timeout=60)
    assert (item["digest"], item["status"], item["reason"]) == (digest, "done", None)
    # A remote scanner reads the layers itself: Dockyard stores no inventory.
    assert item["packages"] is None
    return item


async def test_clair_scans_what_the_registry_pushes(clair, registry, tmp_path) -> None:
    fake, url = clair
    fake.vulnerabilities.append(FakeVulnerability(
        "DSA-9901-1", "libssl3", "3.0.19-1~deb12u2", "3.0.20-1~deb12u1", "Critical",
        "openssl - security update"))
    config = initialised_for_scans(tmp_path / "data", scanner_backend="clair", clair_url=url,
                                   clair_psk=base64.b64encode(PSK).decode())
    item = await scan_of_pushed_image(config, registry, tmp_path, fake)
    assert [(f["vulnerability_id"], f["package"], f["fixed_version"], f["severity"])
            for f in item["findings"]] == [
        ("DSA-9901-1", "libssl3", "3.0.20-1~deb12u1", "Critical")]
    # Clair fetched both layers from the registry, which accepted Dockyard's pull-only token.
    assert [status for _, _, status in fake.layer_fetches] == [200, 200]
    assert all(auth.startswith("Bearer ") for _, auth, _ in fake.layer_fetches if auth)


async def test_a_harbor_adapter_scans_what_the_registry_pushes(registry, tmp_path) -> None:
    listen = initialised_for_scans(tmp_path / "data").server.listen
    config = initialised_for_scans(
        tmp_path / "data", scanner_backend="harbor", harbor_api_token=HARBOR_TOKEN,
        harbor_adapter_url=f"http://{listen}/api/harbor", harbor_adapter_token=HARBOR_TOKEN)
    vulns = SqliteVulnStore(config.path(config.scanner.vulndb))
    await vulns.open()
    await import_path(vulns, OSV)
    await vulns.close()
    item = await scan_of_pushed_image(config, registry, tmp_path)
    assert sorted((f["vulnerability_id"], f["package"], f["fixed_version"], f["severity"])
                  for f in item["findings"]) == [
        ("DEBIAN-CVE-2025-9902", "zlib1g", None, "Unknown"),
        ("DSA-9901-1", "libssl3", "3.0.20-1~deb12u1", "Critical"),
    ]
