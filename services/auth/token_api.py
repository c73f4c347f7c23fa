"""``GET /v2/token`` and ``POST /v2/token``: the registry's token endpoint.

distribution docs/spec/auth/token.md (GET, Basic credentials or none) and oauth.md (POST,
``grant_type=password|refresh_token``). ``sub`` is the authenticated account, never the
``account`` parameter, which is only a hint from the client. Errors carry both Dockyard's
``error`` object and distribution's ``errors`` list, which the docker CLI prints.
"""

from __future__ import annotations

import functools
import logging
import math
import time
from collections import deque
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import orjson
from aiohttp import web

from services.auth.access import AUTHENTICATOR, AUTHORITY
from services.auth.policy import ANONYMOUS, Principal
from services.auth.scopes import ScopeError, parse_scopes
from services.auth.service import new_secret, parse_basic, secret_hash
from services.auth.tokens import Grant, IssuedToken
from services.core.errors import DyError, Invalid, TooManyRequests, Unauthorized
from services.core.times import rfc3339
from services.core.web import CONFIG

__all__ = ["RATE_LIMITS", "RateLimits", "routes"]

log = logging.getLogger("dockyard.token")

REFRESH_TOKEN_PREFIX = "dyrt_"  # noqa: S105 - a prefix, not a secret
routes = web.RouteTableDef()

# The error codes docker clients know (distribution registry/api/errcode), by status.
_DISTRIBUTION_CODES = {401: "UNAUTHORIZED", 403: "DENIED", 429: "TOOMANYREQUESTS"}


