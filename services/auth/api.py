"""Who is calling an API: credentials to a user, and the admin gate other services use."""

from __future__ import annotations

from aiohttp import web

from services.auth.models import User
from services.auth.service import Authenticator, parse_basic
from services.core.http import ApiError

__all__ = ["AUTHENTICATOR", "require_admin"]

AUTHENTICATOR = web.AppKey("auth.authenticator", Authenticator)

_CHALLENGE = {"WWW-Authenticate": 'Basic realm="Dockyard", charset="UTF-8"'}


async def require_admin(request: web.Request) -> User:
    """The administrator calling, or a 401/403 that says what is missing."""
    credentials = parse_basic(request.headers.get("Authorization"))
    if credentials is None:
        raise ApiError(401, "unauthorized", "sign in with HTTP Basic credentials", _CHALLENGE)
    user = await request.app[AUTHENTICATOR].authenticate(*credentials)
    if user is None:
        raise ApiError(401, "unauthorized", "wrong username or password", _CHALLENGE)
    if not user.admin:
        raise ApiError(403, "forbidden", "this API needs an administrator")
    return user
