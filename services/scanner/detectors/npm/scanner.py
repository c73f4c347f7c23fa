"""npm packages: ``package.json`` at the root of each package under ``node_modules``.

Only ``node_modules/<name>/package.json`` and ``node_modules/@scope/<name>/package.json`` are
installed packages (at any nesting depth: npm nests a conflicting version under its dependent's
own node_modules); other package.json files inside a package (test fixtures, sub-builds) are
not. ``name`` and ``version`` are required by npm for an installed package (docs.npmjs.com,
package.json).
"""

from __future__ import annotations

import json

from services.scanner.detectors.base import Detector, LayerFile, scan_each
from services.scanner.models import Package

__all__ = ["DETECTOR", "scan"]

NAME = "npm"
VERSION = "1"
MAX_BYTES = 1024 * 1024


def _read(file: LayerFile, content: bytes) -> list[Package] | str:
    try:
        document = json.loads(content)
    except ValueError:
        return "is not JSON"
    name = document.get("name") if isinstance(document, dict) else None
    version = document.get("version") if isinstance(document, dict) else None
    if not isinstance(name, str) or not isinstance(version, str) or not name or not version:
        return "has no name or version"
    return [Package(kind="npm", name=name, version=version, path=file.path, layer=file.layer)]


scan = scan_each(NAME, MAX_BYTES, _read)


DETECTOR = Detector(NAME, VERSION, r"(?:.*/)?node_modules/(?:@[^/]+/)?[^/]+/package\.json",
                    MAX_BYTES, scan)
