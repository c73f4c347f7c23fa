"""How catalog records read on a page: sizes, times, pull commands, marks. Pure functions."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

__all__ = [
    "human_size",
    "human_time",
    "is_signed",
    "just_before",
    "layers_of",
    "platform_label",
    "pull_command",
    "registry_host",
    "short_digest",
    "tags_sharing",
]

_UNITS = ("B", "KiB", "MiB", "GiB", "TiB")
_KIB = 1024
_MINUTE, _HOUR, _DAY = 60, 3600, 86400
# The highest character a tag or repository name may hold is "z"; "~" sorts after them all.
_ABOVE_NAME_CHARACTERS = "~"


def human_size(size: int | None) -> str:
    """``1.5 MiB``; an unknown size is a dash."""
    if size is None:
        return "—"
    value = float(size)
    for unit in _UNITS:
        if value < _KIB or unit == _UNITS[-1]:
            return f"{int(value)} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= _KIB
    raise AssertionError("unreachable")  # pragma: no cover


def human_time(moment: str | datetime | None, now: datetime | None = None) -> str:
    """``3 minutes ago``, ``2 days ago``; older than 30 days: the date."""
    if moment is None:
        return "never"
    at = datetime.fromisoformat(moment) if isinstance(moment, str) else moment
    now = now or datetime.now(UTC)
    seconds = int((now - at).total_seconds())
    if seconds < _MINUTE:
        return "just now"
    for size, unit in ((_DAY, "day"), (_HOUR, "hour"), (_MINUTE, "minute")):
        if seconds >= size:
            count = seconds // size
            if unit == "day" and count > 30:  # noqa: PLR2004 - a month
                return f"{at:%Y-%m-%d}"
            return f"{count} {unit}{'s' if count != 1 else ''} ago"
    raise AssertionError("unreachable")  # pragma: no cover


def short_digest(digest: str | None) -> str:
    """``sha256:0123456789ab``: enough to tell manifests apart on a page."""
    if not digest:
        return "—"
    algorithm, _, encoded = digest.partition(":")
    return f"{algorithm}:{encoded[:12]}"


def registry_host(registry_url: str) -> str:
    """The ``host[:port]`` clients pull from, from the registry's URL."""
    return urlsplit(registry_url).netloc or registry_url


def pull_command(host: str, repository: str, tag: str, kind: str | None) -> str:
    """What to type to fetch the tag: ``helm pull oci://…`` for Helm charts, else docker."""
    if kind == "helm_chart":
        return f"helm pull oci://{host}/{repository} --version {tag}"
    return f"docker pull {host}/{repository}:{tag}"


def platform_label(platform: Mapping[str, Any]) -> str:
    """``linux/arm64/v8``."""
    parts = [platform.get("os") or "?", platform.get("architecture") or "?"]
    if platform.get("variant"):
        parts.append(str(platform["variant"]))
    return "/".join(str(part) for part in parts)


def is_signed(tag: Mapping[str, Any]) -> bool:
    """Whether a signature artifact (cosign, notation) refers to the tag's manifest; only
    that it is there, not that it is valid: Dockyard does not verify signatures (yet), and the
    portal says so ("signature present (not verified)")."""
    return any(ref.get("kind") == "signature" for ref in tag.get("referrers") or ())


def tags_sharing(digests: Mapping[str, str], tag: str) -> list[str]:
    """The other tags pointing at the same manifest as ``tag``: deleting it deletes them too."""
    digest = digests.get(tag)
    return sorted(name for name, other in digests.items() if other == digest and name != tag)


def just_before(name: str) -> str:
    """A string sorting just before ``name`` and after every other valid tag or repository
    name below it, for stores that page by ``name > after``: one page of one finds it.

    Tags (``[\\w][\\w.-]*``) and repository names (``[a-z0-9._/-]``) are ASCII below "~".
    """
    return name[:-1] + chr(ord(name[-1]) - 1) + _ABOVE_NAME_CHARACTERS


def layers_of(manifest: Mapping[str, Any]) -> Sequence[Mapping[str, Any]]:
    """The layer descriptors of an image manifest (none for an index)."""
    layers = manifest.get("layers")
    return [layer for layer in layers if isinstance(layer, Mapping)] if isinstance(
        layers, list) else []
