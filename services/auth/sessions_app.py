"""Opens the auth service's browser-session store, wherever the auth service runs.

Sessions belong to the auth service (docs: ARCHITECTURE.md, "services/auth owns … sessions"):
the portal's sign-in form and the OIDC/GitHub callbacks (services/auth/directory_api.py) both
start them through ``services.auth.sessions.sign_in``, so the store must be open in every
process that runs the auth service, not only in one that also runs the portal. Expired
sessions are pruned by a job, so only the processes that run consumers and jobs do it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

from aiohttp import web

from services.auth.access import IDENTITY
from services.auth.adapters.sessions_sqlite import SqliteSessionStore
from services.auth.sessions import SESSIONS, Sessions, SessionSettings
from services.core.stores import open_backend_store
from services.core.web import CONFIG, HEALTH, JOBS, Job

if TYPE_CHECKING:
    from services.auth.adapters.sessions_mongo import MongoSessionStore
    from services.core.mongo import MongoDatabase

__all__ = ["PRUNE_SECONDS", "SESSIONS_DB", "sessions_ctx"]

SESSIONS_DB = Path("sessions.db")
PRUNE_SECONDS = 600


async def sessions_ctx(app: web.Application) -> AsyncIterator[None]:
    """The session store ``[store] backend`` chooses; needs the auth store (IDENTITY) open."""
    config = app[CONFIG]
    async with open_backend_store(config, lambda: SqliteSessionStore(config.path(SESSIONS_DB)),
                                  _mongo_session_store) as store:
        settings = SessionSettings(ttl=timedelta(seconds=config.portal.session_ttl_seconds),
                                   idle=timedelta(seconds=config.portal.session_idle_seconds))
        app[SESSIONS] = Sessions(store, app[IDENTITY].store, settings)
        app[HEALTH].add("session-store", store.ping)
        app[JOBS].append(Job("session-prune", PRUNE_SECONDS,
                             lambda: store.prune(datetime.now(UTC))))
        yield


def _mongo_session_store(database: MongoDatabase) -> MongoSessionStore:
    from services.auth.adapters.sessions_mongo import (  # noqa: PLC0415 - optional extra
        MongoSessionStore,
    )

    return MongoSessionStore(database)
