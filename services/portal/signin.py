"""Signing in to the portal with a password (Dockyard's own, or the LDAP directory's) and
signing out; the OIDC and GitHub buttons lead to services/auth/directory_api.py.

Sign-in attempts share the token endpoint's per-address rate limit and the lockout, and a
refusal says what the person can do about it (wrong password, locked for how long, disabled).
The session itself is the auth service's (services/auth/sessions.py): a new id at every
sign-in.
"""

from __future__ import annotations

import math
from urllib.parse import quote

from aiohttp import web

from services.auth.access import AUTHENTICATOR, client_address
from services.auth.directory_app import DIRECTORY
from services.auth.sessions import sign_in, sign_out
from services.auth.token_api import RATE_LIMITS
from services.core.errors import TooManyRequests, Unauthorized
from services.core.web import CONFIG
from services.portal.render import form_fields, render

__all__ = ["routes", "safe_next"]

routes = web.RouteTableDef()


def safe_next(target: str | None) -> str:
    """Only a path on this site: ``//evil.example`` or ``https://…`` would leave it.

    Control characters are refused too: browsers remove tabs and newlines from a URL before
    parsing it (WHATWG URL standard, "basic URL parser"), so ``/<tab>/evil.example`` is
    ``//evil.example`` to them.
    """
    if (not target or not target.startswith("/") or target.startswith("//") or "\\" in target
            or any(ord(char) < 0x20 or ord(char) == 0x7F for char in target)):  # noqa: PLR2004
        return "/"
    return target


def _sign_in_options(request: web.Request) -> dict[str, object]:
    """The directory and provider sign-ins configured (services/auth/directory_api.py serves the
    provider routes), for the sign-in page."""
    config = request.app[CONFIG]
    return {
        "providers": [{"url": f"/auth/oidc/{quote(name)}/login",
                       "label": settings.display_name or name}
                      for name, settings in sorted(config.oidc.items())],
        "ldap": config.ldap.enabled,
    }


@routes.get("/login")
async def login_page(request: web.Request) -> web.Response:
    return await render(request, "login.html", {
        "next": safe_next(request.query.get("next")), "error": None, "username": "",
        **_sign_in_options(request),
    })


@routes.post("/login")
async def login(request: web.Request) -> web.StreamResponse:
    form = await form_fields(request)
    username, password = form.get("username", "").strip(), form.get("password", "")
    target = safe_next(form.get("next"))
    problem: Unauthorized | None = None
    try:
        # The token endpoint's per-address limit, and the lockout (per address and per
        # account): guessing passwords here is no cheaper than through docker login.
        address = client_address(request)
        limits = request.app.get(RATE_LIMITS)
        if limits is not None:
            await limits.check_address(address)
        if not username or not password:
            problem = Unauthorized("unauthorized", "Enter your username and password.")
        elif (await request.app[AUTHENTICATOR].authenticate(
                username, password, source=address)).credential != "password":
            # Application tokens are for docker and the API, not for the browser.
            problem = Unauthorized("unauthorized", "Wrong username or password.")
    except TooManyRequests as exc:
        retry = exc.headers.get("Retry-After", "60")
        response = await render(request, "login.html", {
            "next": target, "username": username, **_sign_in_options(request),
            "error": f"Too many sign-in attempts; try again in {retry} seconds.",
        }, status=429)
        response.headers["Retry-After"] = retry
        return response
    except Unauthorized as exc:
        problem = exc
    if problem is not None:
        message = _login_problem(problem)
        return await render(request, "login.html", {
            "next": target, "error": message, "username": username,
            **_sign_in_options(request),
        }, status=401)
    response = web.HTTPSeeOther(target)
    method = await request.app[DIRECTORY].password_method(username)
    await sign_in(request, response, username, method=method)
    raise response


def _login_problem(exc: Unauthorized) -> str:
    """What the person can do about a refused sign-in; a lock says for how much longer (from
    the refusal itself: names without an account are locked too, and must read the same)."""
    if exc.code == "account_locked":
        minutes = max(1, math.ceil(int(exc.headers.get("Retry-After", "60")) / 60))
        return (f"This account is locked after too many failed sign-ins. Try again in"
                f" {minutes} minute{'s' if minutes != 1 else ''}, or ask an administrator.")
    if exc.code == "account_disabled":
        return "This account is disabled. Ask an administrator to enable it."
    return exc.message if exc.message.startswith("Enter") else "Wrong username or password."


@routes.post("/logout")
async def logout(request: web.Request) -> web.StreamResponse:
    response = web.HTTPSeeOther("/login")
    await sign_out(request, response)
    raise response
