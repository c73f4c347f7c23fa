"""An image's inventory from its layers: distribution, and packages with the layer that
introduced each.

Layers are applied bottom-up to a ``FileView`` (whiteouts honoured), so detectors see the final
filesystem. Which layer *introduced* a package cannot be read off the final view: the dpkg
status file is rewritten by every layer that installs anything, so its last copy comes from
the top-most such layer. Instead each detector is re-run on the view after every layer that
changed one of its files, and a package is attributed to the lowest layer from which it stayed
present (same name, version and place) up to the top; a package a later layer removes is gone,
and one reinstalled later counts from the reinstalling layer.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, replace
from typing import Any

from services.scanner.detectors import DETECTORS, Detector, LayerFile
from services.scanner.layers import FileView, LayerContents
from services.scanner.models import Distribution, Inventory, Package

__all__ = ["build_inventory", "inventory_from_json", "inventory_to_json"]


def build_inventory(
    layers: Sequence[LayerContents], detectors: Sequence[Detector] = DETECTORS
) -> Inventory:
    view = FileView()
    introduced: dict[str, dict[Package, str]] = {d.name: {} for d in detectors}
    for layer in layers:
        view.apply(layer)
        for detector in detectors:
            if not _touches(layer, detector):
                continue
            found = detector.scan(_files_for(view, detector)).packages
            seen = introduced[detector.name]
            current = {_identity(p): p for p in found}
            # Keep the first layer of packages still present; new ones start here.
            introduced[detector.name] = {
                key: seen.get(key, layer.digest) for key in current
            }
    distribution = None
    packages: list[Package] = []
    warnings = [warning for layer in layers for warning in layer.warnings]
    for detector in detectors:
        result = detector.scan(_files_for(view, detector))
        warnings.extend(result.warnings)
        distribution = distribution or result.distribution
        seen = introduced[detector.name]
        packages.extend(
            replace(p, layer=seen.get(_identity(p), p.layer)) for p in result.packages
        )
    return Inventory(
        distribution=distribution,
        packages=tuple(packages),
        detectors={d.name: d.version for d in detectors},
        warnings=tuple(warnings),
    )


def inventory_to_json(inventory: Inventory) -> dict[str, Any]:
    return {
        "distribution": asdict(inventory.distribution) if inventory.distribution else None,
        "packages": [asdict(package) for package in inventory.packages],
        "detectors": dict(inventory.detectors),
        "warnings": list(inventory.warnings),
    }


def inventory_from_json(data: dict[str, Any]) -> Inventory:
    distribution = data.get("distribution")
    return Inventory(
        distribution=Distribution(**distribution) if distribution else None,
        packages=tuple(Package(**package) for package in data["packages"]),
        detectors=dict(data.get("detectors", {})),
        warnings=tuple(data.get("warnings", ())),
    )


def _identity(package: Package) -> Package:
    return replace(package, layer="")


def _touches(layer: LayerContents, detector: Detector) -> bool:
    """Whether the layer may change what the detector finds."""
    if layer.opaque or any(detector.wants(path) for path in layer.files):
        return True
    # A whiteout may remove a wanted file or a directory holding some.
    return bool(layer.removed)


def _files_for(view: FileView, detector: Detector) -> list[LayerFile]:
    return sorted((f for f in view.files.values() if detector.wants(f.path)),
                  key=lambda f: f.path)
