"""RegistryClient against a real registry 2.8 fed by skopeo, and describe() on what it serves."""

import asyncio
import base64
import contextlib
import hashlib
import json
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from cryptography.x509.oid import NameOID

from services.core.registry import (
    ManifestNotFound,
    RegistryClient,
    RegistryError,
    RegistryUnreachable,
    ResponseTooLarge,
    parse_bearer_challenge,
)
from services.ingest.manifests import ArtifactKind, SchemaKind, describe
from tests.support.images import (
    build_cosign_signature,
    build_helm_chart,
    build_oci_artifact,
    build_oci_image,
    build_oci_index,
)
from tests.support.registry import (
    RegistryProcess,
    free_port,
    plant_manifest,
    require_registry_tools,
    skopeo_copy,
)

pytestmark = pytest.mark.registry

DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OS_RELEASE = {"etc/os-release": b'ID=debian\nVERSION_ID="12"\n'}
MISSING_DIGEST = "sha256:" + "0" * 64


@dataclass(frozen=True)
class Pushed:
    """What the module's registry holds, by the digests skopeo reported."""

    registry: RegistryProcess
    image: str  # team/app:1.0, OCI as built
    signature: str  # team/app:sha256-<image>.sig
    sbom: str  # team/app:sbom, an SPDX referrer of the image
    docker_image: str  # team/docker:1.0, converted to Docker v2 schema 2
    index: str  # team/multi:1.0, OCI index with buildx attestations
    manifest_list: str  # team/list:1.0, converted to a Docker manifest list
    chart: str  # charts/demo:0.1.0

    @property
    def repositories(self) -> list[str]:
        return ["charts/demo", "team/app", "team/docker", "team/list", "team/multi"]


@pytest.fixture(scope="module")
def pushed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pushed]:
    """One registry for the read-only tests of this module, filled once."""
    require_registry_tools()
    root = tmp_path_factory.mktemp("registry-client")
    layout = root / "layout"
    image = build_oci_image(layout, "1.0", [OS_RELEASE, {"app/main.py": b"print('hi')\n"}])
    build_cosign_signature(layout, image)
    build_oci_artifact(layout, "sbom", [("application/spdx+json", b'{"spdxVersion":"SPDX-2.3"}')],
                       artifact_type="application/spdx+json", subject=image)
    build_oci_index(layout, "multi", attestations=True)
    build_oci_index(layout, "plain-multi")
    build_helm_chart(layout, "chart")
    with RegistryProcess(root / "registry") as registry:
        def push(tag, destination, **options):
            return skopeo_copy(f"oci:{layout}:{tag}", f"docker://{registry.host}/{destination}",
                               **options)

        signature_tag = "sha256-" + image.removeprefix("sha256:") + ".sig"
        yield Pushed(
            registry=registry,
            image=push("1.0", "team/app:1.0"),
            signature=push(signature_tag, f"team/app:{signature_tag}"),
            sbom=push("sbom", "team/app:sbom"),
            docker_image=push("1.0", "team/docker:1.0", format="v2s2"),
            index=push("multi", "team/multi:1.0", all=True),
            manifest_list=push("plain-multi", "team/list:1.0", format="v2s2", all=True),
            chart=push("chart", "charts/demo:0.1.0"),
        )


@pytest.fixture
async def client(pushed: Pushed) -> AsyncIterator[RegistryClient]:
    async with RegistryClient(pushed.registry.url, timeout=5) as registry_client:
        yield registry_client


def test_skopeo_pushes_oci_layouts_unchanged(pushed, tmp_path):
    """skopeo keeps OCI manifests byte for byte unless told to convert: digests survive."""
    layout = tmp_path / "layout"
    image = build_oci_image(layout, "1.0", [OS_RELEASE, {"app/main.py": b"print('hi')\n"}])
    index = build_oci_index(layout, "multi", attestations=True)

    assert pushed.image == image
    assert pushed.index == index
    assert pushed.docker_image != image


