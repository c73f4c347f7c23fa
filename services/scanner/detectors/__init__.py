"""Detectors, one directory per ecosystem (claircore's layout): layer files → packages."""

from __future__ import annotations

from services.scanner.detectors.apk.scanner import DETECTOR as APK
from services.scanner.detectors.base import Detected, Detector, LayerFile
from services.scanner.detectors.dpkg.scanner import DETECTOR as DPKG
from services.scanner.detectors.npm.scanner import DETECTOR as NPM
from services.scanner.detectors.osrelease.scanner import DETECTOR as OSRELEASE
from services.scanner.detectors.python.scanner import DETECTOR as PYTHON
from services.scanner.detectors.rpm.scanner import DETECTOR as RPM

__all__ = ["DETECTORS", "VERSIONS", "Detected", "Detector", "LayerFile"]

DETECTORS: tuple[Detector, ...] = (OSRELEASE, DPKG, APK, RPM, PYTHON, NPM)
# What an inventory made now records; one made by other versions is stale.
VERSIONS = {detector.name: detector.version for detector in DETECTORS}
