"""The identity API under ``/api/v1``: accounts, teams, namespaces, application tokens, bots.

Thin: a handler finds out who is calling (``require_user``), checks the shape of the body, and
calls ``IdentityService``, which decides what the caller may do (Portus' owner vs admin rights)
and audits every change. Bodies are JSON objects sent as ``application/json``; an unknown field,
a missing one or one of the wrong type is a 400 naming the field, before anything is written.
Passwords are never echoed; a token's secret is in the answer to its creation and nowhere else.
``schemas/openapi.yaml`` documents every route.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any, TypeVar

from aiohttp import web

from services.auth.access import IDENTITY, require_user
from services.auth.identity import IdentityService
from services.auth.models import AppToken, Member, Namespace, Team, User
from services.core.errors import Invalid
from services.core.http import (
    ApiError,
    decode_cursor,
    encode_cursor,
    json_response,
    page,
    query_limit,
)
from services.core.times import rfc3339

__all__ = ["routes"]

routes = web.RouteTableDef()

_T = TypeVar("_T")

# What each body field must be: its JSON types (NoneType for null) and whether it is required.
_STRING = (str,)
_BOOLEAN = (bool,)
_STRING_OR_NULL = (str, type(None))
_TYPE_NAMES = {_STRING: "a string", _BOOLEAN: "true or false",
               _STRING_OR_NULL: "a string or null"}
Spec = Mapping[str, tuple[tuple[type, ...], bool]]

NEW_USER: Spec = {"name": (_STRING, True), "password": (_STRING, True),
                  "email": (_STRING, False), "admin": (_BOOLEAN, False)}
USER_CHANGES: Spec = {"enabled": (_BOOLEAN, False), "admin": (_BOOLEAN, False),
                      "password": (_STRING, False), "email": (_STRING, False)}
NEW_TEAM: Spec = {"name": (_STRING, True), "description": (_STRING, False),
                  "owner": (_STRING, False)}
MEMBERSHIP: Spec = {"role": (_STRING, True)}
NEW_NAMESPACE: Spec = {"name": (_STRING, True), "team": (_STRING, True),
                       "visibility": (_STRING, False), "description": (_STRING, False)}
NAMESPACE_CHANGES: Spec = {"visibility": (_STRING, False), "description": (_STRING, False),
                           "team": (_STRING, False)}
NEW_TOKEN: Spec = {"label": (_STRING, True), "expires_at": (_STRING_OR_NULL, False)}
NEW_BOT: Spec = {"name": (_STRING, True), "team": (_STRING, True), "role": (_STRING, True)}


# --- who am I ------------------------------------------------------------------------------


@routes.get("/api/v1/me")
async def me(request: web.Request) -> web.Response:
    actor = await require_user(request)
    profile = await _identity(request).profile(actor)
    return json_response({
        **account_json(profile.user),
        "teams": [{"name": team, "role": role} for team, role in sorted(profile.teams.items())],
        "namespaces": [namespace_json(ns) for ns in profile.namespaces],
    })


# --- accounts ------------------------------------------------------------------------------


@routes.get("/api/v1/users")
async def list_users(request: web.Request) -> web.Response:
    actor = await require_user(request)
    limit = query_limit(request)
    users = await _identity(request).users(actor, after=_after(request), limit=limit + 1)
    return _page(users, limit, lambda user: user.name, account_json)


@routes.post("/api/v1/users")
async def create_user(request: web.Request) -> web.Response:
    actor = await require_user(request)
    body = await _body(request, NEW_USER)
    user = await _identity(request).create_user(
        actor, body["name"], email=body.get("email", ""), password=body["password"],
        admin=body.get("admin", False))
    return json_response(account_json(user), status=201)


@routes.get("/api/v1/users/{name}")
async def get_user(request: web.Request) -> web.Response:
    actor = await require_user(request)
    user = await _identity(request).get_user(actor, request.match_info["name"])
    return json_response(account_json(user))


@routes.patch("/api/v1/users/{name}")
async def update_user(request: web.Request) -> web.Response:
    actor = await require_user(request)
    body = await _body(request, USER_CHANGES)
    user = await _identity(request).update_user(actor, request.match_info["name"], **body)
    return json_response(account_json(user))


@routes.delete("/api/v1/users/{name}/sessions")
async def sign_out_everywhere(request: web.Request) -> web.Response:
    actor = await require_user(request)
    await _identity(request).sign_out_everywhere(actor, request.match_info["name"])
    return web.Response(status=204)


# --- teams ---------------------------------------------------------------------------------


@routes.get("/api/v1/teams")
async def list_teams(request: web.Request) -> web.Response:
    actor = await require_user(request)
    limit = query_limit(request)
    after = _after(request)
    teams = [team for team in await _identity(request).teams(actor)
             if after is None or team.name > after]
    return _page(teams[:limit + 1], limit, lambda team: team.name, team_json)


@routes.post("/api/v1/teams")
async def create_team(request: web.Request) -> web.Response:
    actor = await require_user(request)
    body = await _body(request, NEW_TEAM)
    identity = _identity(request)
    owner = body.get("owner", actor.name or "")
    team = await identity.create_team(actor, body["name"], owner=owner,
                                      description=body.get("description", ""))
    return json_response(team_json(team, await identity.members(actor, team.name)), status=201)


@routes.get("/api/v1/teams/{team}")
async def get_team(request: web.Request) -> web.Response:
    actor = await require_user(request)
    team, members = await _identity(request).get_team(actor, request.match_info["team"])
    return json_response(team_json(team, members))


@routes.put("/api/v1/teams/{team}/members/{user}")
async def set_member(request: web.Request) -> web.Response:
    actor = await require_user(request)
    body = await _body(request, MEMBERSHIP)
    member = await _identity(request).set_member(
        actor, request.match_info["team"], request.match_info["user"], body["role"])
    return json_response(member_json(member))


@routes.delete("/api/v1/teams/{team}/members/{user}")
async def remove_member(request: web.Request) -> web.Response:
    actor = await require_user(request)
    await _identity(request).remove_member(
        actor, request.match_info["team"], request.match_info["user"])
    return web.Response(status=204)


# --- namespaces ----------------------------------------------------------------------------


@routes.get("/api/v1/namespaces")
async def list_namespaces(request: web.Request) -> web.Response:
    actor = await require_user(request)
    limit = query_limit(request)
    after = _after(request)
    namespaces = [ns for ns in await _identity(request).namespaces(actor)
                  if after is None or ns.name > after]
    return _page(namespaces[:limit + 1], limit, lambda ns: ns.name, namespace_json)


@routes.post("/api/v1/namespaces")
async def create_namespace(request: web.Request) -> web.Response:
    actor = await require_user(request)
    body = await _body(request, NEW_NAMESPACE)
    namespace = await _identity(request).create_namespace(
        actor, body["name"], team=body["team"], visibility=body.get("visibility", "private"),
        description=body.get("description", ""))
    return json_response(namespace_json(namespace), status=201)


@routes.get("/api/v1/namespaces/{name}")
async def get_namespace(request: web.Request) -> web.Response:
    actor = await require_user(request)
    namespace = await _identity(request).get_namespace(actor, request.match_info["name"])
    return json_response(namespace_json(namespace))


@routes.patch("/api/v1/namespaces/{name}")
async def update_namespace(request: web.Request) -> web.Response:
    actor = await require_user(request)
    body = await _body(request, NAMESPACE_CHANGES)
    namespace = await _identity(request).update_namespace(
        actor, request.match_info["name"], **body)
    return json_response(namespace_json(namespace))


# --- application tokens --------------------------------------------------------------------


@routes.get("/api/v1/users/{name}/tokens")
async def list_tokens(request: web.Request) -> web.Response:
    """Every token of the account, live and revoked, oldest first; one page."""
    actor = await require_user(request)
    tokens = await _identity(request).tokens(actor, request.match_info["name"])
    return page([token_json(token) for token in tokens], None)


@routes.post("/api/v1/users/{name}/tokens")
async def create_token(request: web.Request) -> web.Response:
    actor = await require_user(request)
    body = await _body(request, NEW_TOKEN)
    expires_at = _time(body.get("expires_at"), "expires_at")
    token, secret = await _identity(request).create_token(
        actor, request.match_info["name"], body["label"], expires_at=expires_at)
    # The only time the secret leaves Dockyard: only its hash is stored.
    return json_response({**token_json(token), "secret": secret}, status=201)


@routes.delete("/api/v1/users/{name}/tokens/{label}")
async def revoke_token(request: web.Request) -> web.Response:
    actor = await require_user(request)
    await _identity(request).revoke_token(
        actor, request.match_info["name"], request.match_info["label"])
    return web.Response(status=204)


# --- bots ----------------------------------------------------------------------------------


@routes.get("/api/v1/bots")
async def list_bots(request: web.Request) -> web.Response:
    actor = await require_user(request)
    limit = query_limit(request)
    bots = await _identity(request).users(actor, kind="bot", after=_after(request),
                                          limit=limit + 1)
    return _page(bots, limit, lambda bot: bot.name, account_json)


@routes.post("/api/v1/bots")
async def create_bot(request: web.Request) -> web.Response:
    actor = await require_user(request)
    body = await _body(request, NEW_BOT)
    bot = await _identity(request).create_bot(actor, body["name"], team=body["team"],
                                              role=body["role"])
    return json_response(account_json(bot), status=201)


# --- JSON ----------------------------------------------------------------------------------


def account_json(user: User) -> dict[str, Any]:
    body: dict[str, Any] = {
        "name": user.name,
        "kind": user.kind,
        "email": user.email,
        "admin": user.admin,
        "enabled": user.enabled,
        "locked_until": _rfc3339(user.locked_until),
    }
    if user.kind == "bot":
        body["owner_team"] = user.owner_team
    return body


def team_json(team: Team, members: list[Member] | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {"name": team.name, "description": team.description}
    if members is not None:
        body["members"] = [{"user": m.user, "role": m.role} for m in members]
    return body


def member_json(member: Member) -> dict[str, Any]:
    return {"team": member.team, "user": member.user, "role": member.role}


def namespace_json(namespace: Namespace) -> dict[str, Any]:
    return {
        "name": namespace.name,
        "kind": namespace.kind,
        "visibility": namespace.visibility,
        "description": namespace.description,
        "team": namespace.team,
        "owner": namespace.owner,
    }


def token_json(token: AppToken) -> dict[str, Any]:
    """Never the secret, nor its hash (the token's id is derived from the hash)."""
    return {
        "user": token.user,
        "label": token.label,
        "created_at": _rfc3339(token.created_at),
        "expires_at": _rfc3339(token.expires_at),
        "last_used_at": _rfc3339(token.last_used_at),
        "revoked": token.revoked,
    }


# --- helpers -------------------------------------------------------------------------------


def _identity(request: web.Request) -> IdentityService:
    return request.app[IDENTITY]


async def _body(request: web.Request, spec: Spec) -> dict[str, Any]:
    """The body as a JSON object holding only the fields of ``spec``, each of its type."""
    if request.content_type != "application/json":
        raise ApiError(415, "unsupported_media_type", "send the body as application/json")
    try:
        body = json.loads(await request.read())
    except (ValueError, RecursionError):  # UnicodeDecodeError is a ValueError
        raise Invalid("malformed_json", "the body is not JSON") from None
    if not isinstance(body, dict):
        raise Invalid("invalid_body", "the body must be a JSON object")
    for name, value in body.items():
        if name not in spec:
            raise Invalid("unknown_field", f"{name[:64]!r} is not a field here; the fields are"
                          f" {', '.join(spec)}")
        types, _ = spec[name]
        if not isinstance(value, types):
            raise Invalid("invalid_field", f"{name} must be {_TYPE_NAMES[types]}")
    for name, (_, required) in spec.items():
        if required and name not in body:
            raise Invalid("missing_field", f"{name} is required")
    return body


def _time(value: str | None, name: str) -> datetime | None:
    if value is None:
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise Invalid("invalid_field",
                      f"{name} must be an RFC 3339 time, e.g. 2027-01-31T12:00:00Z") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _rfc3339(moment: datetime | None) -> str | None:
    if moment is None:
        return None
    return rfc3339(moment)


def _after(request: web.Request) -> str | None:
    """The name a ``cursor`` parameter says the previous page ended at."""
    if "cursor" not in request.query:
        return None
    (name,) = decode_cursor(request.query["cursor"], 1)
    if not isinstance(name, str):
        raise ApiError(400, "invalid_cursor", "cursor is not one this API returned")
    return name


def _page(
    items: list[_T], limit: int, key: Callable[[_T], str],
    render: Callable[[_T], dict[str, Any]],
) -> web.Response:
    """A page of ``items``, fetched one beyond ``limit`` to know whether another follows."""
    next_cursor = encode_cursor([key(items[limit - 1])]) if len(items) > limit else None
    return page([render(item) for item in items[:limit]], next_cursor)
