"""ManifestReader against a real registry: one read per digest, however many events share it.

The registry client is the real one, wrapped only to count the manifest reads it sends.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass

import pytest

from services.core.registry import Manifest, RegistryClient
from services.ingest.consumers import ManifestReader
from services.ingest.notifications import RegistryEvent
from tests.factories import OCI_MANIFEST, registry_event
from tests.support.images import build_oci_image
from tests.support.registry import (
    RegistryProcess,
    require_registry_tools,
    skopeo_copy,
    skopeo_delete,
)

pytestmark = pytest.mark.registry


@dataclass(frozen=True)
class Pushed:
    registry: RegistryProcess
    digest: str  # in team/kept and team/other; deleted from team/gone


@pytest.fixture(scope="module")
def pushed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pushed]:
    require_registry_tools()
    root = tmp_path_factory.mktemp("manifest-reader")
    layout = root / "layout"
    digest = build_oci_image(layout, "1.0", [{"hello.txt": b"hello\n"}])
    with RegistryProcess(root / "registry") as registry:
        for repository in ("team/kept", "team/other", "team/gone"):
            skopeo_copy(f"oci:{layout}:1.0", f"docker://{registry.host}/{repository}:1.0")
        skopeo_delete(f"docker://{registry.host}/team/gone@{digest}")
        yield Pushed(registry, digest)


class CountingRegistry(RegistryClient):
    """The real client; remembers which manifests it was asked for."""

    def __init__(self, base_url: str) -> None:
        super().__init__(base_url, timeout=5)
        self.reads: list[tuple[str, str]] = []

    async def get_manifest(self, repository: str, reference: str) -> Manifest:
        self.reads.append((repository, reference))
        return await super().get_manifest(repository, reference)


@pytest.fixture
async def registry(pushed: Pushed) -> AsyncIterator[CountingRegistry]:
    client = CountingRegistry(pushed.registry.url)
    try:
        yield client
    finally:
        await client.aclose()


def push_event(repository: str, digest: str, tag: str) -> RegistryEvent:
    return registry_event("push", repository, mediaType=OCI_MANIFEST, digest=digest, tag=tag)


async def test_events_of_one_digest_share_one_read(pushed, registry):
    reader = ManifestReader(registry, child_sizes=True)
    events = [push_event(repo, pushed.digest, f"v{i}")
              for i in range(20) for repo in ("team/kept", "team/other")]

    fetched = await asyncio.gather(*(reader.fetch(e) for e in events))

    assert registry.reads == [("team/kept", pushed.digest)]
    assert {f.digest for f in fetched} == {pushed.digest}
    assert await reader.fetch(push_event("team/other", pushed.digest, "later")) is fetched[0]
    assert len(registry.reads) == 1  # and later events are served from the cache


async def test_a_manifest_gone_from_one_repository_is_still_read_from_another(pushed, registry):
    reader = ManifestReader(registry, child_sizes=False)
    gone = push_event("team/gone", pushed.digest, "1.0")
    kept = push_event("team/kept", pushed.digest, "1.0")

    from_gone, from_kept = await asyncio.gather(reader.fetch(gone), reader.fetch(kept))

    assert from_gone is None
    assert from_kept is not None
    assert from_kept.digest == pushed.digest
    assert registry.reads == [("team/gone", pushed.digest), ("team/kept", pushed.digest)]


async def test_a_cancelled_batch_does_not_cancel_the_read_others_wait_for(pushed, registry):
    reader = ManifestReader(registry, child_sizes=False)
    first = asyncio.create_task(reader.fetch(push_event("team/kept", pushed.digest, "a")))
    second = asyncio.create_task(reader.fetch(push_event("team/other", pushed.digest, "b")))
    await asyncio.sleep(0)  # both are waiting on the one read
    first.cancel()

    fetched = await second

    assert first.cancelled()
    assert fetched is not None
    assert fetched.digest == pushed.digest
    assert len(registry.reads) == 1

