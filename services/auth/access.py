"""The auth service's module API for the other services' request handlers.

``caller`` says who is calling (anonymous callers are a principal too), ``require_admin`` and
``require_user`` gate a handler, ``read_scope`` says whose repositories and activity the caller
may see (what they may pull) and whose details they manage; every read path asks it, and
answers 404 for whatever is out of scope, exactly as for what does not exist.
``fresh_read_scope`` asks again with the request's credential checked anew, for responses that
outlive a request (event streams); ``may`` whether they may push to or delete from a
repository; ``client_address`` the address their failed sign-ins and token requests are counted by.
``CATALOG`` is what auth needs of ingest's catalog, put here by ingest's store context
(services/server.py opens it wherever auth serves its API).
"""

from __future__ import annotations

from typing import Literal

from aiohttp import web

from services.auth.authority import TokenAuthority
from services.auth.identity import IdentityService
from services.auth.policy import ANONYMOUS, Principal, ReadScope
from services.auth.ports import Catalog
from services.auth.scopes import Scope
from services.auth.service import Authenticator
from services.core import http
from services.core.errors import DyError, Forbidden, Unauthorized
from services.core.web import CONFIG

__all__ = [
    "AUTHENTICATOR",
    "AUTHORITY",
    "CATALOG",
    "IDENTITY",
    "caller",
    "client_address",
    "fresh_read_scope",
    "may",
    "read_scope",
    "require_admin",
    "require_user",
]

AUTHENTICATOR = web.AppKey("auth.authenticator", Authenticator)
AUTHORITY = web.AppKey("auth.authority", TokenAuthority)
IDENTITY = web.AppKey("auth.identity", IdentityService)
CATALOG = web.AppKey("auth.catalog", Catalog)
_PRINCIPAL = web.RequestKey("auth.principal", Principal)
_SCOPE = web.RequestKey("auth.read_scope", ReadScope)

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


async def read_scope(request: web.Request) -> ReadScope:
    """What the caller of this request may read and manage (looked up once per request)."""
    if _SCOPE in request:
        return request[_SCOPE]
    scope = await request.app[AUTHORITY].read_scope(await caller(request))
    request[_SCOPE] = scope
    return scope


async def fresh_read_scope(request: web.Request) -> ReadScope | None:
    """The caller's read scope now, its credential checked again; None once the credential no
    longer holds (a revoked or expired token, a disabled account, a changed password)."""
    try:
        found = await request.app[AUTHENTICATOR].from_header(request.headers.get("Authorization"))
    except DyError:  # Unauthorized, or a directory that cannot say: either way, stop
        return None
    return await request.app[AUTHORITY].read_scope(found or ANONYMOUS)


async def may(request: web.Request, principal: Principal, repository: str,
              action: Literal["push", "delete"]) -> bool:
    """Whether the registry would let ``principal`` push to (or delete from) ``repository``:
    what the token endpoint would grant, for the pages and APIs that act on a repository."""
    grants = await request.app[AUTHORITY].grants(
        principal, [Scope("repository", repository, frozenset({action}))])
    return any(action in grant.actions for grant in grants)