@pytest.mark.parametrize(
    ("reference", "which", "media_type"),
    [
        ("team/app:1.0", "image", OCI_MANIFEST),
        ("team/docker:1.0", "docker_image", DOCKER_MANIFEST),
        ("team/multi:1.0", "index", OCI_INDEX),
        ("team/list:1.0", "manifest_list", DOCKER_LIST),
        ("charts/demo:0.1.0", "chart", OCI_MANIFEST),
    ],
)
async def test_get_manifest_by_tag_and_by_digest(client, pushed, reference, which, media_type):
    repository, _, tag = reference.partition(":")
    expected_digest = getattr(pushed, which)

    by_tag = await client.get_manifest(repository, tag)
    by_digest = await client.get_manifest(repository, expected_digest)

    assert by_tag.digest == expected_digest
    assert by_tag.media_type == media_type
    assert by_tag.size == len(by_tag.body)
    assert "sha256:" + hashlib.sha256(by_tag.body).hexdigest() == expected_digest
    assert by_digest == by_tag


async def test_unknown_manifest_is_manifest_not_found(client):
    with pytest.raises(ManifestNotFound) as by_tag:
        await client.get_manifest("team/app", "no-such-tag")
    with pytest.raises(ManifestNotFound) as by_digest:
        await client.get_manifest("team/app", MISSING_DIGEST)
    with pytest.raises(ManifestNotFound):
        await client.get_manifest("team/no-such-repository", "1.0")

    assert (by_tag.value.status, by_tag.value.code) == (404, "MANIFEST_UNKNOWN")
    assert (by_digest.value.status, by_digest.value.code) == (404, "MANIFEST_UNKNOWN")
    assert "no-such-tag" in str(by_tag.value)


def huge_manifest(size: int) -> bytes:
    """An OCI manifest of about ``size`` bytes (one enormous annotation)."""
    return json.dumps({"schemaVersion": 2, "mediaType": OCI_MANIFEST,
                       "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                                  "digest": MISSING_DIGEST, "size": 2},
                       "layers": [], "annotations": {"pad": "x" * size}}).encode()


async def test_a_manifest_just_under_4_mib_is_read(registry):
    """Registry 2.8 itself serves no manifest over 4 MiB ("storage: read exceeds limit"): the
    client's cap is for registries that do, stand-ins or compromised ones (below)."""
    under = plant_manifest(registry.storage, "team/huge", "under", huge_manifest((4 << 20) - 4096))
    async with RegistryClient(registry.url, timeout=5) as client:
        assert (await client.get_manifest("team/huge", "under")).digest == under


class OversizedServer:
    """Not a registry: answers any manifest GET with a body over the cap, with its length
    declared or streamed chunk by chunk without end; counts what it managed to send."""

    def __init__(self, *, declared: bool) -> None:
        self.declared = declared
        self.sent = 0

    async def manifest(self, request: web.Request) -> web.StreamResponse:
        headers = {"Content-Type": OCI_MANIFEST}
        if self.declared:
            return web.Response(body=huge_manifest(5 << 20), headers=headers)
        response = web.StreamResponse(headers=headers)
        response.enable_chunked_encoding()
        await response.prepare(request)
        with contextlib.suppress(ConnectionError):
            while self.sent < 1 << 30:
                await response.write(b" " * 65536)
                self.sent += 65536
        return response


@pytest.mark.parametrize("declared", [True, False])
async def test_a_manifest_over_4_mib_is_refused_while_it_streams(declared):
    fake = OversizedServer(declared=declared)
    app = web.Application()
    app.router.add_get("/v2/team/app/manifests/{reference}", fake.manifest)
    server = TestServer(app)
    await server.start_server()
    try:
        async with RegistryClient(str(server.make_url("")), timeout=5) as client:
            with pytest.raises(ResponseTooLarge, match="over the 4194304-byte limit"):
                await client.get_manifest("team/app", "1")
    finally:
        await server.close()
    # Stopped at the cap, give or take what the socket buffers held: not a gigabyte.
    assert fake.sent < 64 << 20


@pytest.mark.parametrize("page_size", [1, 2, 5, 100])
async def test_catalog_follows_link_pagination(client, pushed, page_size):
    # With one repository per page, seeing them all proves the Link headers were followed.
    repositories = [name async for name in client.catalog(page_size=page_size)]

    assert repositories == pushed.repositories


