"""What one scan may spend on an image: the budgets every layer and every detector share.

A layer is untrusted input: a few kilobytes of gzip or zstd can inflate to terabytes, a tar can
hold millions of entries or thousands of hard links to one wanted file, and a detector's input
(an rpm SQLite database) can be a program. Each scan gets one ``Budget``, counted across all
its layers, and whatever goes over it ends the scan with ``Refused`` naming the limit and the
setting that raises it. The scan runs in a child process (services/scanner/sandbox.py), so the
memory limit and the timeout are enforced by the kernel, not by the code they protect against.

Links are never followed: a hard link is resolved in one step to an earlier entry of the same
layer (image-spec layer.md) and costs its target's size again; a symlink where a wanted file was
only removes it. Archives inside a layer are never opened (nesting depth 1): a layer whose
content is another compressed stream is not a tar and is refused.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from services.core.config import ScannerConfig

__all__ = ["Budget", "Refused", "ScanLimits"]


class Refused(Exception):
    """The image is more than a scan will spend on it, or built to attack a reader; the scan
    fails with this message."""


@dataclass(frozen=True, slots=True)
class ScanLimits:
    """The ``[scanner] max_*`` settings; the defaults fit the largest real images (tens of
    gigabytes unpacked, a million files, a few megabytes of package metadata)."""

    # Bytes read from the registry plus bytes decompressed, over all layers.
    unpacked_bytes: int = 16 << 30
    # Tar entries over all layers (files, directories, links, whiteouts).
    entries: int = 1_000_000
    # File content kept in memory for the detectors; a hard link counts its target again.
    kept_bytes: int = 256 << 20
    # The largest file a detector reads (each also has its own cap); larger ones are skipped.
    file_bytes: int = 64 << 20
    # Address space of the scan's process: past it the scan fails instead of the server.
    memory_bytes: int = 2 << 30

    @classmethod
    def from_config(cls, config: ScannerConfig) -> ScanLimits:
        return cls(unpacked_bytes=config.max_unpacked_bytes, entries=config.max_entries,
                   kept_bytes=config.max_kept_bytes, file_bytes=config.max_file_bytes,
                   memory_bytes=config.max_memory_bytes)


class Budget:
    """One scan's spending against its ``ScanLimits``, across all its layers."""

    def __init__(self, limits: ScanLimits | None = None) -> None:
        self.limits = limits or ScanLimits()
        self.unpacked = 0
        self.entries = 0
        self.kept = 0

    def read(self, size: int, digest: str) -> None:
        """``size`` more bytes came from the registry or out of the decompressor."""
        self.unpacked += size
        if self.unpacked > self.limits.unpacked_bytes:
            raise Refused(f"layer {digest}: the image unpacks to more than"
                          f" {self.limits.unpacked_bytes} bytes, over the scan's budget"
                          " ([scanner] max_unpacked_bytes)")

    def entry(self, digest: str) -> None:
        self.entries += 1
        if self.entries > self.limits.entries:
            raise Refused(f"layer {digest}: the image holds more than {self.limits.entries}"
                          " tar entries, over the scan's budget ([scanner] max_entries)")

    def keep(self, size: int, digest: str, path: str) -> None:
        if self.kept + size > self.limits.kept_bytes:
            raise Refused(f"layer {digest}: the files the detectors read add up to more than"
                          f" {self.limits.kept_bytes} bytes (at {path!r}), over the scan's"
                          " budget ([scanner] max_kept_bytes); no real image holds that much"
                          " package metadata")
        self.kept += size
