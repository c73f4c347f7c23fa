"""Identity changes published on the event log, for the activity log (and anyone else).

Topic ``identity-events``, partitioned by the namespace or team concerned; one JSON object per
change, as ``schemas/events/identity-event.schema.json`` documents. Types follow Portus' activity
keys (``team.add_member``, ``namespace.change_visibility`` …).
"""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from services.core.eventlog import EventLog, Record
from services.core.times import rfc3339

__all__ = ["IDENTITY_EVENTS", "IDENTITY_EVENT_TYPES", "Audit"]

log = logging.getLogger("dockyard.audit")

IDENTITY_EVENTS = "identity-events"
IDENTITY_EVENT_TYPES = (
    "user.create",
    "user.enable",
    "user.disable",
    "user.change_admin",
    "user.change_password",
    "user.change_email",
    "user.sign_out_everywhere",
    "user.login",
    "user.login_failed",
    "user.unlock",
    "bot.create",
    "team.create",
    "team.add_member",
    "team.change_member_role",
    "team.remove_member",
    "namespace.create",
    "namespace.change_visibility",
    "namespace.change_description",
    "namespace.change_team",
    "token.create",
    "token.revoke",
)


class Audit:
    def __init__(self, event_log: EventLog, on_change: Callable[[], None] | None = None) -> None:
        """``on_change`` runs before each change is published (it has been stored already):
        the auth service drops its cached reads there (services/auth/cache.py)."""
        self._log = event_log
        self._on_change = on_change

    async def record(
        self,
        kind: str,
        actor: str | None,
        *,
        subject: str,
        namespace: str | None = None,
        team: str | None = None,
        details: dict[str, Any] | None = None,
    ) -> None:
        if kind not in IDENTITY_EVENT_TYPES:
            raise ValueError(f"unknown identity event type {kind!r}")
        if self._on_change is not None:
            self._on_change()
        event = {
            "id": str(uuid.uuid4()),
            "timestamp": rfc3339(datetime.now(UTC)),
            "type": kind,
            "actor": actor,
            "subject": subject,
            "namespace": namespace,
            "team": team,
            "details": details or {},
        }
        key = namespace or team or subject
        await self._log.append(IDENTITY_EVENTS, [Record(key, json.dumps(event).encode())])
        log.info("identity change", extra={"type": kind, "actor": actor, "subject": subject})