async def test_tags(client, pushed):
    signature_tag = "sha256-" + pushed.image.removeprefix("sha256:") + ".sig"

    assert sorted(await client.tags("team/app")) == sorted(["1.0", "sbom", signature_tag])
    assert await client.tags("team/multi") == ["1.0"]
    assert await client.tags("team/no-such-repository") == []


async def test_ping(client):
    async with RegistryClient(f"http://127.0.0.1:{free_port()}", timeout=1) as nobody:
        assert await client.ping() is True
        assert await nobody.ping() is False


async def test_unreachable_registry_raises_registry_unreachable():
    async with RegistryClient(f"http://127.0.0.1:{free_port()}", timeout=1) as nobody:
        with pytest.raises(RegistryUnreachable, match="registry unreachable") as caught:
            await nobody.get_manifest("team/app", "1.0")

    assert caught.value.status is None
    assert isinstance(caught.value, RegistryError)


@pytest.mark.parametrize(
    ("repository", "reference"),
    [("Team/App", "1.0"), ("team/../admin", "1.0"), ("team/app", "../../_catalog"),
     ("team/app", "sha256:short"), ("", "1.0")],
)
async def test_invalid_names_never_reach_the_registry(client, repository, reference):
    with pytest.raises(ValueError, match="not a valid"):
        await client.get_manifest(repository, reference)


@pytest.mark.parametrize(
    ("reference", "kind", "schema", "config_media_type"),
    [
        ("team/app:1.0", ArtifactKind.IMAGE, SchemaKind.IMAGE,
         "application/vnd.oci.image.config.v1+json"),
        ("team/docker:1.0", ArtifactKind.IMAGE, SchemaKind.IMAGE,
         "application/vnd.docker.container.image.v1+json"),
        ("team/app:sbom", ArtifactKind.SBOM, SchemaKind.IMAGE,
         "application/vnd.oci.empty.v1+json"),
        ("charts/demo:0.1.0", ArtifactKind.HELM_CHART, SchemaKind.IMAGE,
         "application/vnd.cncf.helm.config.v1+json"),
        ("team/multi:1.0", ArtifactKind.INDEX, SchemaKind.INDEX, None),
        ("team/list:1.0", ArtifactKind.INDEX, SchemaKind.INDEX, None),
    ],
)
async def test_describe_pushed_manifests(client, reference, kind, schema, config_media_type):
    repository, _, tag = reference.partition(":")
    manifest = await client.get_manifest(repository, tag)

    info = describe(manifest.media_type, manifest.body)

    assert (info.kind, info.schema, info.config_media_type) == (kind, schema, config_media_type)


async def test_describe_pushed_signature_and_referrer(client, pushed):
    signature_tag = "sha256-" + pushed.image.removeprefix("sha256:") + ".sig"
    signature = await client.get_manifest("team/app", signature_tag)
    sbom = await client.get_manifest("team/app", "sbom")

    assert describe(signature.media_type, signature.body).kind == ArtifactKind.SIGNATURE
    assert describe(sbom.media_type, sbom.body).subject == pushed.image


@pytest.mark.parametrize(("repository", "attested"), [("team/multi", True), ("team/list", False)])
async def test_describe_pushed_index_platforms_and_children(client, repository, attested):
    index = await client.get_manifest(repository, "1.0")
    info = describe(index.media_type, index.body)

    children = {child.digest: await client.get_manifest(repository, child.digest)
                for child in info.manifests}
    child_kinds = {digest: describe(child.media_type, child.body).kind
                   for digest, child in children.items()}

    assert [(p.os, p.architecture, p.variant) for p in info.platforms] == [
        ("linux", "amd64", None), ("linux", "arm64", "v8"),
    ]
    assert all(child_kinds[p.digest] == ArtifactKind.IMAGE for p in info.platforms)
    assert all(child_kinds[a.digest] == ArtifactKind.ATTESTATION for a in info.attestations)
    # buildx ties each attestation manifest to the image it describes.
    expected_subjects = [p.digest for p in info.platforms] if attested else []
    assert [a.subject for a in info.attestations] == expected_subjects
    assert [child.size for child in info.manifests] == [
        children[child.digest].size for child in info.manifests
    ]


