"""Plugs the portal into the application: pages, forms, static files.

The portal owns no data. It needs the auth and ingest services' module APIs in the same
process (their contexts run before this one: "portal" comes after them in SERVICES),
including the auth service's session store (services/auth/sessions_app.py).
"""

from __future__ import annotations

from pathlib import Path

from aiohttp import web

from services.portal.actions import routes as action_routes
from services.portal.admin import routes as admin_routes
from services.portal.middleware import portal_middleware
from services.portal.pages import routes as page_routes
from services.portal.scans import routes as scan_routes
from services.portal.signin import routes as signin_routes

__all__ = ["STATIC", "setup"]

STATIC = Path(__file__).parent / "static"


def setup(app: web.Application) -> None:
    app.middlewares.append(portal_middleware)
    app.router.add_routes(signin_routes)
    app.router.add_routes(action_routes)
    app.router.add_routes(admin_routes)
    app.router.add_routes(scan_routes)
    app.router.add_routes(page_routes)
    app.router.add_static("/static", STATIC)
