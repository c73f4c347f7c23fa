import hashlib
import json
from pathlib import Path
from typing import Any

import pytest

from services.ingest.manifests import (
    ArtifactKind,
    Attestation,
    CosignTag,
    Descriptor,
    InvalidManifestError,
    Platform,
    SchemaKind,
    cosign_tag,
    describe,
    signed_digest_from_tag,
)

TESTDATA = Path(__file__).parent / "testdata" / "manifests"

DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_ARTIFACT = "application/vnd.oci.artifact.manifest.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_EMPTY = "application/vnd.oci.empty.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"

SPEC_EXAMPLE_SIZE = 7023 + 32654 + 16724 + 73109  # config + layers of the spec examples


def golden(name: str) -> bytes:
    return (TESTDATA / name).read_bytes()


def digest_of(label: str) -> str:
    """The made-up digests in testdata were written as sha256(label)."""
    return "sha256:" + hashlib.sha256(label.encode()).hexdigest()


def oci_manifest(**fields: Any) -> bytes:
    document = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {"mediaType": OCI_CONFIG, "digest": digest_of("config"), "size": 10},
        "layers": [{"mediaType": OCI_LAYER, "digest": digest_of("layer"), "size": 20}],
    }
    document.update(fields)
    return json.dumps(document).encode()