async def test_delete_manifest_by_digest_drops_its_tags(registry, tmp_path):
    layout = tmp_path / "layout"
    build_oci_image(layout, "doomed", [OS_RELEASE], salt="doomed")
    build_oci_image(layout, "kept", [OS_RELEASE], salt="kept")
    base = f"docker://{registry.host}/team/app"
    doomed = await asyncio.to_thread(skopeo_copy, f"oci:{layout}:doomed", f"{base}:1.0")
    await asyncio.to_thread(skopeo_copy, f"oci:{layout}:doomed", f"{base}:latest")
    await asyncio.to_thread(skopeo_copy, f"oci:{layout}:kept", f"{base}:2.0")

    async with RegistryClient(registry.url, timeout=5) as client:
        assert sorted(await client.tags("team/app")) == ["1.0", "2.0", "latest"]
        await client.delete_manifest("team/app", doomed)

        assert await client.tags("team/app") == ["2.0"]
        with pytest.raises(ManifestNotFound):
            await client.get_manifest("team/app", doomed)
        with pytest.raises(ManifestNotFound, match="MANIFEST_UNKNOWN"):
            await client.delete_manifest("team/app", doomed)
        with pytest.raises(ValueError, match="needs a digest"):
            await client.delete_manifest("team/app", "2.0")


async def test_tags_of_a_repository_whose_last_manifest_was_deleted(registry, tmp_path):
    layout = tmp_path / "layout"
    build_oci_image(layout, "1.0", [OS_RELEASE], salt="emptied")
    digest = await asyncio.to_thread(
        skopeo_copy, f"oci:{layout}:1.0", f"docker://{registry.host}/team/emptied:1.0",
    )

    async with RegistryClient(registry.url, timeout=5) as client:
        await client.delete_manifest("team/emptied", digest)

        # 2.8 answers {"tags": null} and keeps the repository in the catalog.
        assert await client.tags("team/emptied") == []
        assert [name async for name in client.catalog()] == ["team/emptied"]


# Token auth: the registry verifies ES256 tokens against a certificate bundle
# (distribution docs/spec/auth/jwt.md; PROTOCOLS.md "Registry token authentication").

SERVICE = "dockyard-test-registry"
ISSUER = "dockyard-test-issuer"


@dataclass
class TokenIssuer:
    """Mints registry tokens granting exactly the scopes asked, and records what was asked."""

    bundle: Path
    asked: list[str] = field(default_factory=list)
    refuse: bool = False

    def __post_init__(self) -> None:
        self.rotate()

    def rotate(self) -> None:
        """A new key and certificate: tokens signed before no longer verify after a restart."""
        self._key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, ISSUER)])
        now = datetime.now(UTC)
        self._certificate = (
            x509.CertificateBuilder()
            .subject_name(name).issuer_name(name).public_key(self._key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - timedelta(hours=1))
            .not_valid_after(now + timedelta(hours=1))
            .sign(self._key, hashes.SHA256())
        )
        self.bundle.write_bytes(self._certificate.public_bytes(serialization.Encoding.PEM))

    async def __call__(self, scope: str) -> str | None:
        self.asked.append(scope)
        return "not-a-token" if self.refuse else self.mint(scope)

    def mint(self, scope: str) -> str:
        access = []
        for item in scope.split():
            resource_type, _, rest = item.partition(":")
            name, _, actions = rest.rpartition(":")
            access.append({"type": resource_type, "name": name, "actions": actions.split(",")})
        spki = self._key.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo,
        )
        kid_base32 = base64.b32encode(hashlib.sha256(spki).digest()[:30]).decode()
        header = {
            "typ": "JWT",
            "alg": "ES256",
            "kid": ":".join(kid_base32[i:i + 4] for i in range(0, 48, 4)),
            "x5c": [base64.b64encode(
                self._certificate.public_bytes(serialization.Encoding.DER)).decode()],
        }
        now = int(time.time())
        claims = {"iss": ISSUER, "sub": "tester", "aud": SERVICE, "exp": now + 300,
                  "nbf": now - 10, "iat": now, "jti": uuid.uuid4().hex, "access": access}
        signing_input = f"{_b64url(json.dumps(header))}.{_b64url(json.dumps(claims))}"
        r, s = decode_dss_signature(
            self._key.sign(signing_input.encode(), ec.ECDSA(hashes.SHA256())))
        return f"{signing_input}.{_b64url(r.to_bytes(32, 'big') + s.to_bytes(32, 'big'))}"


