"""The catalog and the activity log as plain records."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

Audience = Literal["namespace", "admin"]

__all__ = [
    "Activity",
    "ActivityFilter",
    "Audience",
    "DeleteManifest",
    "DeleteRepository",
    "DeleteTag",
    "Operation",
    "PlatformEntry",
    "PutManifest",
    "PutTag",
    "RecordPull",
]


@dataclass(frozen=True, slots=True)
class PlatformEntry:
    os: str
    architecture: str
    variant: str | None
    digest: str
    size: int | None


# Catalog operations: what one registry event changes, decided by services.ingest.catalog.


@dataclass(frozen=True, slots=True)
class PutManifest:
    repository: str
    digest: str
    media_type: str
    kind: str
    artifact_type: str | None
    size: int | None
    platforms: tuple[PlatformEntry, ...]
    subject: str | None
    pushed_by: str | None
    pushed_at: datetime


@dataclass(frozen=True, slots=True)
class PutTag:
    repository: str
    tag: str
    digest: str
    pushed_by: str | None
    pushed_at: datetime


@dataclass(frozen=True, slots=True)
class DeleteManifest:
    """The manifest goes, and with it every tag that pointed at it."""

    repository: str
    digest: str


@dataclass(frozen=True, slots=True)
class DeleteTag:
    repository: str
    tag: str


@dataclass(frozen=True, slots=True)
class DeleteRepository:
    repository: str


@dataclass(frozen=True, slots=True)
class RecordPull:
    repository: str
    tag: str | None
    digest: str | None
    at: datetime


Operation = PutManifest | PutTag | DeleteManifest | DeleteTag | DeleteRepository | RecordPull


@dataclass(frozen=True, slots=True)
class Activity:
    """One entry of the activity log; ``schemas/activity.schema.json`` documents its JSON.

    ``audience`` says who may see it: ``namespace``, everyone who may pull from ``namespace``;
    ``admin``, administrators only (account, team and token changes, logins).
    """

    id: str
    type: str
    actor: str | None
    repository: str | None
    namespace: str
    tag: str | None
    digest: str | None
    time: datetime
    address: str | None
    user_agent: str | None
    synthetic: bool = False
    subject: str | None = None
    team: str | None = None
    details: dict[str, Any] = field(default_factory=dict)
    audience: Audience = "namespace"


@dataclass(frozen=True, slots=True)
class ActivityFilter:
    repository: str | None = None
    namespace: str | None = None
    actor: str | None = None
    types: tuple[str, ...] = field(default=())
    since: datetime | None = None
    until: datetime | None = None
    # What the caller may see: None for everything (admins), else the namespaces they may pull.
    visible: frozenset[str] | None = None