def oci_index(manifests: list[dict[str, Any]], **fields: Any) -> bytes:
    return json.dumps(
        {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": manifests, **fields},
    ).encode()


def layer(media_type: str, label: str = "blob", size: int = 5) -> dict[str, Any]:
    return {"mediaType": media_type, "digest": digest_of(label), "size": size}


AMD64 = digest_of("buildx-amd64")
ARM64 = digest_of("buildx-arm64")


@pytest.mark.parametrize(
    ("name", "media_type", "expected"),
    [
        pytest.param(
            "docker-v2s2-image.json", DOCKER_MANIFEST,
            {"schema": SchemaKind.IMAGE, "kind": ArtifactKind.IMAGE,
             "config_media_type": "application/vnd.docker.container.image.v1+json",
             "artifact_type": "application/vnd.docker.container.image.v1+json",
             "size": SPEC_EXAMPLE_SIZE, "subject": None, "platforms": ()},
            id="docker-v2s2-image",
        ),
        pytest.param(
            "oci-image.json", OCI_MANIFEST,
            {"schema": SchemaKind.IMAGE, "kind": ArtifactKind.IMAGE,
             "config_media_type": OCI_CONFIG, "artifact_type": OCI_CONFIG,
             "size": SPEC_EXAMPLE_SIZE,
             "annotations": {"com.example.key1": "value1", "com.example.key2": "value2"}},
            id="oci-image",
        ),
        pytest.param(
            "oci-index-buildx.json", OCI_INDEX,
            {"schema": SchemaKind.INDEX, "kind": ArtifactKind.INDEX, "size": None,
             "config_media_type": None, "artifact_type": None,
             "platforms": (
                 Platform("linux", "amd64", None, AMD64, OCI_MANIFEST),
                 Platform("linux", "arm64", "v8", ARM64, OCI_MANIFEST),
             ),
             "attestations": (
                 Attestation(digest_of("buildx-amd64-att"), OCI_MANIFEST, AMD64),
                 Attestation(digest_of("buildx-arm64-att"), OCI_MANIFEST, ARM64),
             )},
            id="oci-index-with-buildx-attestations",
        ),
        pytest.param(
            "docker-manifest-list.json", DOCKER_LIST,
            {"schema": SchemaKind.INDEX, "kind": ArtifactKind.INDEX, "size": None,
             "platforms": (
                 Platform("linux", "ppc64le", None,
                          "sha256:e692418e4cbaf90ca69d05a66403747baa33ee08806650b51fab815ad7fc331f",
                          DOCKER_MANIFEST),
                 Platform("linux", "amd64", None,
                          "sha256:5b0bcabd1ed22e9fb1310cf6c2dec7cdef19f0ad69efa1f392e94a4333501270",
                          DOCKER_MANIFEST),
             ),
             "attestations": ()},
            id="docker-manifest-list",
        ),
        pytest.param(
            "helm-chart.json", OCI_MANIFEST,
            {"media_type": OCI_MANIFEST, "kind": ArtifactKind.HELM_CHART,
             "config_media_type": "application/vnd.cncf.helm.config.v1+json",
             "size": 117 + 3747},
            id="helm-chart",
        ),
        pytest.param(
            "helm-chart.json", "",
            {"media_type": OCI_MANIFEST, "kind": ArtifactKind.HELM_CHART},
            id="helm-chart-without-any-media-type",
        ),
        pytest.param(
            "cosign-signature.json", OCI_MANIFEST,
            {"kind": ArtifactKind.SIGNATURE, "artifact_type": OCI_CONFIG, "subject": None},
            id="cosign-signature",
        ),
        pytest.param(
            "cosign-attestation.json", OCI_MANIFEST,
            {"kind": ArtifactKind.ATTESTATION, "artifact_type": OCI_CONFIG},
            id="cosign-attestation",
        ),
        pytest.param(
            "spdx-sbom-referrer.json", OCI_MANIFEST,
            {"kind": ArtifactKind.SBOM, "artifact_type": "application/spdx+json",
             "config_media_type": OCI_EMPTY, "subject": AMD64, "size": 2 + 48213,
             "annotations": {"org.opencontainers.image.created": "2024-05-14T09:30:00Z"}},
            id="spdx-sbom-referrer",
        ),
        pytest.param(
            "notation-signature.json", OCI_MANIFEST,
            {"kind": ArtifactKind.SIGNATURE,
             "artifact_type": "application/vnd.cncf.notary.signature", "subject": ARM64},
            id="notation-signature",
        ),
    ],
)
def test_describe_golden_manifests(name, media_type, expected):
    info = describe(media_type, golden(name))

    assert {field: getattr(info, field) for field in expected} == expected


def test_image_layers_are_listed_bottom_up():
    info = describe(DOCKER_MANIFEST, golden("docker-v2s2-image.json"))

    gzip_layer = "application/vnd.docker.image.rootfs.diff.tar.gzip"
    assert info.layers == (
        Descriptor("sha256:e692418e4cbaf90ca69d05a66403747baa33ee08806650b51fab815ad7fc331f",
                   gzip_layer, 32654),
        Descriptor("sha256:3c3a4604a545cdc127456d94e421cd355bca5b528f4a9c1905b15da2eb4a4c6b",
                   gzip_layer, 16724),
        Descriptor("sha256:ec4b8955958665577945c89419d1af06b5f7636b4ac3da7f12184802ad867736",
                   gzip_layer, 73109),
    )


def test_index_keeps_every_child_for_the_caller_to_size():
    info = describe(OCI_INDEX, golden("oci-index-buildx.json"))

    assert [child.digest for child in info.manifests] == [
        AMD64, ARM64, digest_of("buildx-amd64-att"), digest_of("buildx-arm64-att"),
    ]
    assert sum(child.size for child in info.manifests) == 1054 * 2 + 841 * 2


@pytest.mark.parametrize(
    ("media_type", "body", "expected"),
    [
        pytest.param(
            "application/vnd.docker.distribution.manifest.v1+prettyjws",
            json.dumps({"schemaVersion": 1, "name": "team/app", "tag": "old",
                        "fsLayers": [{"blobSum": digest_of("layer")}]}).encode(),
            {"schema": SchemaKind.IMAGE, "kind": ArtifactKind.OTHER, "size": None,
             "media_type": "application/vnd.docker.distribution.manifest.v1+prettyjws"},
            id="docker-schema1",
        ),
        pytest.param(
            "",
            json.dumps({"schemaVersion": 1, "name": "team/app", "fsLayers": []}).encode(),
            {"kind": ArtifactKind.OTHER,
             "media_type": "application/vnd.docker.distribution.manifest.v1+json"},
            id="docker-schema1-recognised-by-version",
        ),
        pytest.param(
            f"{OCI_MANIFEST}; charset=utf-8", oci_manifest(),
            {"media_type": OCI_MANIFEST, "kind": ArtifactKind.IMAGE, "size": 30},
            id="content-type-parameters-ignored",
        ),
        pytest.param(
            "application/json", oci_manifest(),
            {"media_type": OCI_MANIFEST, "kind": ArtifactKind.IMAGE},
            id="generic-content-type-falls-back-to-mediaType",
        ),
        pytest.param(
            OCI_ARTIFACT,
            json.dumps({"mediaType": OCI_ARTIFACT,
                        "artifactType": "application/vnd.cyclonedx+json",
                        "blobs": [layer("application/vnd.cyclonedx+json", size=7)],
                        "subject": layer(OCI_MANIFEST, "image", 401)}).encode(),
            {"schema": SchemaKind.IMAGE, "kind": ArtifactKind.SBOM, "config_media_type": None,
             "size": 7, "subject": digest_of("image")},
            id="oci-artifact-manifest-draft",
        ),
        pytest.param(
            OCI_MANIFEST,
            oci_manifest(artifactType="application/vnd.dev.sigstore.bundle.v0.3+json",
                         config=layer(OCI_EMPTY, "empty", 2)),
            {"kind": ArtifactKind.SIGNATURE},
            id="sigstore-bundle",
        ),
        pytest.param(
            OCI_MANIFEST,
            oci_manifest(config=layer(OCI_EMPTY, "empty", 2),
                         artifactType="application/vnd.dev.cosign.artifact.sig.v1+json"),
            {"kind": ArtifactKind.SIGNATURE},
            id="cosign-signature-as-referrer",
        ),
        pytest.param(
            OCI_MANIFEST,
            oci_manifest(config=layer(OCI_CONFIG), layers=[
                layer("application/vnd.in-toto+json", "provenance"),
                layer("application/vnd.in-toto+json", "sbom"),
            ]),
            {"kind": ArtifactKind.ATTESTATION},
            id="buildx-attestation-manifest",
        ),
        pytest.param(
            OCI_MANIFEST,
            oci_manifest(layers=[layer("text/spdx")]),
            {"kind": ArtifactKind.SBOM, "artifact_type": OCI_CONFIG},
            id="cosign-attached-sbom",
        ),
        pytest.param(
            OCI_MANIFEST,
            oci_manifest(artifactType="application/vnd.example.thing"),
            {"kind": ArtifactKind.OTHER, "artifact_type": "application/vnd.example.thing"},
            id="unknown-artifact-type",
        ),
        pytest.param(
            OCI_MANIFEST,
            oci_manifest(config=layer("application/vnd.example.config.v1+json")),
            {"kind": ArtifactKind.OTHER},
            id="unknown-config",
        ),
        pytest.param(
            OCI_INDEX,
            oci_index([{**layer(OCI_INDEX, "nested"),
                        "platform": {"os": "linux", "architecture": "amd64"}}]),
            {"kind": ArtifactKind.OTHER, "note": "index lists more than images",
             "platforms": (Platform("linux", "amd64", None, digest_of("nested"), OCI_INDEX),)},
            id="index-of-indexes",
        ),
        pytest.param(
            OCI_INDEX,
            oci_index([{**layer(OCI_MANIFEST, "sbom"), "artifactType": "application/spdx+json"}]),
            {"kind": ArtifactKind.OTHER, "platforms": ()},
            id="index-of-artifacts",
        ),
        pytest.param(
            OCI_INDEX, oci_index([]),
            {"kind": ArtifactKind.OTHER, "note": "index lists no images"},
            id="empty-index",
        ),
        pytest.param(
            OCI_INDEX,
            oci_index([layer(OCI_MANIFEST, "image")], artifactType="application/spdx+json",
                      subject=layer(OCI_MANIFEST, "subject")),
            {"kind": ArtifactKind.SBOM, "subject": digest_of("subject")},
            id="index-with-artifact-type",
        ),
    ],
)
def test_describe_edge_cases(media_type, body, expected):
    info = describe(media_type, body)

    assert {field: getattr(info, field) for field in expected} == expected


def test_schema1_says_why_it_is_not_inspected():
    info = describe("", json.dumps({"schemaVersion": 1, "fsLayers": []}).encode())

    assert info.note is not None
    assert "schema 1" in info.note


@pytest.mark.parametrize(
    ("media_type", "body", "message"),
    [
        pytest.param(OCI_MANIFEST, b"<html>502 Bad Gateway</html>", "not JSON", id="html"),
        pytest.param(OCI_MANIFEST, b"\xff\xfe\x00", "not JSON", id="binary"),
        pytest.param(OCI_MANIFEST, b"[]", "JSON object, not list", id="array"),
        pytest.param(OCI_MANIFEST, b'"manifest"', "JSON object, not str", id="string"),
        pytest.param(OCI_MANIFEST, oci_manifest(schemaVersion=3), "schemaVersion must be 2",
                     id="schema-version-3"),
        pytest.param(OCI_MANIFEST, oci_manifest(schemaVersion=True), "schemaVersion must be 2",
                     id="schema-version-true"),
        pytest.param(OCI_MANIFEST, oci_manifest(schemaVersion=None), "schemaVersion must be 2",
                     id="schema-version-missing"),
        pytest.param("", b'{"schemaVersion": 2, "name": "x"}', "not a manifest",
                     id="unknown-shape"),
        pytest.param(OCI_MANIFEST, oci_manifest(config=None), "config must be a descriptor",
                     id="no-config"),
        pytest.param(DOCKER_MANIFEST, oci_manifest(layers=None), "layers must be a list",
                     id="docker-without-layers"),
        pytest.param(OCI_MANIFEST,
                     oci_manifest(layers=[{"mediaType": OCI_LAYER, "digest": "abc", "size": 1}]),
                     "layers[0].digest is not a digest", id="bad-digest"),
        pytest.param(OCI_MANIFEST,
                     oci_manifest(layers=[{**layer(OCI_LAYER), "size": "12"}]),
                     "layers[0].size must be a non-negative integer", id="size-as-string"),
        pytest.param(OCI_MANIFEST,
                     oci_manifest(layers=[{**layer(OCI_LAYER), "size": -1}]),
                     "layers[0].size must be a non-negative integer", id="negative-size"),
        pytest.param(OCI_MANIFEST,
                     oci_manifest(layers=[{"digest": digest_of("x"), "size": 1}]),
                     "layers[0].mediaType must be a non-empty string", id="no-media-type"),
        pytest.param(OCI_MANIFEST, oci_manifest(annotations={"a": 1}),
                     "annotations must map strings to strings", id="annotation-not-string"),
        pytest.param(OCI_MANIFEST, oci_manifest(artifactType=7),
                     "artifactType must be a string", id="artifact-type-not-string"),
        pytest.param(OCI_MANIFEST, oci_manifest(subject="sha256:abc"),
                     "subject must be a descriptor", id="subject-not-descriptor"),
        pytest.param(OCI_INDEX, b'{"schemaVersion": 2, "manifests": {}}',
                     "manifests must be a list", id="manifests-not-list"),
        pytest.param(OCI_INDEX, oci_index([{**layer(OCI_MANIFEST), "platform": {"os": "linux"}}]),
                     "manifests[0].platform.architecture must be a non-empty string",
                     id="platform-without-architecture"),
    ],
)
def test_describe_rejects_what_is_not_a_manifest(media_type, body, message):
    with pytest.raises(InvalidManifestError, match=message.replace("[", r"\[")):
        describe(media_type, body)


def test_invalid_manifest_error_is_a_value_error():
    with pytest.raises(ValueError, match="not JSON"):
        describe(OCI_MANIFEST, b"")


HEX = "4f44eee9e4431b0682d697db4248fc8a2277b0f8fae76d9429e86a60df17f606"


@pytest.mark.parametrize(
    ("tag", "expected"),
    [
        (f"sha256-{HEX}.sig", CosignTag(f"sha256:{HEX}", ArtifactKind.SIGNATURE)),
        (f"sha256-{HEX}.att", CosignTag(f"sha256:{HEX}", ArtifactKind.ATTESTATION)),
        (f"sha256-{HEX}.sbom", CosignTag(f"sha256:{HEX}", ArtifactKind.SBOM)),
        ("latest", None),
        ("1.0.sig", None),
        (f"sha256-{HEX}", None),
        (f"sha256-{HEX}.sig.bak", None),
        (f"sha256-{HEX.upper()}.sig", None),
        (f"sha256-{HEX[:-1]}.sig", None),
        (f"sha512-{HEX}{HEX}.sig", None),
        (f"sha256-{HEX}.cosign", None),
    ],
)
def test_cosign_tag(tag, expected):
    assert cosign_tag(tag) == expected


@pytest.mark.parametrize(
    ("tag", "expected"),
    [(f"sha256-{HEX}.sig", f"sha256:{HEX}"), (f"sha256-{HEX}.sbom", f"sha256:{HEX}"),
     ("latest", None)],
)
def test_signed_digest_from_tag(tag, expected):
    assert signed_digest_from_tag(tag) == expected
