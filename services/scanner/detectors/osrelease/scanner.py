"""The distribution, from os-release(5): ``etc/os-release``, else ``usr/lib/os-release``.

Each line is ``KEY=value`` with shell-style quoting (double or single quotes, backslash
escapes), ``#`` comments and blank lines; ``ID`` and ``VERSION_ID`` identify the release.
``etc/os-release`` is usually a symlink to ``../usr/lib/os-release``; symlinks are not kept by
the layer reader, so then the usr/lib file is what is read.
"""

from __future__ import annotations

import shlex
from collections.abc import Sequence

from services.scanner.detectors.base import Detected, Detector, LayerFile, too_large
from services.scanner.models import Distribution

__all__ = ["DETECTOR", "parse_os_release", "scan"]

NAME = "osrelease"
VERSION = "1"
PATHS = ("etc/os-release", "usr/lib/os-release")  # in order of precedence (os-release(5))
MAX_BYTES = 64 * 1024


def parse_os_release(text: str) -> dict[str, str]:
    fields: dict[str, str] = {}
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        key, _, value = line.partition("=")
        try:
            words = shlex.split(value, comments=False, posix=True)
        except ValueError:  # an unbalanced quote: take the text as it is
            words = [value.strip("\"'")]
        fields[key.strip()] = " ".join(words)
    return fields


def scan(files: Sequence[LayerFile]) -> Detected:
    by_path = {file.path: file for file in files}
    for path in PATHS:
        file = by_path.get(path)
        if file is None:
            continue
        if file.content is None:
            return Detected(warnings=(too_large(NAME, file, MAX_BYTES),))
        fields = parse_os_release(file.content.decode("utf-8", "replace"))
        if "ID" not in fields:
            return Detected(warnings=(f"{NAME}: {path} has no ID line",))
        return Detected(distribution=Distribution(
            id=fields["ID"],
            version_id=fields.get("VERSION_ID", ""),
            pretty_name=fields.get("PRETTY_NAME", ""),
            version_codename=fields.get("VERSION_CODENAME", ""),
        ))
    return Detected()


DETECTOR = Detector(NAME, VERSION, "|".join(p.replace(".", r"\.") for p in PATHS), MAX_BYTES,
                    scan)
