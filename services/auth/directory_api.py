"""HTTP routes of directory sign-in.

Browser: ``/auth/oidc/{provider}/login`` → the provider → ``/auth/oidc/{provider}/callback`` →
a portal session (services.auth.sessions.sign_in). The pending sign-in (state, nonce, PKCE
verifier) travels in an HMAC-signed, ``HttpOnly`` cookie scoped to ``/auth/oidc/``, so any
replica can finish a sign-in another one began.

API (administrators): ``POST /api/v1/directory/accounts`` pre-creates a directory account so
it can be put in teams before its first sign-in; ``POST /api/v1/directory/sync`` runs the LDAP
group sync now.
"""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web

from services.auth.access import require_admin
from services.auth.api import account_json
from services.auth.directory import LDAP_SOURCE
from services.auth.directory_app import DIRECTORY
from services.auth.oidc import PendingLogin
from services.auth.sessions import sign_in
from services.core.errors import Invalid, NotFound, Unauthorized
from services.core.http import ApiError, json_response
from services.core.web import CONFIG

__all__ = ["routes"]

routes = web.RouteTableDef()
_COOKIE = "dockyard_oidc"
_PATH = "/auth/oidc/"


def _key(request: web.Request) -> bytes:
    return request.app[DIRECTORY].state_key


@routes.get("/auth/oidc/{provider}/login")
async def login(request: web.Request) -> web.StreamResponse:
    url, pending = await request.app[DIRECTORY].providers.begin(request.match_info["provider"])
    response = web.HTTPFound(url)
    response.set_cookie(_COOKIE, pending.encode(_key(request)), httponly=True, samesite="Lax",
                        path=_PATH, max_age=600,
                        secure=request.app[CONFIG].server.external_url.startswith("https:"))
    raise response


@routes.get("/auth/oidc/{provider}/callback")
async def callback(request: web.Request) -> web.StreamResponse:
    provider = request.match_info["provider"]
    cookie = request.cookies.get(_COOKIE)
    if not cookie:
        raise Unauthorized("no_pending_login", "no sign-in was started in this browser;"
                           " start again")
    pending = PendingLogin.decode(cookie, _key(request))
    user = await request.app[DIRECTORY].providers.finish(provider, pending, request.query)
    response = web.HTTPSeeOther("/")
    response.del_cookie(_COOKIE, path=_PATH)
    kind = request.app[DIRECTORY].providers.get(provider).settings.kind
    await sign_in(request, response, user.name, method="github" if kind == "github" else "oidc")
    raise response


@routes.post("/api/v1/directory/accounts")
async def precreate(request: web.Request) -> web.Response:
    actor = await require_admin(request)
    body = await _object(request)
    name, source, email = body.get("name"), body.get("source"), body.get("email", "")
    if set(body) - {"name", "source", "email"}:
        raise Invalid("unknown_field", "the fields are name, source, email")
    if not isinstance(name, str) or not isinstance(source, str) or not isinstance(email, str):
        raise Invalid("invalid_field", "name and source are required strings, email a string")
    parts = request.app[DIRECTORY]
    known = {f"oidc:{provider}" for provider in parts.providers.by_name}
    if parts.ldap is not None:
        known.add(LDAP_SOURCE)
    if source not in known:
        raise Invalid("unknown_source", f"source must be one of {', '.join(sorted(known))}"
                      if known else "no directory or sign-in provider is configured")
    user = await parts.directory.precreate(actor, name, source=source, email=email)
    return json_response(account_json(user), status=201)


@routes.post("/api/v1/directory/sync")
async def sync_now(request: web.Request) -> web.Response:
    await require_admin(request)
    ldap = request.app[DIRECTORY].ldap
    if ldap is None:
        raise NotFound("ldap_not_configured", "no LDAP directory is configured ([ldap] url)")
    return json_response({"accounts": await ldap.sync_all()})


async def _object(request: web.Request) -> dict[str, Any]:
    if request.content_type != "application/json":
        raise ApiError(415, "unsupported_media_type", "send the body as application/json")
    try:
        body = json.loads(await request.read())
    except (ValueError, RecursionError):
        raise Invalid("malformed_json", "the body is not JSON") from None
    if not isinstance(body, dict):
        raise Invalid("invalid_body", "the body must be a JSON object")
    return body
