"""The auth service's module API for the other services' request handlers.

``caller`` says who is calling (anonymous callers are a principal too), ``require_admin`` and
``require_user`` gate a handler, ``readable_namespaces`` says whose repositories and activity
the caller may see: what they may pull. ``CATALOG`` is what auth needs of ingest's catalog, put
here by ingest's store context (services/server.py opens it wherever auth serves its API).
"""

from __future__ import annotations

from aiohttp import web

from services.auth.authority import TokenAuthority
from services.auth.identity import IdentityService
from services.auth.policy import ANONYMOUS, Principal
from services.auth.ports import Catalog
from services.auth.service import Authenticator
from services.core import http
from services.core.errors import Forbidden, Unauthorized
from services.core.web import CONFIG

__all__ = [
    "AUTHENTICATOR",
    "AUTHORITY",
    "CATALOG",
    "IDENTITY",
    "caller",
    "client_address",
    "readable_namespaces",
    "require_admin",
    "require_user",
]

AUTHENTICATOR = web.AppKey("auth.authenticator", Authenticator)
AUTHORITY = web.AppKey("auth.authority", TokenAuthority)
IDENTITY = web.AppKey("auth.identity", IdentityService)
CATALOG = web.AppKey("auth.catalog", Catalog)
_PRINCIPAL = web.RequestKey("auth.principal", Principal)

_CHALLENGE = {"WWW-Authenticate": 'Basic realm="Dockyard", charset="UTF-8"'}


async def caller(request: web.Request) -> Principal:
    """Who sent this request: Basic (password or app token), Bearer (app token) or anonymous.

    Wrong credentials are a 401, never a silent fall-back to anonymous.
    """
    if _PRINCIPAL in request:
        return request[_PRINCIPAL]
    found = await request.app[AUTHENTICATOR].from_header(request.headers.get("Authorization"),
                                                         source=client_address(request))
    principal = found or ANONYMOUS
    request[_PRINCIPAL] = principal
    return principal


def client_address(request: web.Request) -> str:
    """The address sign-in failures and token requests are counted by: the peer's, or, when
    the peer is one of ``[server] trusted_proxies``, the client their X-Forwarded-For names."""
    peer = request.remote or ""
    trusted = request.app[CONFIG].server.trusted_proxies
    if not trusted:
        return peer
    return http.client_address(peer, request.headers.getall("X-Forwarded-For", []), trusted)


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
