"""Which registry events become activity entries, and of what type.

Types (documented with their JSON in schemas/activity.schema.json):
``tag.pushed`` a manifest pushed by tag (pushes by digest, e.g. the platforms of an index, are
not listed on their own); ``tag.deleted``; ``manifest.deleted`` (registry 2.8 follows it with a
``tag.deleted`` per tag that pointed at it); ``repository.deleted``; ``manifest.pulled`` only when
``[activity] record_pulls`` is on. ``scan.completed`` from the scanner's ``scan-events``.

``shown_to`` is what a reader gets of an entry: nothing of a namespace they may not pull from
(or of an admin-only entry), and the pusher's address and user agent only when they manage the
namespace. Every way out (the API's JSON, its CSV export, the event stream, the portal) goes
through it.
"""

from __future__ import annotations

import dataclasses
import json
from datetime import datetime

from services.auth.audit import IDENTITY_EVENT_TYPES
from services.auth.policy import ReadScope
from services.core.reference import namespace_of
from services.core.schemas import validator
from services.ingest.models import Activity
from services.ingest.notifications import RegistryEvent

__all__ = [
    "ACTIVITY_TYPES",
    "REGISTRY_ACTIVITY_TYPES",
    "activity_for",
    "identity_activity",
    "scan_activity",
    "shown_to",
]

REGISTRY_ACTIVITY_TYPES = (
    "tag.pushed",
    "tag.deleted",
    "manifest.deleted",
    "repository.deleted",
    "manifest.pulled",
)
SCAN_ACTIVITY_TYPES = ("scan.completed",)
ACTIVITY_TYPES = REGISTRY_ACTIVITY_TYPES + IDENTITY_EVENT_TYPES + SCAN_ACTIVITY_TYPES


def shown_to(activity: Activity, scope: ReadScope) -> Activity | None:
    """``activity`` as a reader with ``scope`` may see it, or None if they may not."""
    if scope.everything:
        return activity
    if activity.audience != "namespace" or not scope.sees(activity.namespace):
        return None
    if scope.manages(activity.namespace):
        return activity
    return dataclasses.replace(activity, address=None, user_agent=None)


def activity_for(event: RegistryEvent, *, record_pulls: bool) -> Activity | None:
    kind = _type_of(event, record_pulls=record_pulls)
    if kind is None:
        return None
    return Activity(
        id=event.id,
        type=kind,
        actor=event.actor,
        repository=event.repository,
        namespace=namespace_of(event.repository),
        tag=event.tag,
        digest=event.digest,
        time=event.timestamp,
        address=event.request_addr,
        user_agent=event.request_useragent,
        synthetic=event.synthetic,
    )


def identity_activity(value: bytes) -> Activity:
    """The entry for an identity change (schemas/events/identity-event.schema.json).

    Namespace changes are seen by everyone who may pull from the namespace; account, team and
    token changes and logins by administrators only.
    """
    event = json.loads(value)
    validator("events/identity-event.schema.json")(event)
    namespace = event["namespace"]
    public = event["type"].startswith("namespace.") and namespace is not None
    return Activity(
        id=event["id"],
        type=event["type"],
        actor=event["actor"],
        repository=None,
        namespace=namespace or "",
        tag=None,
        digest=None,
        time=datetime.fromisoformat(event["timestamp"]),
        address=None,
        user_agent=None,
        subject=event["subject"],
        team=event["team"],
        details=event["details"],
        audience="namespace" if public else "admin",
    )


def scan_activity(value: bytes) -> Activity:
    """The entry for a finished scan (schemas/events/scan-event.schema.json), seen by whoever
    may pull from the repository's namespace."""
    event = json.loads(value)
    validator("events/scan-event.schema.json")(event)
    return Activity(
        id=event["id"],
        type=event["type"],
        actor=None,
        repository=event["repository"],
        namespace=namespace_of(event["repository"]),
        tag=None,
        digest=event["digest"],
        time=datetime.fromisoformat(event["timestamp"]),
        address=None,
        user_agent=None,
        details={key: event[key] for key in ("status", "reason", "summary", "packages")},
    )


def _type_of(event: RegistryEvent, *, record_pulls: bool) -> str | None:
    if event.action == "push" and event.is_manifest and event.tag:
        return "tag.pushed"
    if event.action == "delete":
        if event.tag:
            return "tag.deleted"
        return "manifest.deleted" if event.digest else "repository.deleted"
    if event.action == "pull" and event.is_manifest and record_pulls:
        return "manifest.pulled"
    return None
