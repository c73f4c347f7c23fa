"""Build OCI image layouts on disk in pure Python, for tests to push with skopeo.

The layout follows OCI image-spec image-layout.md: an ``oci-layout`` file, ``index.json``
naming each tag with the ``org.opencontainers.image.ref.name`` annotation, and content-addressed
blobs under ``blobs/sha256/``. Several tags may share one layout directory; building a tag again
replaces its entry. skopeo reads it as ``oci:DIR:TAG``.

Everything is deterministic (fixed mtimes, owners and modes; gzip without a timestamp; sorted
JSON keys), so the same call gives the same digests. ``salt`` goes into the image config's
labels, so tests that must not share digests pass different salts.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import tarfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

__all__ = [
    "DOCKER_CONFIG",
    "HELM_CHART_CONTENT",
    "HELM_CONFIG",
    "OCI_CONFIG",
    "OCI_EMPTY",
    "OCI_INDEX",
    "OCI_LAYER_GZIP",
    "OCI_MANIFEST",
    "build_cosign_signature",
    "build_helm_chart",
    "build_oci_artifact",
    "build_oci_image",
    "build_oci_index",
    "build_raw_image",
    "read_blob",
    "read_json_blob",
    "tar_layer",
]

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
OCI_EMPTY = "application/vnd.oci.empty.v1+json"
DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
HELM_CONFIG = "application/vnd.cncf.helm.config.v1+json"
HELM_CHART_CONTENT = "application/vnd.cncf.helm.chart.content.v1.tar+gzip"
COSIGN_SIMPLESIGNING = "application/vnd.dev.cosign.simplesigning.v1+json"
IN_TOTO = "application/vnd.in-toto+json"
REF_NAME = "org.opencontainers.image.ref.name"

# A fixed instant for every timestamp, so rebuilding gives the same bytes.
EPOCH = "1970-01-01T00:00:00Z"
DEFAULT_PLATFORMS: tuple[tuple[str, str, str | None], ...] = (
    ("linux", "amd64", None),
    ("linux", "arm64", "v8"),
)

Descriptor = dict[str, Any]


def build_oci_image(
    layout: Path | str,
    tag: str,
    layers: Sequence[Mapping[str, bytes]],
    *,
    os: str = "linux",
    architecture: str = "amd64",
    variant: str | None = None,
    salt: str = "",
) -> str:
    """Write a single-platform OCI image tagged ``tag``; return its manifest digest.

    ``layers`` lists the layers bottom-up, each a mapping of path inside the image (no leading
    slash) to file content. Whiteouts are ordinary paths (``etc/.wh.motd``).
    """
    root = _init_layout(layout)
    descriptor = _write_image(
        root, layers, os_name=os, architecture=architecture, variant=variant, salt=salt,
    )
    _tag(root, tag, descriptor)
    return str(descriptor["digest"])


def build_raw_image(
    layout: Path | str, tag: str, blobs: Sequence[tuple[str, bytes]], *, salt: str = ""
) -> str:
    """Write an image whose layers are given as (media type, blob) as they are: hostile or
    odd layers a well-formed builder cannot make. The config's diff ids are the blobs' own
    digests (nothing checks them on the way to the registry); return the manifest digest."""
    root = _init_layout(layout)
    layers = [_put_blob(root, media_type, blob) for media_type, blob in blobs]
    descriptor = _put_image(root, layers, [layer["digest"] for layer in layers],
                            os_name="linux", architecture="amd64", variant=None, salt=salt)
    _tag(root, tag, descriptor)
    return str(descriptor["digest"])


def build_oci_index(
    layout: Path | str,
    tag: str,
    platforms: Sequence[tuple[str, str, str | None]] = DEFAULT_PLATFORMS,
    layers: Sequence[Mapping[str, bytes]] | None = None,
    *,
    salt: str = "",
    attestations: bool = False,
) -> str:
    """Write an OCI image index tagged ``tag`` with one image per (os, arch, variant).

    Without ``layers`` each image gets one layer holding ``etc/dockyard-platform``. With
    ``attestations`` each image also gets a BuildKit-style attestation manifest: an index entry
    with platform ``unknown/unknown`` and ``vnd.docker.reference.type: attestation-manifest``
    whose layer is an in-toto statement (docker buildx's ``--provenance``/``--sbom`` output).
    Returns the index digest; ``read_json_blob`` reads the index back to reach its children.
    """
    root = _init_layout(layout)
    children: list[Descriptor] = []
    attestation_entries: list[Descriptor] = []
    for os_name, architecture, variant in platforms:
        platform_name = "/".join(part for part in (os_name, architecture, variant) if part)
        image_layers = layers if layers is not None else [
            {"etc/dockyard-platform": f"{platform_name}\n".encode()},
        ]
        image = _write_image(
            root, image_layers,
            os_name=os_name, architecture=architecture, variant=variant, salt=salt,
        )
        image["platform"] = _platform(os_name, architecture, variant)
        children.append(image)
        if attestations:
            attestation_entries.append(_write_attestation(root, image, salt))
    index = {
        "schemaVersion": 2,
        "mediaType": OCI_INDEX,
        "manifests": children + attestation_entries,
    }
    descriptor = _put_json(root, OCI_INDEX, index)
    _tag(root, tag, descriptor)
    return str(descriptor["digest"])


def build_oci_artifact(
    layout: Path | str,
    tag: str,
    blobs: Sequence[tuple[str, bytes]],
    *,
    config_media_type: str = OCI_EMPTY,
    config: bytes = b"{}",
    artifact_type: str | None = None,
    subject: str | None = None,
    annotations: Mapping[str, str] | None = None,
) -> str:
    """Write an OCI artifact (an image manifest with arbitrary blobs) tagged ``tag``.

    ``blobs`` are (media type, content) pairs stored as the manifest's layers. ``subject`` is
    the digest of a manifest already in this layout that the artifact refers to (OCI 1.1
    referrers). Follows image-spec manifest.md "Guidelines for Artifact Usage".
    """
    root = _init_layout(layout)
    manifest: dict[str, Any] = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": _put_blob(root, config_media_type, config),
        "layers": [_put_blob(root, media_type, data) for media_type, data in blobs],
    }
    if artifact_type is not None:
        manifest["artifactType"] = artifact_type
    if subject is not None:
        manifest["subject"] = _descriptor_of(root, subject)
    if annotations:
        manifest["annotations"] = dict(annotations)
    descriptor = _put_json(root, OCI_MANIFEST, manifest)
    _tag(root, tag, descriptor)
    return str(descriptor["digest"])


def build_helm_chart(
    layout: Path | str,
    tag: str,
    *,
    name: str = "demo",
    version: str = "0.1.0",
    salt: str = "",
) -> str:
    """Write a Helm chart as Helm 3 pushes it to an OCI registry (config ``helm.config.v1``)."""
    chart_yaml = f"apiVersion: v2\nname: {name}\nversion: {version}\ndescription: {salt}\n"
    chart = tar_layer({f"{name}/Chart.yaml": chart_yaml.encode()})
    config = {"apiVersion": "v2", "name": name, "version": version, "description": salt}
    return build_oci_artifact(
        layout,
        tag,
        [(HELM_CHART_CONTENT, chart)],
        config_media_type=HELM_CONFIG,
        config=_json_bytes(config),
        annotations={"org.opencontainers.image.title": name,
                     "org.opencontainers.image.version": version},
    )


def build_cosign_signature(layout: Path | str, signed: str, *, salt: str = "") -> str:
    """Write a cosign-style signature of manifest ``signed``, tagged ``sha256-<hex>.sig``.

    The shape is what ``cosign sign`` stores: an image config and one simple-signing payload
    layer carrying the signature in an annotation (the signature itself is not verifiable).
    """
    algorithm, _, hex_digest = signed.partition(":")
    payload = {
        "critical": {
            "identity": {"docker-reference": "dockyard.test/signed"},
            "image": {"docker-manifest-digest": signed},
            "type": "cosign container image signature",
        },
        "optional": {"salt": salt} if salt else None,
    }
    payload_bytes = _json_bytes(payload)
    config = {
        "architecture": "",
        "os": "",
        "created": EPOCH,
        "config": {},
        "rootfs": {"type": "layers", "diff_ids": [_digest(payload_bytes)]},
    }
    root = _init_layout(layout)
    layer = _put_blob(root, COSIGN_SIMPLESIGNING, payload_bytes)
    layer["annotations"] = {"dev.cosignproject.cosign/signature": "MEUCIQDtest"}
    manifest = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": _put_blob(root, OCI_CONFIG, _json_bytes(config)),
        "layers": [layer],
    }
    descriptor = _put_json(root, OCI_MANIFEST, manifest)
    _tag(root, f"{algorithm}-{hex_digest}.sig", descriptor)
    return str(descriptor["digest"])


def tar_layer(files: Mapping[str, bytes]) -> bytes:
    """A gzipped tar holding ``files`` and their parent directories, byte-for-byte repeatable."""
    directories = {
        "/".join(parts[:depth])
        for parts in (path.strip("/").split("/") for path in files)
        for depth in range(1, len(parts))
    }
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for directory in sorted(directories):
            info = _tar_info(directory, tarfile.DIRTYPE, 0o755)
            tar.addfile(info)
        for path in sorted(files):
            content = files[path]
            info = _tar_info(path.strip("/"), tarfile.REGTYPE, 0o644)
            info.size = len(content)
            tar.addfile(info, io.BytesIO(content))
    return gzip.compress(buffer.getvalue(), mtime=0)


def read_blob(layout: Path | str, digest: str) -> bytes:
    algorithm, _, hex_digest = digest.partition(":")
    return (Path(layout) / "blobs" / algorithm / hex_digest).read_bytes()


def read_json_blob(layout: Path | str, digest: str) -> Any:
    return json.loads(read_blob(layout, digest))


def _write_image(
    root: Path,
    layers: Sequence[Mapping[str, bytes]],
    *,
    os_name: str,
    architecture: str,
    variant: str | None,
    salt: str,
) -> Descriptor:
    layer_descriptors = []
    diff_ids = []
    for files in layers:
        compressed = tar_layer(files)
        diff_ids.append(_digest(gzip.decompress(compressed)))
        layer_descriptors.append(_put_blob(root, OCI_LAYER_GZIP, compressed))
    return _put_image(root, layer_descriptors, diff_ids, os_name=os_name,
                      architecture=architecture, variant=variant, salt=salt)


def _put_image(
    root: Path,
    layer_descriptors: Sequence[Descriptor],
    diff_ids: Sequence[str],
    *,
    os_name: str,
    architecture: str,
    variant: str | None,
    salt: str,
) -> Descriptor:
    config: dict[str, Any] = {
        "created": EPOCH,
        "architecture": architecture,
        "os": os_name,
        "config": {
            "Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],
            "Labels": {"org.dockyard.test.salt": salt},
        },
        "rootfs": {"type": "layers", "diff_ids": list(diff_ids)},
        "history": [{"created": EPOCH, "created_by": "tests.support.images"}
                    for _ in layer_descriptors],
    }
    if variant is not None:
        config["variant"] = variant
    manifest = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": _put_blob(root, OCI_CONFIG, _json_bytes(config)),
        "layers": list(layer_descriptors),
    }
    return _put_json(root, OCI_MANIFEST, manifest)


def _write_attestation(root: Path, image: Descriptor, salt: str) -> Descriptor:
    statement = {
        "_type": "https://in-toto.io/Statement/v0.1",
        "predicateType": "https://slsa.dev/provenance/v0.2",
        "subject": [{"name": "dockyard.test/image", "digest": {"sha256": image["digest"][7:]}}],
        "predicate": {"builder": {"id": "tests.support.images"}, "salt": salt},
    }
    statement_bytes = _json_bytes(statement)
    layer = _put_blob(root, IN_TOTO, statement_bytes)
    layer["annotations"] = {"in-toto.io/predicate-type": statement["predicateType"]}
    config = {
        "architecture": "unknown",
        "os": "unknown",
        "config": {},
        "rootfs": {"type": "layers", "diff_ids": [_digest(statement_bytes)]},
    }
    manifest = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": _put_blob(root, OCI_CONFIG, _json_bytes(config)),
        "layers": [layer],
    }
    descriptor = _put_json(root, OCI_MANIFEST, manifest)
    descriptor["annotations"] = {
        "vnd.docker.reference.digest": image["digest"],
        "vnd.docker.reference.type": "attestation-manifest",
    }
    descriptor["platform"] = {"architecture": "unknown", "os": "unknown"}
    return descriptor


def _platform(os_name: str, architecture: str, variant: str | None) -> dict[str, str]:
    platform = {"architecture": architecture, "os": os_name}
    if variant is not None:
        platform["variant"] = variant
    return platform


def _init_layout(layout: Path | str) -> Path:
    root = Path(layout)
    (root / "blobs" / "sha256").mkdir(parents=True, exist_ok=True)
    (root / "oci-layout").write_text('{"imageLayoutVersion":"1.0.0"}')
    return root


def _tag(root: Path, tag: str, descriptor: Descriptor) -> None:
    index_path = root / "index.json"
    if index_path.exists():
        index = json.loads(index_path.read_text())
    else:
        index = {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": []}
    entries = [entry for entry in index["manifests"]
               if entry.get("annotations", {}).get(REF_NAME) != tag]
    tagged = {key: descriptor[key] for key in ("mediaType", "digest", "size")}
    tagged["annotations"] = {REF_NAME: tag}
    index["manifests"] = [*entries, tagged]
    index_path.write_bytes(_json_bytes(index))


def _descriptor_of(root: Path, digest: str) -> Descriptor:
    content = read_blob(root, digest)
    return {"mediaType": json.loads(content)["mediaType"], "digest": digest, "size": len(content)}


def _put_json(root: Path, media_type: str, document: Mapping[str, Any]) -> Descriptor:
    return _put_blob(root, media_type, _json_bytes(document))


def _put_blob(root: Path, media_type: str, data: bytes) -> Descriptor:
    digest = _digest(data)
    path = root / "blobs" / "sha256" / digest.removeprefix("sha256:")
    if not path.exists():
        path.write_bytes(data)
    return {"mediaType": media_type, "digest": digest, "size": len(data)}


def _tar_info(name: str, kind: bytes, mode: int) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.mode = mode
    info.mtime = 0
    info.uid = info.gid = 0
    info.uname = info.gname = "root"
    return info


def _json_bytes(document: Any) -> bytes:
    return json.dumps(document, sort_keys=True, separators=(",", ":")).encode()


def _digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()
