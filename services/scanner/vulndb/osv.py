"""OSV records → ``Advisory``: validated, filtered to the ecosystems asked for, ranges sorted.

Follows ossf/osv-schema docs/schema.md: ``id`` and ``modified`` (RFC 3339, UTC) are required;
``affected[].package`` has ``ecosystem`` and ``name``; each event holds exactly one of
``introduced``, ``fixed``, ``last_affected``, ``limit``; ``introduced: "0"`` sorts before every
version and ``limit: "*"`` after. ``GIT`` ranges need the repository's commit graph, so they are
left out (the record's ``versions`` list, which the schema asks for alongside them, still
counts). A ``withdrawn`` record is kept, marked, so it replaces what an earlier import said.
Anything malformed raises ``BrokenRecord`` naming the field at fault; the importer skips that
record and counts it.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, cast

import orjson

from services.scanner.severity import severity_of
from services.scanner.versions import InvalidVersion, parse_key, scheme_for
from services.scanner.vulndb.ecosystems import normalize_name
from services.scanner.vulndb.models import Advisory, Affected, Event, EventKind, Range

__all__ = ["BrokenRecord", "matches_filter", "parse_record"]

_EVENT_KINDS: tuple[EventKind, ...] = ("introduced", "fixed", "last_affected", "limit")


class BrokenRecord(ValueError):
    """The record cannot be used; the message says which field and why."""


def matches_filter(ecosystem: str, wanted: frozenset[str] | None) -> bool:
    """``Debian:12`` is wanted by ``Debian:12`` and by ``Debian`` (every release)."""
    if wanted is None:
        return True
    return ecosystem in wanted or ecosystem.partition(":")[0] in wanted


def parse_record(data: bytes, wanted: frozenset[str] | None = None) -> Advisory | None:
    """The advisory, or None when none of its packages is in ``wanted`` or has known rules."""
    try:
        record = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise BrokenRecord(f"not JSON: {exc}") from None
    if not isinstance(record, dict):
        raise BrokenRecord("not a JSON object")
    identifier = record.get("id")
    if not isinstance(identifier, str) or not identifier:
        raise BrokenRecord("id: missing or not a string")
    modified = _time(record.get("modified"), "modified")
    affected = []
    for index, entry in enumerate(_list(record.get("affected"), "affected")):
        parsed = _affected(record, entry, f"affected[{index}]", wanted)
        if parsed is not None:
            affected.append(parsed)
    if not affected:
        return None
    aliases = _list(record.get("aliases"), "aliases")
    if not all(isinstance(alias, str) for alias in aliases):
        raise BrokenRecord("aliases: expected a list of strings")
    summary = record.get("summary") or ""
    if not isinstance(summary, str):
        raise BrokenRecord("summary: expected a string")
    return Advisory(
        id=identifier,
        modified=modified,
        aliases=tuple(cast("list[str]", aliases)),
        summary=summary,
        affected=tuple(affected),
        withdrawn=record.get("withdrawn") is not None,
    )


def _affected(
    record: Mapping[str, Any], entry: object, where: str, wanted: frozenset[str] | None
) -> Affected | None:
    if not isinstance(entry, dict):
        raise BrokenRecord(f"{where}: expected an object")
    package = entry.get("package")
    if not isinstance(package, dict):
        raise BrokenRecord(f"{where}.package: missing")
    ecosystem, name = package.get("ecosystem"), package.get("name")
    if not isinstance(ecosystem, str) or not isinstance(name, str) or not ecosystem or not name:
        raise BrokenRecord(f"{where}.package: ecosystem and name must be non-empty strings")
    scheme = scheme_for(ecosystem)
    if scheme is None or not matches_filter(ecosystem, wanted):
        return None
    ranges = []
    for number, value in enumerate(_list(entry.get("ranges"), f"{where}.ranges")):
        place = f"{where}.ranges[{number}]"
        if not isinstance(value, dict):
            raise BrokenRecord(f"{place}: expected an object")
        kind = value.get("type")
        if kind == "GIT":
            continue
        if kind not in {"ECOSYSTEM", "SEMVER"}:
            raise BrokenRecord(f"{place}.type: {kind!r} is not ECOSYSTEM, SEMVER or GIT")
        events = _events(value.get("events"), "semver" if kind == "SEMVER" else scheme, place)
        ranges.append(Range(kind, events))
    versions = _list(entry.get("versions"), f"{where}.versions")
    if not all(isinstance(version, str) for version in versions):
        raise BrokenRecord(f"{where}.versions: expected a list of strings")
    return Affected(
        ecosystem=ecosystem,
        name=normalize_name(ecosystem, name),
        ranges=tuple(ranges),
        versions=tuple(cast("list[str]", versions)),
        severity=severity_of(record, entry),
    )


def _events(value: object, scheme: Any, place: str) -> tuple[Event, ...]:
    events = []
    for index, item in enumerate(_list(value, f"{place}.events")):
        if not isinstance(item, dict) or len(item) != 1:
            raise BrokenRecord(
                f"{place}.events[{index}]: expected one of {', '.join(_EVENT_KINDS)}")
        ((kind, version),) = item.items()
        if kind not in _EVENT_KINDS or not isinstance(version, str) or not version:
            raise BrokenRecord(f"{place}.events[{index}]: expected one of {', '.join(_EVENT_KINDS)}"
                               " with a version string")
        events.append(Event(kind, version))
    if not any(event.kind == "introduced" for event in events):
        raise BrokenRecord(f"{place}.events: no introduced event")

    def order(event: Event) -> tuple[Any, ...]:
        if event.kind == "introduced" and event.version == "0":
            return (0,)
        if event.kind == "limit" and "*" in event.version:
            return (2,)
        try:
            return (1, parse_key(scheme, event.version))
        except InvalidVersion as exc:
            raise BrokenRecord(f"{place}: {exc}") from None

    # Limits bound the whole range rather than step through it: they go last, so matching
    # walks the timeline and looks at limits only when the last event is one.
    ordered = sorted(events, key=order)
    return tuple([e for e in ordered if e.kind != "limit"] + [e for e in ordered
                                                              if e.kind == "limit"])


def _time(value: object, name: str) -> datetime:
    if not isinstance(value, str):
        raise BrokenRecord(f"{name}: missing or not a string")
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise BrokenRecord(f"{name}: {value!r} is not an RFC 3339 time") from None
    # The schema says UTC with a "Z"; a time without a zone is read as UTC, not as local time.
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def _list(value: object, name: str) -> list[Any]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise BrokenRecord(f"{name}: expected a list")
    return value
