"""The auth service's module API for the other services' request handlers.

``caller`` says who is calling (anonymous callers are a principal too), ``require_admin`` and
``require_user`` gate a handler, ``readable_namespaces`` says whose repositories and activity
the caller may see: what they may pull; ``may_push`` whether they may change a repository.
"""

from __future__ import annotations

from aiohttp import web

from services.auth.authority import TokenAuthority
from services.auth.identity import IdentityService
from services.auth.policy import ANONYMOUS, Principal
from services.auth.scopes import Scope
from services.auth.service import Authenticator
from services.core.errors import Forbidden, Unauthorized

__all__ = [
    "AUTHENTICATOR",
    "AUTHORITY",
    "IDENTITY",
    "caller",
    "may_push",
    "readable_namespaces",
    "require_admin",
    "require_user",
]

AUTHENTICATOR = web.AppKey("auth.authenticator", Authenticator)
AUTHORITY = web.AppKey("auth.authority", TokenAuthority)
IDENTITY = web.AppKey("auth.identity", IdentityService)
_PRINCIPAL = web.RequestKey("auth.principal", Principal)

_CHALLENGE = {"WWW-Authenticate": 'Basic realm="Dockyard", charset="UTF-8"'}


async def caller(request: web.Request) -> Principal:
    """Who sent this request: Basic (password or app token), Bearer (app token) or anonymous.

    Wrong credentials are a 401, never a silent fall-back to anonymous.
    """
    if _PRINCIPAL in request:
        return request[_PRINCIPAL]
    found = await request.app[AUTHENTICATOR].from_header(request.headers.get("Authorization"))
    principal = found or ANONYMOUS
    request[_PRINCIPAL] = principal
    return principal


async def require_user(request: web.Request) -> Principal:
    principal = await caller(request)
    if principal.kind == "anonymous":
        raise Unauthorized("unauthorized", "sign in with HTTP Basic or a Bearer app token",
                           _CHALLENGE)
    return principal


async def require_admin(request: web.Request) -> Principal:
    principal = await require_user(request)
    if not principal.admin:
        raise Forbidden("forbidden", "this needs an administrator")
    return principal


async def readable_namespaces(request: web.Request, principal: Principal) -> set[str] | None:
    """The namespaces whose repositories ``principal`` may pull; None means all of them."""
    return await request.app[AUTHORITY].readable_namespaces(principal)


async def may_push(request: web.Request, principal: Principal, repository: str) -> bool:
    """Whether the registry would let ``principal`` push to ``repository``."""
    grants = await request.app[AUTHORITY].grants(
        principal, [Scope("repository", repository, frozenset({"push"}))])
    return any("push" in grant.actions for grant in grants)