class RateLimits:
    """Moving-window limits on token requests per client address and per account name: at most
    ``per_ip`` (``per_user``) accepted requests in any minute.

    Each key keeps the times of its accepted requests of the last minute, at most its limit of
    them, so a check costs O(1) however many clients there are; keys idle for a minute are
    dropped once a minute. (limits' MemoryStorage moving window, used before, prepended to a
    list per hit and swept every key through a thread on nearly every request.)
    """

    WINDOW = 60.0

    def __init__(
        self, per_ip: int, per_user: int, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._per_ip = per_ip
        self._per_user = per_user
        self._clock = clock
        self._hits: dict[str, deque[float]] = {}
        self._next_sweep = clock() + self.WINDOW

    async def check(self, address: str, username: str | None) -> None:
        now = self._clock()
        if now >= self._next_sweep:
            self._sweep(now)
        keys = [(f"ip:{address}", self._per_ip)]
        if username is not None:
            keys.append((f"user:{username}", self._per_user))
        for key, limit in keys:
            hits = self._hits.setdefault(key, deque())
            while hits and hits[0] <= now - self.WINDOW:
                hits.popleft()
            if len(hits) >= limit:
                retry = max(1, math.ceil(hits[0] + self.WINDOW - now))
                raise TooManyRequests("too_many_requests",
                                      f"too many token requests; retry in {retry} s",
                                      {"Retry-After": str(retry)})
        for key, _ in keys:
            self._hits[key].append(now)

    def _sweep(self, now: float) -> None:
        self._hits = {key: hits for key, hits in self._hits.items()
                      if hits and hits[-1] > now - self.WINDOW}
        self._next_sweep = now + self.WINDOW


RATE_LIMITS = web.AppKey("auth.rate_limits", RateLimits)


@routes.get("/v2/token")
async def get_token(request: web.Request) -> web.Response:
    try:
        query = request.query
        _check_service(request, query.get("service"))
        credentials = parse_basic(request.headers.get("Authorization"))
        await request.app[RATE_LIMITS].check(request.remote or "", credentials and credentials[0])
        scopes = _scopes(query.getall("scope", []))
        if credentials is None:
            if request.headers.get("Authorization"):
                raise Unauthorized("unauthorized", "the token endpoint takes HTTP Basic only")
            principal = ANONYMOUS
        else:
            principal = await request.app[AUTHENTICATOR].authenticate(*credentials)
        issued = await _issue(request, principal, scopes)
        body = _token_body(issued)
        if query.get("offline_token") == "true" and principal.kind != "anonymous":
            body["refresh_token"] = await _new_refresh_token(
                request, principal, query.get("client_id", ""))
        return _json(body)
    except DyError as exc:
        return _error(exc)


@routes.post("/v2/token")
async def post_token(request: web.Request) -> web.Response:
    try:
        try:
            form = await request.post()
        except ValueError:  # a multipart body without a boundary, and the like
            raise Invalid("invalid_request",
                          "send the form as application/x-www-form-urlencoded") from None
        fields = {k: v for k, v in form.items() if isinstance(v, str)}
        _check_service(request, fields.get("service"))
        client_id = fields.get("client_id", "")
        if not client_id:
            raise Invalid("invalid_request", "client_id is required (OAuth2 token request)")
        grant_type = fields.get("grant_type")
        username = fields.get("username") if grant_type == "password" else None
        await request.app[RATE_LIMITS].check(request.remote or "", username)
        scopes = _scopes([fields.get("scope", "")])
        refresh_token = None
        if grant_type == "password":
            principal = await request.app[AUTHENTICATOR].authenticate(
                fields.get("username", ""), fields.get("password", ""))
            if fields.get("access_type") == "offline":
                refresh_token = await _new_refresh_token(request, principal, client_id)
        elif grant_type == "refresh_token":
            refresh_token = fields.get("refresh_token", "")
            owner = await request.app[AUTHORITY].store.find_refresh_token(
                secret_hash(refresh_token))
            if owner is None:
                raise Unauthorized("invalid_grant", "unknown or revoked refresh token")
            principal = await request.app[AUTHENTICATOR].principal_of(owner, "refresh_token")
        else:
            raise Invalid("unsupported_grant_type", "grant_type must be password or refresh_token")
        issued = await _issue(request, principal, scopes)
        granted = " ".join(_scope_string(g) for g in issued[1])
        body: dict[str, Any] = {
            "access_token": issued[0].token,
            "scope": granted,
            "expires_in": issued[0].expires_in,
            "issued_at": _rfc3339(issued[0].issued_at),
        }
        if refresh_token:
            body["refresh_token"] = refresh_token
        return _json(body)
    except DyError as exc:
        return _error(exc)


async def _issue(
    request: web.Request, principal: Principal, scopes: list[Any]
) -> tuple[IssuedToken, list[Grant]]:
    authority = request.app[AUTHORITY]
    grants = await authority.grants(principal, scopes)
    issued = authority.sign(principal, grants)
    # One line per token is an access log (docker asks for a token per repository it touches):
    # debug only, like aiohttp's access log. Logins are audited as identity events.
    if log.isEnabledFor(logging.DEBUG):
        log.debug("token issued", extra={
            "sub": principal.name or "", "credential": principal.credential,
            "granted": [_scope_string(g) for g in grants],
        })
    return issued, grants


def _token_body(issued: tuple[IssuedToken, list[Grant]]) -> dict[str, Any]:
    token = issued[0]
    return {
        "token": token.token,
        "access_token": token.token,
        "expires_in": token.expires_in,
        "issued_at": _rfc3339(token.issued_at),
    }


async def _new_refresh_token(request: web.Request, principal: Principal, client_id: str) -> str:
    secret = new_secret(REFRESH_TOKEN_PREFIX)
    await request.app[AUTHORITY].store.create_refresh_token(
        secret_hash(secret), principal.name or "", client_id, datetime.now(UTC))
    return secret


def _json(body: dict[str, Any]) -> web.Response:
    # orjson: the token endpoint is the hottest path there is (docker asks per repository).
    return web.Response(body=orjson.dumps(body), content_type="application/json")


def _check_service(request: web.Request, service: str | None) -> None:
    expected = request.app[CONFIG].auth.service
    if service is not None and service != expected:
        raise Invalid("invalid_request",
                      f"this token endpoint serves {expected!r}, not {service!r}")


def _scopes(values: list[str]) -> list[Any]:
    try:
        return parse_scopes(values)
    except ScopeError as exc:
        raise Invalid("invalid_scope", str(exc)) from None


def _scope_string(granted: Grant) -> str:
    return f"{granted.type}:{granted.name}:{','.join(sorted(granted.actions))}"


@functools.lru_cache(maxsize=4)
def _rfc3339(epoch: int) -> str:
    """``issued_at``: the same for every token of a second, so formatted once per second."""
    return rfc3339(datetime.fromtimestamp(epoch, UTC))


def _error(exc: DyError) -> web.Response:
    body = {
        "error": {"code": exc.code, "message": exc.message},
        "errors": [{"code": _DISTRIBUTION_CODES.get(exc.status, "UNSUPPORTED"),
                    "message": exc.message, "detail": exc.code}],
    }
    response = web.json_response(body, status=exc.status)
    response.headers.update(exc.headers)
    return response
