"""Which registry events become activity entries, and of what type.

Types (documented with their JSON in schemas/activity.schema.json):
``tag.pushed`` a manifest pushed by tag (pushes by digest, e.g. the platforms of an index, are
not listed on their own); ``tag.deleted``; ``manifest.deleted`` (registry 2.8 follows it with a
``tag.deleted`` per tag that pointed at it); ``repository.deleted``; ``manifest.pulled`` only when
``[activity] record_pulls`` is on.
"""

from __future__ import annotations

from services.core.reference import namespace_of
from services.ingest.models import Activity
from services.ingest.notifications import RegistryEvent

__all__ = ["ACTIVITY_TYPES", "activity_for"]

ACTIVITY_TYPES = (
    "tag.pushed",
    "tag.deleted",
    "manifest.deleted",
    "repository.deleted",
    "manifest.pulled",
)


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
