"""Pages from Jinja2 templates, with who is looking and the form token in every context.

Autoescaping is on for every template, so a repository, tag, team or user name is text on the
page whatever characters it holds; the only HTML inserted as-is is sanitised Markdown
(``markdown.render_markdown``). aiohttp-jinja2 would add a decorator and a context processor
to this and nothing else, so Jinja2 is used directly.
"""

from __future__ import annotations

import secrets
from typing import Any
from urllib.parse import quote, unquote

import jinja2
from aiohttp import web

from services.auth.policy import ANONYMOUS, Principal
from services.auth.sessions import SignedIn, current
from services.core.web import CONFIG
from services.portal import display
from services.portal.markdown import render_markdown

__all__ = [
    "LOGIN_CSRF_COOKIE",
    "form_fields",
    "login_csrf",
    "principal_of",
    "redirect",
    "render",
    "require_admin",
    "require_viewer",
]

LOGIN_CSRF_COOKIE = "dockyard_login_csrf"
FLASH_COOKIE = "dockyard_flash"
MAX_FLASH = 300

_ENV = jinja2.Environment(
    loader=jinja2.PackageLoader("services.portal", "templates"),
    autoescape=True,
    undefined=jinja2.StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
)
_ENV.globals.update(
    human_size=display.human_size,
    human_time=display.human_time,
    short_digest=display.short_digest,
    platform_label=display.platform_label,
    is_signed=display.is_signed,
    markdown=render_markdown,
)


def principal_of(viewer: SignedIn | None) -> Principal:
    return ANONYMOUS if viewer is None else viewer.principal


async def require_viewer(request: web.Request) -> SignedIn:
    """The signed-in viewer; anyone else is sent to sign in and brought back afterwards."""
    viewer = await current(request)
    if viewer is None:
        target = request.path_qs if request.method == "GET" else "/"
        raise web.HTTPSeeOther(f"/login?next={quote(target, safe='/')}")
    return viewer


async def require_admin(request: web.Request) -> SignedIn:
    viewer = await require_viewer(request)
    if not viewer.user.admin:
        raise web.HTTPForbidden(reason="This page is for administrators.")
    return viewer


def login_csrf(request: web.Request) -> str:
    """The double-submit token of the sign-in form (there is no session yet to hold one)."""
    return request.cookies.get(LOGIN_CSRF_COOKIE) or secrets.token_urlsafe(32)


async def form_fields(request: web.Request) -> dict[str, str]:
    """The posted form's text fields (file parts are dropped: no portal form has any)."""
    return {key: value for key, value in (await request.post()).items()
            if isinstance(value, str)}


def redirect(request: web.Request, location: str, notice: str | None = None
             ) -> web.HTTPSeeOther:
    """A redirect after a form (to raise), with a one-time ``notice`` for the next page
    (escaped there like any text; never a secret: see ``sessions.stash`` for those)."""
    response = web.HTTPSeeOther(location)
    if notice:
        # Percent-encoded: cookie values are ASCII, and a token label need not be.
        response.set_cookie(FLASH_COOKIE, quote(notice[:MAX_FLASH]), httponly=True,
                            samesite="Lax", path="/", max_age=60, secure=_secure(request))
    return response


def _secure(request: web.Request) -> bool:
    """Cookies are ``Secure`` when browsers reach Dockyard over https (behind a proxy)."""
    return request.app[CONFIG].server.external_url.startswith("https:")


async def render(
    request: web.Request, template: str, context: dict[str, Any] | None = None, *,
    status: int = 200, viewer: SignedIn | None = None,
) -> web.Response:
    viewer = viewer or await current(request)
    config = request.app[CONFIG]
    csrf = viewer.session.csrf_token if viewer is not None else login_csrf(request)
    flashed = request.cookies.get(FLASH_COOKIE)
    notice = None if flashed is None else unquote(flashed)
    page = _ENV.get_template(template).render(
        viewer=viewer,
        user=viewer.user if viewer else None,
        csrf_token=csrf,
        notice=notice,
        path=request.path,
        anonymous_explore=config.portal.anonymous_explore,
        **(context or {}),
    )
    response = web.Response(text=page, status=status, content_type="text/html")
    if viewer is None and LOGIN_CSRF_COOKIE not in request.cookies:
        response.set_cookie(LOGIN_CSRF_COOKIE, csrf, httponly=True, samesite="Strict",
                            path="/", secure=_secure(request))
    if flashed is not None:
        response.del_cookie(FLASH_COOKIE, path="/")
    return response
