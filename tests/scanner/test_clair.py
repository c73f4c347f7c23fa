"""The Clair v4 backend against a FAKE of Clair's documented API (tests/support/clair_fake.py),
which fetches the layers from a real registry as Clair does."""

import base64
import time
from collections.abc import AsyncIterator
from pathlib import Path

import jwt
import pytest
from aiohttp.test_utils import TestServer

from services.core.config import Config, ConfigError
from services.scanner.clair import (
    ClairError,
    ClairScanner,
    clair_token,
    findings_from_report,
    manifest_request,
)
from services.scanner.models import ImageRef, LayerRef, Severity
from tests.support.clair_fake import FakeClair, FakePackage, FakeVulnerability
from tests.support.images import build_oci_image, read_json_blob
from tests.support.registry import skopeo_copy

PSK = b"a pre-shared key of thirty-two b"
DIGEST = "sha256:" + "d" * 64
LAYER = "sha256:" + "1" * 64


class PullTokens:
    """Stands in for the auth service's token issuer: records the scopes asked for."""

    def __init__(self) -> None:
        self.scopes: list[str] = []

    async def __call__(self, scope: str) -> str:
        self.scopes.append(scope)
        return f"pull-only-{len(self.scopes)}"


@pytest.fixture
def pushed(registry, tmp_path: Path) -> ImageRef:
    layout = tmp_path / "layout"
    build_oci_image(layout, "1", [{"etc/os-release": b'ID=debian\nVERSION_ID="12"\n'},
                                  {"var/lib/dpkg/status": b"Package: libssl3\n"}])
    digest = skopeo_copy(f"oci:{layout}:1", f"docker://{registry.host}/team/app:1")
    manifest = read_json_blob(layout, digest)
    layers = tuple(LayerRef(d["digest"], d["mediaType"]) for d in manifest["layers"])
    return ImageRef("team/app", digest, layers, tag="1")


@pytest.fixture
async def clair(pushed: ImageRef) -> AsyncIterator[tuple[FakeClair, TestServer]]:
    fake = FakeClair(PSK, contents={
        pushed.layers[0].digest: [FakePackage("base-files", "12.4+deb12u5", "base-files")],
        pushed.layers[1].digest: [FakePackage("libssl3", "3.0.11-1~deb12u1", "openssl"),
                                  FakePackage("openssl", "3.0.11-1~deb12u1", "openssl")],
    }, vulnerabilities=[
        FakeVulnerability("DSA-5532-1", "libssl3", "3.0.11-1~deb12u1", "3.0.11-1~deb12u2",
                          "High", "openssl - security update\nmore text"),
        FakeVulnerability("CVE-2023-5678", "openssl", "3.0.11-1~deb12u1", "",
                          "Low", "Generating excessively long X9.42 DH keys"),
    ])
    server = TestServer(fake.app())
    await server.start_server()
    yield fake, server
    await server.close()


def scanner_for(server: TestServer, registry_url: str, tokens: PullTokens, *,
                psk: bytes = PSK, issuer: str = "dockyard") -> ClairScanner:
    return ClairScanner(str(server.make_url("")), psk, issuer, registry_url, tokens)


@pytest.mark.registry
async def test_index_and_report(clair, pushed, registry):
    fake, server = clair
    tokens = PullTokens()
    scanner = scanner_for(server, registry.url, tokens)
    try:
        findings = await scanner.scan(pushed)
    finally:
        await scanner.aclose()
    assert [(f.vulnerability_id, f.package.name, f.package.source_name, f.fixed_version,
             f.severity, f.package.layer) for f in findings] == [
        ("DSA-5532-1", "libssl3", "openssl", "3.0.11-1~deb12u2", Severity.HIGH,
         pushed.layers[1].digest),
        ("CVE-2023-5678", "openssl", "openssl", None, Severity.LOW, pushed.layers[1].digest),
    ]
    assert findings[0].summary == "openssl - security update"
    assert findings[0].package.kind == "deb"
    # Clair fetched each layer from the registry with a pull-only token for that repository.
    assert tokens.scopes == ["repository:team/app:pull"]
    assert [(auth, status) for _, auth, status in fake.layer_fetches] == [
        ("Bearer pull-only-1", 200), ("Bearer pull-only-1", 200)]
    (manifest,) = fake.indexed
    assert manifest["hash"] == pushed.digest
    assert manifest["layers"][0]["uri"] == (
        f"{registry.url}/v2/team/app/blobs/{pushed.layers[0].digest}")


