"""Plugs the auth service into the application."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

from aiohttp import web

from services.auth.adapters.sqlite import SqliteUserStore
from services.auth.api import AUTHENTICATOR
from services.auth.service import Authenticator
from services.core.web import CONFIG, HEALTH

__all__ = ["AUTH_DB", "setup"]

AUTH_DB = Path("auth.db")


def setup(app: web.Application) -> None:
    app.cleanup_ctx.append(_store_ctx)


async def _store_ctx(app: web.Application) -> AsyncIterator[None]:
    store = SqliteUserStore(app[CONFIG].path(AUTH_DB))
    await store.open()
    app[AUTHENTICATOR] = Authenticator(store)
    app[HEALTH].add("auth-store", store.db.ping)
    yield
    await store.close()
