"""The vulnerability database's records: advisories as Dockyard keeps them, and what imports did."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal, NamedTuple

from services.scanner.models import Severity

__all__ = [
    "Advisory",
    "Affected",
    "Candidate",
    "EcosystemStatus",
    "Event",
    "ImportReport",
    "PackageKey",
    "Range",
    "UpsertResult",
]

# (OSV ecosystem with its release, e.g. "Debian:12", package name normalised for it).
PackageKey = tuple[str, str]

EventKind = Literal["introduced", "fixed", "last_affected", "limit"]


@dataclass(frozen=True, slots=True)
class Event:
    kind: EventKind
    version: str


@dataclass(frozen=True, slots=True)
class Range:
    """An ``ECOSYSTEM`` or ``SEMVER`` range, events sorted by the range's version order.

    Sorted once at import so matching walks them in order (docs/schema.md, "Evaluation");
    ``limit`` events, which bound the range rather than step through it, come last.
    """

    type: Literal["ECOSYSTEM", "SEMVER"]
    events: tuple[Event, ...]


@dataclass(frozen=True, slots=True)
class Affected:
    ecosystem: str  # as the record says it: "Debian:12", "PyPI"
    name: str  # normalised for the ecosystem (PEP 503 for PyPI)
    ranges: tuple[Range, ...]
    versions: tuple[str, ...]
    severity: Severity


@dataclass(frozen=True, slots=True)
class Advisory:
    id: str
    modified: datetime
    aliases: tuple[str, ...]
    summary: str
    affected: tuple[Affected, ...]
    # Withdrawn records stay stored (so a later import of an older copy changes nothing) but
    # match nothing (docs/schema.md, "withdrawn field").
    withdrawn: bool = False

    @property
    def ecosystems(self) -> frozenset[str]:
        return frozenset(entry.ecosystem for entry in self.affected)


@dataclass(slots=True)
class ImportReport:
    """What one ``dockyard vulndb import`` did; ``broken`` lists each skipped record's reason."""

    read: int = 0
    added: int = 0
    updated: int = 0
    unchanged: int = 0  # stored already with the same or a newer ``modified``
    filtered: int = 0  # nothing in the ecosystems asked for
    broken: list[tuple[str, str]] = field(default_factory=list)  # (file, reason)
    changed: set[PackageKey] = field(default_factory=set)


class Candidate(NamedTuple):
    """A stored ``affected`` entry for a package being matched, as the store returns it.

    ``ranges`` keeps the stored shape, ``[[type, [[kind, version], …]], …]`` with events in
    version order, so matching thousands of them decodes no records.
    """

    advisory: str
    aliases: tuple[str, ...]
    summary: str
    ecosystem: str
    name: str
    ranges: list[Any]
    versions: list[str]
    severity: Severity


@dataclass(frozen=True, slots=True)
class UpsertResult:
    added: int
    updated: int
    unchanged: int
    changed: frozenset[PackageKey]


@dataclass(frozen=True, slots=True)
class EcosystemStatus:
    ecosystem: str
    advisories: int
    newest_modified: datetime | None
    imported_at: datetime
