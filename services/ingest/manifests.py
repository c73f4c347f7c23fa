"""What a manifest describes, read from its JSON alone: no I/O, no registry calls.

Formats, and where their fields are defined:

- Docker Image Manifest V2, Schema 2 and its manifest list: distribution/distribution
  docs/spec/manifest-v2-2.md.
- OCI image manifest (``config``, ``layers``, ``artifactType``, ``subject``, ``annotations``):
  opencontainers/image-spec manifest.md, v1.1; artifacts per its "Guidelines for Artifact Usage".
- OCI image index (``manifests[].platform``): image-spec image-index.md.
- OCI artifact manifest (``blobs`` instead of ``layers``, no config): image-spec
  v1.1.0-rc1/rc2 artifact.md, dropped before 1.1.0 but still stored by some registries.
- Docker schema 1 (docs/spec/deprecated-schema-v1.md): recognised, not inspected.

Which artifact a manifest carries is a convention of the tool that wrote it, not of a spec:
Helm sets its config media type; cosign and notation mark signatures, SBOMs and attestations by
layer media type or ``artifactType``; docker buildx adds attestation manifests to an index as
``unknown/unknown`` entries annotated ``vnd.docker.reference.type: attestation-manifest``
(moby/buildkit docs/attestations/attestation-storage.md).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, NamedTuple

from services.core.reference import is_valid_digest

__all__ = [
    "ArtifactKind",
    "Attestation",
    "CosignTag",
    "Descriptor",
    "InvalidManifestError",
    "ManifestInfo",
    "Platform",
    "SchemaKind",
    "cosign_tag",
    "describe",
    "signed_digest_from_tag",
]

DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_MANIFEST_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_SCHEMA1 = "application/vnd.docker.distribution.manifest.v1+json"
DOCKER_SCHEMA1_SIGNED = "application/vnd.docker.distribution.manifest.v1+prettyjws"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_ARTIFACT_MANIFEST = "application/vnd.oci.artifact.manifest.v1+json"

_SCHEMA_1 = 1
_SCHEMA_2 = 2

_IMAGE_MANIFEST_TYPES = frozenset({DOCKER_MANIFEST, OCI_MANIFEST})
_INDEX_TYPES = frozenset({DOCKER_MANIFEST_LIST, OCI_INDEX})
_SCHEMA1_TYPES = frozenset({DOCKER_SCHEMA1, DOCKER_SCHEMA1_SIGNED})
_KNOWN_TYPES = _IMAGE_MANIFEST_TYPES | _INDEX_TYPES | _SCHEMA1_TYPES | {OCI_ARTIFACT_MANIFEST}

_IMAGE_CONFIG_TYPES = frozenset({
    "application/vnd.docker.container.image.v1+json",
    "application/vnd.oci.image.config.v1+json",
})
_HELM_CONFIG = "application/vnd.cncf.helm.config.v1+json"
_SIGNATURE_TYPES = frozenset({
    "application/vnd.dev.cosign.simplesigning.v1+json",  # cosign sign, payload layer
    "application/vnd.dev.cosign.artifact.sig.v1+json",  # cosign sign, OCI 1.1 artifactType
    "application/vnd.cncf.notary.signature",  # notation sign
})
_SIGNATURE_PREFIXES = ("application/vnd.dev.sigstore.bundle",)  # sigstore bundle, any version
_ATTESTATION_TYPES = frozenset({
    "application/vnd.dev.cosign.attestation.v1+json",  # cosign attest, artifactType
    "application/vnd.dsse.envelope.v1+json",  # cosign attest, envelope layer
})
_ATTESTATION_PREFIXES = ("application/vnd.in-toto",)  # in-toto statements (buildx, cosign)
_SBOM_PREFIXES = ("application/spdx", "text/spdx", "application/vnd.cyclonedx")

# docker buildx marks attestation manifests inside an index this way.
_REFERENCE_TYPE = "vnd.docker.reference.type"
_REFERENCE_DIGEST = "vnd.docker.reference.digest"
_ATTESTATION_MANIFEST = "attestation-manifest"
_UNKNOWN = "unknown"

_COSIGN_TAG = re.compile(r"sha256-([0-9a-f]{64})\.(sig|att|sbom)")


class InvalidManifestError(ValueError):
    """The bytes are not a manifest; the message names the field that is wrong."""


class SchemaKind(StrEnum):
    """The shape of the document: one manifest, or an index of manifests."""

    IMAGE = "image"
    INDEX = "index"


class ArtifactKind(StrEnum):
    """What the manifest carries, as the catalog shows it."""

    IMAGE = "image"
    INDEX = "index"  # a multi-platform image: an index whose children are images
    HELM_CHART = "helm_chart"
    SIGNATURE = "signature"
    SBOM = "sbom"
    ATTESTATION = "attestation"
    OTHER = "other"


class Descriptor(NamedTuple):
    """A content descriptor (image-spec descriptor.md) reduced to what the catalog keeps."""

    digest: str
    media_type: str
    size: int


class Platform(NamedTuple):
    """One runnable image of an index: ``manifests[]`` entry with its ``platform``."""

    os: str
    architecture: str
    variant: str | None
    digest: str
    media_type: str


class Attestation(NamedTuple):
    """A buildx attestation manifest in an index; ``subject`` is the image it is about."""

    digest: str
    media_type: str
    subject: str | None


class CosignTag(NamedTuple):
    """What a cosign tag ``sha256-<hex>.sig|.att|.sbom`` is attached to, and as what."""

    digest: str
    kind: ArtifactKind


@dataclass(frozen=True)
class ManifestInfo:
    media_type: str
    schema: SchemaKind
    kind: ArtifactKind
    config_media_type: str | None = None
    # ``artifactType`` when the manifest sets it, else the config media type (image-spec 1.1).
    artifact_type: str | None = None
    # Bytes referenced by an image: config plus layers. None for an index, whose size is the
    # sum of its children's, which only the caller can look up.
    size: int | None = None
    layers: tuple[Descriptor, ...] = ()
    manifests: tuple[Descriptor, ...] = ()  # every child of an index, attestations included
    platforms: tuple[Platform, ...] = ()
    attestations: tuple[Attestation, ...] = ()
    subject: str | None = None
    annotations: dict[str, str] = field(default_factory=dict)
    note: str | None = None


def describe(media_type: str, body: bytes) -> ManifestInfo:
    """Classify a manifest from its media type (the response's Content-Type) and bytes.

    Raises InvalidManifestError (a ValueError) naming the offending field when the body is not
    a manifest.
    """
    try:
        document = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InvalidManifestError(f"manifest is not JSON: {exc}") from None
    if not isinstance(document, dict):
        raise InvalidManifestError(f"manifest must be a JSON object, not {type(document).__name__}")
    schema_version = document.get("schemaVersion")
    # type() rather than isinstance(): JSON true must not pass for 1.
    version = schema_version if type(schema_version) is int else None
    media_type = _media_type(media_type, document, version)
    if version == _SCHEMA_1 or media_type in _SCHEMA1_TYPES:
        return ManifestInfo(
            media_type=media_type,
            schema=SchemaKind.IMAGE,
            kind=ArtifactKind.OTHER,
            note="Docker schema 1 manifest (deprecated): not inspected; push it again as schema 2",
        )
    # The draft artifact manifest had no schemaVersion; everything else must say 2.
    if media_type != OCI_ARTIFACT_MANIFEST and version != _SCHEMA_2:
        raise InvalidManifestError(f"schemaVersion must be 2, not {json.dumps(schema_version)}")
    if media_type in _INDEX_TYPES:
        return _describe_index(media_type, document)
    return _describe_manifest(media_type, document)


def cosign_tag(tag: str) -> CosignTag | None:
    """What a cosign tag is attached to: ``sha256-<hex>.sig`` → ``sha256:<hex>``, SIGNATURE.

    cosign stores what it attaches to an image under tags derived from the image digest
    (sigstore/cosign specs/SIGNATURE_SPEC.md): ``.sig`` signatures, ``.att`` attestations,
    ``.sbom`` SBOMs. Any other tag gives None.
    """
    match = _COSIGN_TAG.fullmatch(tag)
    if match is None:
        return None
    hex_digest, suffix = match.groups()
    kind = {
        "sig": ArtifactKind.SIGNATURE,
        "att": ArtifactKind.ATTESTATION,
        "sbom": ArtifactKind.SBOM,
    }[suffix]
    return CosignTag(f"sha256:{hex_digest}", kind)


def signed_digest_from_tag(tag: str) -> str | None:
    """The digest a cosign tag (``sha256-<hex>.sig|.att|.sbom``) is attached to, else None."""
    parsed = cosign_tag(tag)
    return parsed.digest if parsed is not None else None


def _media_type(header: str, document: dict[str, Any], version: int | None) -> str:
    """The header's media type when it names a manifest, else the body's, else by shape."""
    media_type = header.partition(";")[0].strip().lower()
    if media_type in _KNOWN_TYPES:
        return media_type
    declared = document.get("mediaType")
    if isinstance(declared, str) and declared in _KNOWN_TYPES:
        return declared
    # Helm and older ORAS omit mediaType; a registry still serves the right Content-Type,
    # but a caller may only have the bytes. The shape decides then.
    if "manifests" in document:
        return OCI_INDEX
    if "config" in document or "layers" in document:
        return OCI_MANIFEST
    if "blobs" in document:
        return OCI_ARTIFACT_MANIFEST
    if version == _SCHEMA_1:
        return DOCKER_SCHEMA1
    raise InvalidManifestError(
        f"not a manifest: media type {media_type or '(none)'!r} is not one of"
        f" {', '.join(sorted(_KNOWN_TYPES))}, and the body has no manifests, config or layers",
    )


def _describe_manifest(media_type: str, document: dict[str, Any]) -> ManifestInfo:
    config: Descriptor | None = None
    if media_type == OCI_ARTIFACT_MANIFEST:
        layers = _descriptors(document, "blobs", required=False)
    else:
        config = _descriptor(document.get("config"), "config")
        layers = _descriptors(document, "layers", required=media_type == DOCKER_MANIFEST)
    explicit_type = _optional_str(document, "artifactType")
    config_media_type = config.media_type if config is not None else None
    artifact_type = explicit_type or config_media_type
    return ManifestInfo(
        media_type=media_type,
        schema=SchemaKind.IMAGE,
        kind=_classify(artifact_type, config_media_type, [layer.media_type for layer in layers]),
        config_media_type=config_media_type,
        artifact_type=artifact_type,
        size=(config.size if config is not None else 0) + sum(layer.size for layer in layers),
        layers=tuple(layers),
        subject=_subject(document),
        annotations=_annotations(document.get("annotations"), "annotations"),
    )


def _classify(
    artifact_type: str | None,
    config_media_type: str | None,
    layer_media_types: list[str],
) -> ArtifactKind:
    # The declared type wins; cosign signatures and buildx attestations declare an ordinary
    # image config, so their layers are looked at before settling on "image".
    for declared in (artifact_type, config_media_type):
        kind = _kind_of(declared)
        if kind is not None:
            return kind
    layer_kinds = {_kind_of(media_type) for media_type in layer_media_types}
    for kind in (ArtifactKind.SIGNATURE, ArtifactKind.ATTESTATION, ArtifactKind.SBOM):
        if kind in layer_kinds:
            return kind
    if artifact_type in _IMAGE_CONFIG_TYPES:
        return ArtifactKind.IMAGE
    return ArtifactKind.OTHER


def _kind_of(media_type: str | None) -> ArtifactKind | None:
    if media_type is None:
        return None
    if media_type == _HELM_CONFIG:
        return ArtifactKind.HELM_CHART
    if media_type in _SIGNATURE_TYPES or media_type.startswith(_SIGNATURE_PREFIXES):
        return ArtifactKind.SIGNATURE
    if media_type in _ATTESTATION_TYPES or media_type.startswith(_ATTESTATION_PREFIXES):
        return ArtifactKind.ATTESTATION
    if media_type.startswith(_SBOM_PREFIXES):
        return ArtifactKind.SBOM
    return None


def _describe_index(media_type: str, document: dict[str, Any]) -> ManifestInfo:
    manifests: list[Descriptor] = []
    platforms: list[Platform] = []
    attestations: list[Attestation] = []
    runnable_only = True
    entries = document.get("manifests")
    if not isinstance(entries, list):
        raise InvalidManifestError("manifests must be a list of descriptors")
    for position, entry in enumerate(entries):
        where = f"manifests[{position}]"
        child = _descriptor(entry, where)
        manifests.append(child)
        annotations = _annotations(entry.get("annotations"), f"{where}.annotations")
        platform = _platform(entry.get("platform"), f"{where}.platform", child)
        if annotations.get(_REFERENCE_TYPE) == _ATTESTATION_MANIFEST or (
            platform is not None and platform.os == platform.architecture == _UNKNOWN
        ):
            attestations.append(
                Attestation(child.digest, child.media_type, annotations.get(_REFERENCE_DIGEST)),
            )
            continue
        if platform is not None:
            platforms.append(platform)
        child_type = _optional_str(entry, "artifactType", where)
        if child.media_type not in _IMAGE_MANIFEST_TYPES or (
            child_type is not None and child_type not in _IMAGE_CONFIG_TYPES
        ):
            runnable_only = False
    artifact_type = _optional_str(document, "artifactType")
    note = None
    if artifact_type is not None:
        kind = _kind_of(artifact_type) or ArtifactKind.OTHER
    elif runnable_only and len(manifests) > len(attestations):
        kind = ArtifactKind.INDEX
    else:
        kind = ArtifactKind.OTHER
        note = "index lists no images" if runnable_only else "index lists more than images"
    return ManifestInfo(
        media_type=media_type,
        schema=SchemaKind.INDEX,
        kind=kind,
        artifact_type=artifact_type,
        manifests=tuple(manifests),
        platforms=tuple(platforms),
        attestations=tuple(attestations),
        subject=_subject(document),
        annotations=_annotations(document.get("annotations"), "annotations"),
        note=note,
    )


def _platform(value: Any, where: str, child: Descriptor) -> Platform | None:
    if value is None:
        return None
    if not isinstance(value, dict):
        raise InvalidManifestError(f"{where} must be an object")
    return Platform(
        os=_required_str(value, "os", where),
        architecture=_required_str(value, "architecture", where),
        variant=_optional_str(value, "variant", where),
        digest=child.digest,
        media_type=child.media_type,
    )


def _subject(document: dict[str, Any]) -> str | None:
    subject = document.get("subject")
    return None if subject is None else _descriptor(subject, "subject").digest


def _descriptors(document: dict[str, Any], key: str, *, required: bool) -> list[Descriptor]:
    values = document.get(key)
    if values is None and not required:
        return []
    if not isinstance(values, list):
        raise InvalidManifestError(f"{key} must be a list of descriptors")
    return [_descriptor(value, f"{key}[{position}]") for position, value in enumerate(values)]


def _descriptor(value: Any, where: str) -> Descriptor:
    if not isinstance(value, dict):
        raise InvalidManifestError(f"{where} must be a descriptor object")
    digest = _required_str(value, "digest", where)
    if not is_valid_digest(digest):
        raise InvalidManifestError(f"{where}.digest is not a digest (sha256:<hex>): {digest!r}")
    size = value.get("size")
    if type(size) is not int or size < 0:
        raise InvalidManifestError(
            f"{where}.size must be a non-negative integer, not {json.dumps(size)}",
        )
    return Descriptor(digest, _required_str(value, "mediaType", where), size)


def _annotations(value: Any, where: str) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, dict) or not all(
        isinstance(item, str) for item in value.values()
    ):
        raise InvalidManifestError(f"{where} must map strings to strings")
    return dict(value)


def _required_str(value: dict[str, Any], key: str, where: str) -> str:
    text = value.get(key)
    if not isinstance(text, str) or not text:
        raise InvalidManifestError(f"{where}.{key} must be a non-empty string")
    return text


def _optional_str(value: dict[str, Any], key: str, where: str = "") -> str | None:
    text = value.get(key)
    if text is None:
        return None
    if not isinstance(text, str):
        raise InvalidManifestError(f"{where + '.' if where else ''}{key} must be a string")
    return text