def _b64url(data: str | bytes) -> str:
    raw = data.encode() if isinstance(data, str) else data
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


@pytest.fixture
def token_registry(pushed, tmp_path) -> Iterator[tuple[RegistryProcess, TokenIssuer]]:
    """A token-auth registry serving the same storage as ``pushed``."""
    issuer = TokenIssuer(tmp_path / "token-bundle.pem")
    auth = {"token": {"realm": "http://127.0.0.1:9/v2/token", "service": SERVICE,
                      "issuer": ISSUER, "rootcertbundle": str(issuer.bundle)}}
    with RegistryProcess(tmp_path / "registry", auth=auth,
                         storage=pushed.registry.storage) as registry:
        yield registry, issuer


async def test_token_provider_is_asked_for_the_challenged_scope(token_registry, pushed):
    registry, issuer = token_registry

    async with RegistryClient(registry.url, timeout=5, token_provider=issuer) as client:
        assert await client.ping() is True
        assert [name async for name in client.catalog(page_size=2)] == pushed.repositories
        assert sorted(await client.tags("team/multi")) == ["1.0"]
        manifest = await client.get_manifest("team/multi", "1.0")
        with pytest.raises(ManifestNotFound):
            await client.delete_manifest("team/multi", MISSING_DIGEST)

    assert manifest.digest == pushed.index
    # One token per scope: catalog pages and the pull after tags reuse the token they got.
    assert issuer.asked == [
        "registry:catalog:*", "repository:team/multi:pull", "repository:team/multi:delete",
    ]


async def test_rejected_token_is_refetched_once(token_registry):
    registry, issuer = token_registry

    async with RegistryClient(registry.url, timeout=5, token_provider=issuer) as client:
        assert await client.tags("team/app")
        # New signing key: the cached token no longer verifies, the next one does.
        await asyncio.to_thread(issuer.rotate)
        await asyncio.to_thread(registry.stop)
        await asyncio.to_thread(registry.start)
        assert await client.tags("team/app")

    assert issuer.asked == ["repository:team/app:pull"] * 2


async def test_refused_token_raises_after_one_retry(token_registry):
    registry, issuer = token_registry
    issuer.refuse = True

    async with RegistryClient(registry.url, timeout=5, token_provider=issuer) as client:
        with pytest.raises(RegistryError, match=r"rejected the token .*invalid_token") as caught:
            await client.tags("team/app")

    assert (caught.value.status, caught.value.code) == (401, "UNAUTHORIZED")
    assert issuer.asked == ["repository:team/app:pull"]


async def test_challenge_without_token_provider_raises(token_registry):
    registry, _ = token_registry

    async with RegistryClient(registry.url, timeout=5) as client:
        with pytest.raises(RegistryError, match="no token provider") as caught:
            await client.get_manifest("team/app", "1.0")

    assert not isinstance(caught.value, ManifestNotFound)
    assert (caught.value.status, caught.value.code) == (401, "UNAUTHORIZED")


async def test_provider_without_a_token_raises(token_registry):
    registry, _ = token_registry

    async def nothing(scope: str) -> str | None:
        return None

    async with RegistryClient(registry.url, timeout=5, token_provider=nothing) as client:
        with pytest.raises(RegistryError, match="no token granted for 'registry:catalog:\\*'"):
            _ = [name async for name in client.catalog()]


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        (('Bearer realm="https://auth.example/token",service="registry",'
          'scope="repository:team/app:pull"'),
         {"realm": "https://auth.example/token", "service": "registry",
          "scope": "repository:team/app:pull"}),
        (('bearer realm="r", scope="repository:a:pull repository:b:pull,push",'
          'error="insufficient_scope"'),
         {"realm": "r", "scope": "repository:a:pull repository:b:pull,push",
          "error": "insufficient_scope"}),
        ('Bearer realm="a \\"quoted\\" realm",service=bare', {"realm": 'a "quoted" realm',
                                                           "service": "bare"}),
        ("Bearer", {}),
        ('Basic realm="registry"', None),
        ("", None),
    ],
)
def test_parse_bearer_challenge(header, expected):
    assert parse_bearer_challenge(header) == expected
