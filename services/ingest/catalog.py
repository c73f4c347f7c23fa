"""How one registry event changes the catalog: a pure decision, applied by a store.

Rules follow the notification spec (distribution docs/notifications.md) and what registry 2.8
and 3.x send: blob events are ignored; a manifest push records the manifest and, when pushed by
tag, points the tag at it; a delete with a tag untags, one with only a digest removes the
manifest and every tag on it, one with neither removes the repository.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from services.auth.authority import SERVICE_PRINCIPAL
from services.ingest.manifests import ManifestInfo, signed_digest_from_tag
from services.ingest.models import (
    DeleteManifest,
    DeleteRepository,
    DeleteTag,
    Operation,
    PlatformEntry,
    PutManifest,
    PutTag,
    RecordPull,
)
from services.ingest.notifications import RegistryEvent

__all__ = ["FetchedManifest", "needs_manifest", "plan"]

SERVICE_ACCOUNT = SERVICE_PRINCIPAL.name


@dataclass(frozen=True, slots=True)
class FetchedManifest:
    """A manifest as read from the registry; for an index, the sizes of its children."""

    digest: str
    info: ManifestInfo
    child_sizes: Mapping[str, int | None] = field(default_factory=dict)


def needs_manifest(event: RegistryEvent) -> bool:
    """Whether ``plan`` needs the manifest itself (only manifest pushes do)."""
    return event.action == "push" and event.is_manifest and event.digest is not None


def plan(event: RegistryEvent, fetched: FetchedManifest | None) -> list[Operation]:
    repository = event.repository
    match event.action:
        case "push" if event.is_manifest:
            # None: gone from the registry before we read it; its delete event is behind us.
            return [] if fetched is None else _push(event, fetched)
        case "delete" if event.tag:
            return [DeleteTag(repository, event.tag)]
        case "delete" if event.digest:
            return [DeleteManifest(repository, event.digest)]
        case "delete":
            return [DeleteRepository(repository)]
        case "pull" if event.is_manifest and event.actor != SERVICE_ACCOUNT:
            return [RecordPull(repository, event.tag, event.digest, event.timestamp)]
        case _:
            # Blob pushes, pulls and mounts say nothing about the catalog; Dockyard's own pulls
            # (the scanner reading an image) are not popularity.
            return []


def _push(event: RegistryEvent, fetched: FetchedManifest) -> list[Operation]:
    info = fetched.info
    platforms = tuple(
        PlatformEntry(p.os, p.architecture, p.variant, p.digest, fetched.child_sizes.get(p.digest))
        for p in info.platforms
    )
    size = info.size
    if size is None and platforms:
        sizes = [p.size for p in platforms]
        size = None if None in sizes else sum(s for s in sizes if s is not None)
    subject = info.subject
    if subject is None and event.tag:
        subject = signed_digest_from_tag(event.tag)
    ops: list[Operation] = [
        PutManifest(
            repository=event.repository,
            digest=fetched.digest,
            media_type=info.media_type,
            kind=str(info.kind),
            artifact_type=info.artifact_type,
            size=size,
            platforms=platforms,
            subject=subject,
            pushed_by=event.actor,
            pushed_at=event.timestamp,
        )
    ]
    if event.tag:
        ops.append(
            PutTag(event.repository, event.tag, fetched.digest, event.actor, event.timestamp)
        )
    return ops
