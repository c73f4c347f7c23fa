"""What the scanner needs from the parts that can be swapped."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from services.scanner.models import Finding, ImageRef, Inventory, ScanRecord, ScanStatus

__all__ = ["Matcher", "RemoteScanner", "ScanStore"]


class Matcher(Protocol):
    async def match(self, inventory: Inventory) -> list[Finding]:
        """Every known vulnerability affecting a package of the inventory."""
        ...


class ScanStore(Protocol):
    """Scan states, reports and inventories per manifest digest (a durable work queue too)."""

    async def queue(self, digest: str, repository: str, *, again: bool = False) -> bool:
        """Queue a scan; a digest already known is left alone unless ``again`` (a rescan) and
        it is not queued or scanning already. True when a scan was queued."""
        ...

    async def claim(self) -> ScanRecord | None:
        """The oldest queued scan, now marked scanning; None when nothing waits."""
        ...

    async def finish(
        self,
        digest: str,
        status: ScanStatus,
        *,
        reason: str | None = None,
        inventory: Inventory | None = None,
        findings: Sequence[Finding] = (),
    ) -> ScanRecord:
        """Record the outcome of a scan that is scanning (scans.TRANSITIONS is enforced)."""
        ...

    async def forget(self, digest: str) -> None: ...

    async def ping(self) -> None:
        """Raise when the store cannot be reached (the health check)."""
        ...

    async def get(self, digest: str) -> ScanRecord | None: ...

    async def requeue_interrupted(self) -> int:
        """Scans left ``scanning`` by a stopped process go back to the queue."""
        ...

    async def inventories(self) -> list[tuple[str, Inventory]]:
        """Every stored inventory, to re-match after a vulnerability database update."""
        ...

    async def unmatched(self) -> list[tuple[str, Inventory]]:
        """The inventories of done scans that were never matched (``scans.INVENTORY_ONLY``:
        the vulnerability database was empty then)."""
        ...

    async def save_findings(self, digest: str, findings: Sequence[Finding]) -> None:
        """Replace the findings of a done scan (re-matching without re-downloading), clearing
        its reason; ``LookupError`` when the digest has no done scan."""
        ...

    async def affected(self, vulnerability_ids: Sequence[str]) -> list[tuple[str, Finding]]:
        """(manifest digest, finding) for each finding of a done scan whose vulnerability id
        or one of its aliases is one of ``vulnerability_ids``, by digest."""
        ...

    # Tags and index platforms as the registry's events said, so the API can answer for a
    # tag without asking the registry (services/scanner/consumers.py keeps them).

    async def tag(self, repository: str, name: str, digest: str) -> None:
        """``repository:name`` now points at ``digest``."""
        ...

    async def untag(self, repository: str, *, name: str | None = None,
                    digest: str | None = None) -> list[str]:
        """Forget a tag (``name``), every tag on a deleted manifest (``digest``), or, with
        neither, every tag of a deleted repository; the digests those tags named."""
        ...

    async def tagged(self, repository: str, name: str) -> str | None: ...

    async def tags_of(self, digests: Sequence[str]) -> list[tuple[str, str, str, str]]:
        """(repository, tag, tagged digest, digest) for each tag naming one of ``digests``
        directly or as a platform of the index it names, by repository and tag."""
        ...

    async def set_platforms(self, index: str, platforms: Sequence[tuple[str, str]]) -> None:
        """The (manifest digest, ``os/arch[/variant]``) pairs an index lists."""
        ...

    async def platforms(self, index: str) -> list[tuple[str, str]]:
        """What ``set_platforms`` stored for the index, in its order; empty for an image."""
        ...


class RemoteScanner(Protocol):
    """A scanner that reads the image from the registry itself (Clair v4, a Harbor adapter)."""

    async def scan(self, image: ImageRef) -> list[Finding]:
        """Every vulnerability the remote scanner reports for the image, as our findings."""
        ...
