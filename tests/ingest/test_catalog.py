"""services.ingest.catalog.plan: what each registry event changes in the catalog."""

from __future__ import annotations

from pathlib import Path

import pytest

from services.auth.authority import SERVICE_PRINCIPAL
from services.ingest.catalog import FetchedManifest, needs_manifest, plan
from services.ingest.manifests import describe
from services.ingest.models import (
    DeleteManifest,
    DeleteRepository,
    DeleteTag,
    PlatformEntry,
    PutManifest,
    PutTag,
    RecordPull,
)
from tests.factories import DIGEST_A, DIGEST_B, OCI_MANIFEST, registry_event

MANIFESTS = Path(__file__).parent / "testdata" / "manifests"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"


def fetched(name: str, media_type: str, digest: str = DIGEST_A, **sizes: int) -> FetchedManifest:
    info = describe(media_type, (MANIFESTS / name).read_bytes())
    return FetchedManifest(digest, info, {p.digest: sizes.get(p.architecture)
                                          for p in info.platforms})


def test_a_push_by_tag_records_the_manifest_and_points_the_tag_at_it() -> None:
    event = registry_event("push", mediaType=OCI_MANIFEST, digest=DIGEST_A, tag="1.0")
    manifest = fetched("oci-image.json", OCI_MANIFEST)
    put_manifest, put_tag = plan(event, manifest)
    assert isinstance(put_manifest, PutManifest)
    assert (put_manifest.digest, put_manifest.kind, put_manifest.media_type) == (
        DIGEST_A, "image", OCI_MANIFEST)
    assert put_manifest.size == manifest.info.size
    assert put_manifest.pushed_by == "alice"
    assert put_tag == PutTag("team/app", "1.0", DIGEST_A, "alice", event.timestamp)


def test_a_push_by_digest_records_the_manifest_only() -> None:
    event = registry_event("push", mediaType=OCI_MANIFEST, digest=DIGEST_A)
    assert [type(op) for op in plan(event, fetched("oci-image.json", OCI_MANIFEST))] == [
        PutManifest]


def test_an_index_carries_its_platforms_and_the_sum_of_their_sizes() -> None:
    event = registry_event("push", mediaType=OCI_INDEX, digest=DIGEST_A, tag="latest")
    manifest = fetched("oci-index-buildx.json", OCI_INDEX, amd64=100, arm64=50)
    put_manifest = plan(event, manifest)[0]
    assert isinstance(put_manifest, PutManifest)
    assert put_manifest.kind == "index"
    assert {(p.architecture, p.size) for p in put_manifest.platforms} == {
        ("amd64", 100), ("arm64", 50)}
    assert all(isinstance(p, PlatformEntry) for p in put_manifest.platforms)
    assert put_manifest.size == 150


def test_an_index_whose_child_size_is_unknown_has_no_total() -> None:
    event = registry_event("push", mediaType=OCI_INDEX, digest=DIGEST_A, tag="latest")
    put_manifest = plan(event, fetched("oci-index-buildx.json", OCI_INDEX, amd64=100))[0]
    assert isinstance(put_manifest, PutManifest)
    assert put_manifest.size is None


def test_a_cosign_signature_tag_links_to_the_signed_digest() -> None:
    signed = "sha256:" + "c" * 64
    event = registry_event("push", mediaType=OCI_MANIFEST, digest=DIGEST_B,
                           tag="sha256-" + "c" * 64 + ".sig")
    manifest = fetched("cosign-signature.json", OCI_MANIFEST, digest=DIGEST_B)
    put_manifest = plan(event, manifest)[0]
    assert isinstance(put_manifest, PutManifest)
    assert put_manifest.kind == "signature"
    assert put_manifest.subject == signed


def test_an_oci_subject_links_an_sbom_to_its_image() -> None:
    event = registry_event("push", mediaType=OCI_MANIFEST, digest=DIGEST_B)
    manifest = fetched("spdx-sbom-referrer.json", OCI_MANIFEST, digest=DIGEST_B)
    put_manifest = plan(event, manifest)[0]
    assert isinstance(put_manifest, PutManifest)
    assert put_manifest.kind == "sbom"
    assert put_manifest.subject == manifest.info.subject is not None


def test_a_manifest_gone_before_it_was_read_changes_nothing() -> None:
    event = registry_event("push", mediaType=OCI_MANIFEST, digest=DIGEST_A, tag="1.0")
    assert plan(event, None) == []


@pytest.mark.parametrize(
    ("target", "expected"),
    [
        ({"tag": "1.0"}, DeleteTag("team/app", "1.0")),
        # registry 3.x untags with both tag and digest: only the tag goes
        ({"tag": "1.0", "digest": DIGEST_A}, DeleteTag("team/app", "1.0")),
        ({"digest": DIGEST_A}, DeleteManifest("team/app", DIGEST_A)),
        ({}, DeleteRepository("team/app")),
    ],
)
def test_deletes(target: dict[str, str], expected: object) -> None:
    assert plan(registry_event("delete", **target), None) == [expected]


def test_a_manifest_pull_is_counted() -> None:
    event = registry_event("pull", mediaType=OCI_MANIFEST, digest=DIGEST_A, tag="1.0")
    assert plan(event, None) == [RecordPull("team/app", "1.0", DIGEST_A, event.timestamp)]


def test_dockyards_own_pulls_are_not_popularity() -> None:
    """The scanner reads every pushed image; that must not rank images in search."""
    event = registry_event("pull", mediaType=OCI_MANIFEST, digest=DIGEST_A, tag="1.0",
                           actor=SERVICE_PRINCIPAL.name)
    assert plan(event, None) == []


@pytest.mark.parametrize("action", ["push", "pull", "mount"])
def test_blob_events_change_nothing(action: str) -> None:
    event = registry_event(action, mediaType="application/octet-stream", digest=DIGEST_A)
    assert not needs_manifest(event)
    assert plan(event, None) == []


def test_only_manifest_pushes_need_the_manifest() -> None:
    assert needs_manifest(registry_event("push", mediaType=OCI_MANIFEST, digest=DIGEST_A))
    assert not needs_manifest(registry_event("pull", mediaType=OCI_MANIFEST, digest=DIGEST_A))
    assert not needs_manifest(registry_event("delete", digest=DIGEST_A))
