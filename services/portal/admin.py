"""Administrators' pages: accounts, bots, registry health (and, once scans exist, the
vulnerability database). Every handler starts with ``require_admin``; IdentityService checks
again."""

from __future__ import annotations

from datetime import UTC, datetime

from aiohttp import web

from services.auth.access import IDENTITY
from services.auth.sessions import SESSIONS
from services.core.errors import Invalid
from services.core.web import CONFIG, HEALTH, REGISTRY
from services.portal.render import redirect, render, require_admin
from services.scanner.cli import describe_age, open_vulndb

__all__ = ["routes"]

routes = web.RouteTableDef()

USERS_PAGE = 100
# action → (enabled, admin) to set; None leaves it as it is.
_USER_ACTIONS: dict[str, tuple[bool | None, bool | None]] = {
    "disable": (False, None),
    "enable": (True, None),
    "make_admin": (None, True),
    "remove_admin": (None, False),
}


@routes.get("/admin/users")
async def users_page(request: web.Request) -> web.Response:
    viewer = await require_admin(request)
    after = request.query.get("after") or None
    users = await request.app[IDENTITY].users(viewer.principal, kind="user", after=after,
                                              limit=USERS_PAGE + 1)
    return await render(request, "admin_users.html", {
        "users": users[:USERS_PAGE],
        "next_after": users[USERS_PAGE - 1].name if len(users) > USERS_PAGE else None,
    }, viewer=viewer)


@routes.post("/admin/users")
async def create_user(request: web.Request) -> web.StreamResponse:
    viewer = await require_admin(request)
    form = await request.post()
    name, email, password = (str(form.get(key, "")).strip() for key in
                             ("name", "email", "password"))
    user = await request.app[IDENTITY].create_user(
        viewer.principal, name, email=email, password=password, admin=form.get("admin") == "on")
    raise redirect(request, "/admin/users", f"Account {user.name} created.")


@routes.post("/admin/users/{name}")
async def change_user(request: web.Request) -> web.StreamResponse:
    viewer = await require_admin(request)
    name = request.match_info["name"]
    action = str((await request.post()).get("action", ""))
    if action not in _USER_ACTIONS:
        raise Invalid("invalid_action", f"Unknown action {action[:40]!r}; use one of"
                      f" {', '.join(_USER_ACTIONS)}.")
    enabled, admin = _USER_ACTIONS[action]
    await request.app[IDENTITY].update_user(viewer.principal, name, enabled=enabled, admin=admin)
    if action == "disable":
        # Signed-in browsers of the account are signed out now, not at their next request.
        await request.app[SESSIONS].end_all(name)
    raise redirect(request, "/admin/users", f"{name}: {action.replace('_', ' ')} done.")


@routes.get("/admin/bots")
async def bots_page(request: web.Request) -> web.Response:
    viewer = await require_admin(request)
    identity = request.app[IDENTITY]
    bots = await identity.users(viewer.principal, kind="bot", after=None, limit=500)
    teams = await identity.teams(viewer.principal)
    return await render(request, "admin_bots.html", {"bots": bots, "teams": teams},
                        viewer=viewer)


@routes.post("/admin/bots")
async def create_bot(request: web.Request) -> web.StreamResponse:
    viewer = await require_admin(request)
    form = await request.post()
    bot = await request.app[IDENTITY].create_bot(
        viewer.principal, str(form.get("name", "")).strip(), team=str(form.get("team", "")),
        role=str(form.get("role", "viewer")))  # type: ignore[arg-type]
    raise redirect(request, f"/tokens?user={bot.name}",
                   f"Bot {bot.name} created; give it a token below.")


@routes.get("/admin/health")
async def health_page(request: web.Request) -> web.Response:
    viewer = await require_admin(request)
    results = await request.app[HEALTH].run()
    checks = [(name, result.ok, result.error) for name, result in sorted(results.items())]
    return await render(request, "admin_health.html", {
        "checks": checks, "registry_url": request.app[REGISTRY].base_url,
    }, status=200 if all(ok for _, ok, _ in checks) else 503, viewer=viewer)


@routes.get("/admin/vulndb")
async def vulndb_page(request: web.Request) -> web.Response:
    """What the embedded scanner matches against, and how old it is."""
    viewer = await require_admin(request)
    config = request.app[CONFIG]
    path = config.path(config.scanner.vulndb)
    status = []
    if path.exists():  # opening would create an empty database
        async with open_vulndb(config) as store:
            status = await store.status()
    now = datetime.now(UTC)
    return await render(request, "admin_vulndb.html", {
        "backend": config.scanner.backend, "enabled": config.scanner.enabled,
        "status": [(entry, describe_age(now - entry.imported_at),
                    None if entry.newest_modified is None
                    else describe_age(now - entry.newest_modified)) for entry in status],
    }, viewer=viewer)
