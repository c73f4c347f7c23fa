"""Golden tests: each detector over the testdata beside it, against ``<case>.expected.json``.

Every directory under ``services/scanner/detectors/<ecosystem>/testdata/`` is a case laid out
as the image's filesystem; the detector gets the files its pattern selects, as the inventory
would hand them over. ``DOCKYARD_UPDATE_GOLDEN=1`` rewrites the expected files (review the
diff before committing it).
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict
from pathlib import Path
from typing import Any

import pytest

from services.scanner.detectors import DETECTORS, Detector, LayerFile
from services.scanner.detectors.base import Detected

ROOT = Path(__file__).parents[3] / "services" / "scanner" / "detectors"
LAYER = "sha256:" + "1" * 64
CASES = [
    pytest.param(detector, case, id=f"{detector.name}/{case.name}")
    for detector in DETECTORS
    for case in sorted((ROOT / detector.name / "testdata").iterdir())
    if case.is_dir()
]


def files_of(case: Path, detector: Detector, max_bytes: int | None = None) -> list[LayerFile]:
    limit = detector.max_bytes if max_bytes is None else max_bytes
    found = []
    for file in sorted(case.rglob("*")):
        path = file.relative_to(case).as_posix()
        if file.is_file() and detector.wants(path):
            content = file.read_bytes()
            found.append(LayerFile(path, LAYER, len(content),
                                   content if len(content) <= limit else None))
    return found


def as_json(detected: Detected) -> dict[str, Any]:
    return {
        "distribution": asdict(detected.distribution) if detected.distribution else None,
        "packages": [asdict(package) for package in detected.packages],
        "warnings": list(detected.warnings),
    }


@pytest.mark.parametrize(("detector", "case"), CASES)
def test_detector_output_matches_golden(detector: Detector, case: Path) -> None:
    got = as_json(detector.scan(files_of(case, detector)))
    expected_path = case.with_name(f"{case.name}.expected.json")
    if os.environ.get("DOCKYARD_UPDATE_GOLDEN") == "1":
        expected_path.write_text(json.dumps(got, indent=2, ensure_ascii=False) + "\n")
    assert got == json.loads(expected_path.read_text())


@pytest.mark.parametrize("detector", DETECTORS, ids=lambda d: d.name)
def test_every_detector_has_golden_cases_a_name_and_a_version(detector: Detector) -> None:
    assert any(param.values[0] is detector for param in CASES)
    assert detector.name
    assert detector.version


@pytest.mark.parametrize("detector", DETECTORS, ids=lambda d: d.name)
def test_a_file_over_the_cap_gives_a_warning_not_packages(detector: Detector) -> None:
    case = next(c for d, c in (p.values for p in CASES) if d is detector)
    detected = detector.scan(files_of(case, detector, max_bytes=0))
    assert detected.packages == ()
    assert detected.warnings
    assert all("limit" in w or "not supported" in w for w in detected.warnings)
