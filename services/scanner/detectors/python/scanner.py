"""Python distributions: ``*.dist-info/METADATA`` and ``*.egg-info/PKG-INFO``.

Both are the core metadata format (packaging.python.org "Core metadata specifications"): RFC
822 style headers, ``Name`` and ``Version`` required. Names are reported as written; PEP 503
normalisation is the matcher's business. Any location counts (site-packages, dist-packages,
a virtualenv, ``/app``), as pip would see it there.
"""

from __future__ import annotations

from email.parser import HeaderParser

from services.scanner.detectors.base import Detector, LayerFile, scan_each
from services.scanner.models import Package

__all__ = ["DETECTOR", "scan"]

NAME = "python"
VERSION = "1"
MAX_BYTES = 1024 * 1024


def _read(file: LayerFile, content: bytes) -> list[Package] | str:
    headers = HeaderParser().parsestr(content.decode("utf-8", "replace"))
    name, version = headers.get("Name"), headers.get("Version")
    if not name or not version:
        return "has no Name or Version"
    return [Package(kind="pypi", name=str(name).strip(), version=str(version).strip(),
                    path=file.path, layer=file.layer)]


scan = scan_each(NAME, MAX_BYTES, _read)


DETECTOR = Detector(
    NAME, VERSION, r"(?:.*/)?[^/]+\.dist-info/METADATA|(?:.*/)?[^/]+\.egg-info(?:/PKG-INFO)?",
    MAX_BYTES, scan,
)
