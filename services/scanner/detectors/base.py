"""What every detector is: a name, a version, the files it reads, and a pure scan over them.

Modelled on claircore's indexer scanners: a detector never touches the network or the disk.
The layer reader (services/scanner/layers.py) keeps only the files some detector's ``pattern``
matches, and the inventory (services/scanner/inventory.py) hands each detector the files of the
image's final filesystem view that match its pattern. ``version`` goes into every stored
inventory, so changing a detector's output means bumping it and stored results become stale.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

from services.scanner.models import Distribution, Package

__all__ = ["Detected", "Detector", "LayerFile", "scan_each", "too_large"]


@dataclass(frozen=True, slots=True)
class LayerFile:
    """A regular file of the image as a detector sees it."""

    path: str  # inside the image, no leading slash: "var/lib/dpkg/status"
    layer: str  # digest of the layer this version of the file comes from
    size: int
    content: bytes | None  # None: larger than the detector's ``max_bytes``, so not read


@dataclass(frozen=True, slots=True)
class Detected:
    packages: tuple[Package, ...] = ()
    distribution: Distribution | None = None
    warnings: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Detector:
    name: str
    version: str
    # Paths (no leading slash) the detector reads, as a regular expression matched in full.
    pattern: str
    max_bytes: int
    scan: Callable[[Sequence[LayerFile]], Detected]
    compiled: re.Pattern[str] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "compiled", re.compile(self.pattern))

    def wants(self, path: str) -> bool:
        return self.compiled.fullmatch(path) is not None


def too_large(detector: str, file: LayerFile, limit: int) -> str:
    """The warning for a file a detector could not read because of its size cap."""
    return (f"{detector}: {file.path} is {file.size} bytes, over the {limit}-byte limit;"
            " not read")


def scan_each(
    name: str, limit: int, read: Callable[[LayerFile, bytes], Iterable[Package] | str]
) -> Callable[[Sequence[LayerFile]], Detected]:
    """A ``scan`` for detectors whose files each stand alone: ``read`` gives a file's packages,
    or what is wrong with it (``"is not JSON"``), which becomes a warning; a file over the
    size cap is a warning too."""

    def scan(files: Sequence[LayerFile]) -> Detected:
        packages: list[Package] = []
        warnings: list[str] = []
        for file in files:
            if file.content is None:
                warnings.append(too_large(name, file, limit))
                continue
            found = read(file, file.content)
            if isinstance(found, str):
                warnings.append(f"{name}: {file.path} {found}; skipped")
            else:
                packages.extend(found)
        return Detected(packages=tuple(packages), warnings=tuple(warnings))

    return scan
