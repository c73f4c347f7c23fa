"""What every portal request goes through: the form token check, HTML errors, safe headers.

API paths (``/api/``, ``/v2/``, ``/metrics``) are left alone: their errors stay JSON.
"""

from __future__ import annotations

import logging

from aiohttp import web

from services.auth.sessions import csrf_matches, current
from services.core.errors import DyError
from services.core.http import Handler
from services.portal.render import LOGIN_CSRF_COOKIE, render

__all__ = ["SECURITY_HEADERS", "is_portal_path", "portal_middleware"]

log = logging.getLogger("dockyard.portal")

_NOT_PORTAL = ("/api/", "/v2/", "/metrics")
# No inline script or style anywhere, so the policy can forbid them: injected markup that got
# past escaping still could not run (OWASP XSS prevention, "defense in depth").
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:;"
        " object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'self'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "X-Frame-Options": "DENY",
}
_TITLES = {400: "Bad request", 403: "Not allowed", 404: "Not found", 405: "Not allowed",
           409: "Conflict", 413: "Too large", 429: "Too many requests", 500: "Server error",
           502: "Registry error", 503: "Unavailable"}


def is_portal_path(path: str) -> bool:
    return not path.startswith(_NOT_PORTAL) and path != "/metrics"


@web.middleware
async def portal_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    if not is_portal_path(request.path):
        return await handler(request)
    try:
        if request.method == "POST":
            await _check_csrf(request)
        response = await handler(request)
    except web.HTTPException as exc:
        if exc.status < 400:  # noqa: PLR2004 - redirects pass through
            exc.headers.update(SECURITY_HEADERS)
            raise
        response = await error_page(request, exc.status, exc.reason)
    except DyError as exc:
        response = await error_page(request, exc.status, exc.message)
    except Exception:
        log.exception("unhandled error", extra={"path": request.path, "method": request.method})
        response = await error_page(request, 500, "Something went wrong on our side; the server"
                                    " log has the details.")
    if not response.prepared:
        response.headers.update(SECURITY_HEADERS)
    return response


async def error_page(request: web.Request, status: int, message: str) -> web.Response:
    back = request.headers.get("Referer", "")
    same_site = back.startswith(f"{request.scheme}://{request.host}/")
    return await render(request, "error.html", {
        "status": status, "title": _TITLES.get(status, "Error"), "message": message,
        "back": back if same_site else "/",
    }, status=status)


async def _check_csrf(request: web.Request) -> None:
    """Every form carries ``csrf``: the session's token, or the sign-in form's cookie."""
    form = await request.post()
    given = form.get("csrf")
    viewer = await current(request)
    expected = (viewer.session.csrf_token if viewer is not None
                else request.cookies.get(LOGIN_CSRF_COOKIE))
    if expected is None or not csrf_matches(expected, given if isinstance(given, str) else None):
        raise web.HTTPForbidden(reason="This form has expired or did not come from this site."
                                " Reload the page and try again.")