@pytest.mark.registry
async def test_reindexes_only_when_the_index_state_changes(clair, pushed, registry):
    fake, server = clair
    scanner = scanner_for(server, registry.url, PullTokens())
    try:
        await scanner.scan(pushed)
        await scanner.scan(pushed)
        assert len(fake.indexed) == 1
        fake.state = "new-scanners"
        await scanner.scan(pushed)
        assert len(fake.indexed) == 2
    finally:
        await scanner.aclose()


@pytest.mark.registry
async def test_a_layer_clair_cannot_fetch_fails_the_scan(clair, pushed, registry):
    _, server = clair
    missing = ImageRef("team/app", pushed.digest, (LayerRef(LAYER, pushed.layers[0].media_type),))
    scanner = scanner_for(server, registry.url, PullTokens())
    try:
        with pytest.raises(ClairError, match=f"Clair could not index .*fetching {LAYER}: 404"):
            await scanner.scan(missing)
    finally:
        await scanner.aclose()


@pytest.mark.parametrize(("psk", "issuer", "reason"), [
    (b"another key, also of 32 bytes...", "dockyard", "bad token: Signature verification failed"),
    (PSK, "somebody-else", "issuer 'somebody-else' not allowed"),
])
async def test_clair_refuses_bad_credentials(psk, issuer, reason):
    fake = FakeClair(PSK)
    server = TestServer(fake.app())
    await server.start_server()
    scanner = scanner_for(server, "http://127.0.0.1:1", PullTokens(), psk=psk, issuer=issuer)
    try:
        with pytest.raises(ClairError, match="answered 401 to GET /indexer/api/v1/index_state"):
            await scanner.scan(ImageRef("team/app", DIGEST, ()))
    finally:
        await scanner.aclose()
        await server.close()
    assert fake.rejected == [reason]


def test_clair_token_is_short_lived_hs256():
    now = time.time()
    claims = jwt.decode(clair_token(PSK, "dockyard", now), PSK, algorithms=["HS256"])
    assert claims["iss"] == "dockyard"
    assert claims["exp"] - claims["iat"] == 60
    assert jwt.get_unverified_header(clair_token(PSK, "dockyard", now))["alg"] == "HS256"


def test_manifest_request_uses_oci_layer_types():
    image = ImageRef("team/app", DIGEST, (
        LayerRef(LAYER, "application/vnd.docker.image.rootfs.diff.tar.gzip"),))
    body = manifest_request(image, "http://registry:5000/", "T")
    assert body == {"hash": DIGEST, "layers": [{
        "hash": LAYER, "uri": f"http://registry:5000/v2/team/app/blobs/{LAYER}",
        "headers": {"Authorization": ["Bearer T"]},
        "media_type": "application/vnd.oci.image.layer.v1.tar+gzip"}]}


def test_findings_from_a_sparse_report():
    report = {
        "packages": {"1": {"name": "busybox", "version": "1.36.1-r15"},
                     "2": {"name": "broken"}},
        "environments": {"1": [{"package_db": "lib/apk/db/installed", "introduced_in": LAYER}]},
        "vulnerabilities": {"7": {"name": "CVE-2023-42366", "normalized_severity": "Bogus"},
                            "8": {"description": "no name"}},
        "package_vulnerabilities": {"1": ["7", "8", "9"], "2": ["7"], "3": ["7"]},
    }
    (finding,) = findings_from_report(report)
    assert (finding.vulnerability_id, finding.package.kind, finding.package.layer,
            finding.severity, finding.fixed_version) == (
        "CVE-2023-42366", "apk", LAYER, Severity.UNKNOWN, None)
    assert findings_from_report({}) == []


def test_from_config_needs_a_base64_psk():
    config = Config.model_validate({"webhook": {"secret": "s" * 16},
                                    "clair": {"psk": "not base64!"}})
    with pytest.raises(ConfigError, match=r"clair\.psk"):
        ClairScanner.from_config(config, PullTokens())
    good = Config.model_validate({"webhook": {"secret": "s" * 16},
                                  "clair": {"psk": base64.b64encode(PSK).decode()}})
    assert isinstance(ClairScanner.from_config(good, PullTokens()), ClairScanner)
