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

from services.auth.access import AUTHENTICATOR, AUTHORITY, client_address
from services.auth.policy import ANONYMOUS, Principal
from services.auth.refresh import RefreshTokens
from services.auth.scopes import ScopeError, parse_scopes
from services.auth.service import parse_basic
from services.auth.tokens import Grant, IssuedToken
from services.core.errors import DyError, Invalid, TooManyRequests, Unauthorized
from services.core.times import rfc3339
from services.core.web import CONFIG

__all__ = ["RATE_LIMITS", "REFRESH_TOKENS", "RateLimits", "routes"]

log = logging.getLogger("dockyard.token")

routes = web.RouteTableDef()

# The error codes docker clients know (distribution registry/api/errcode), by status.
_DISTRIBUTION_CODES = {401: "UNAUTHORIZED", 403: "DENIED", 429: "TOOMANYREQUESTS"}


class RateLimits:
    """Moving-window limits on token requests per client address and per account: at most
    ``per_ip`` (``per_user``) accepted requests in any minute. An account is charged only once
    its credentials are proven (``check_account`` after authentication): charged by the name a
    client merely claims, anyone could spend another account's budget. Wrong passwords are the
    lockout's to count (services/auth/lockout.py).

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

    async def check_address(self, address: str) -> None:
        self._take(f"ip:{address}", self._per_ip)

    async def check_account(self, name: str) -> None:
        """After authentication: ``name`` is the account proven."""
        self._take(f"user:{name}", self._per_user)

    def _take(self, key: str, limit: int) -> None:
        now = self._clock()
        if now >= self._next_sweep:
            self._sweep(now)
        hits = self._hits.get(key)
        if hits is None:
            hits = self._hits[key] = deque()
        while hits and hits[0] <= now - self.WINDOW:
            hits.popleft()
        if len(hits) >= limit:
            retry = max(1, math.ceil(hits[0] + self.WINDOW - now))
            raise TooManyRequests("too_many_requests",
                                  f"too many token requests; retry in {retry} s",
                                  {"Retry-After": str(retry)})
        hits.append(now)

    def _sweep(self, now: float) -> None:
        self._hits = {key: hits for key, hits in self._hits.items()
                      if hits and hits[-1] > now - self.WINDOW}
        self._next_sweep = now + self.WINDOW


RATE_LIMITS = web.AppKey("auth.rate_limits", RateLimits)
REFRESH_TOKENS = web.AppKey("auth.refresh_tokens", RefreshTokens)


@routes.get("/v2/token")
async def get_token(request: web.Request) -> web.Response:
    app = request.app  # a property chain: looked up once (the hottest path there is)
    try:
        query = request.query
        _check_service(app, query.get("service"))
        credentials = parse_basic(request.headers.get("Authorization"))
        address = client_address(request)
        await app[RATE_LIMITS].check_address(address)
        scopes = _scopes(query.getall("scope", []))
        if credentials is None:
            if request.headers.get("Authorization"):
                raise Unauthorized("unauthorized", "the token endpoint takes HTTP Basic only")
            principal = ANONYMOUS
        else:
            principal = await _authenticate(app, *credentials, address=address)
        issued = await _issue(app, principal, scopes)
        body = _token_body(issued)
        if query.get("offline_token") == "true" and principal.kind != "anonymous":
            body["refresh_token"] = await app[REFRESH_TOKENS].issue(
                principal, query.get("client_id", ""))
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
        app = request.app
        _check_service(app, fields.get("service"))
        client_id = fields.get("client_id", "")
        if not client_id:
            raise Invalid("invalid_request", "client_id is required (OAuth2 token request)")
        grant_type = fields.get("grant_type")
        address = client_address(request)
        await app[RATE_LIMITS].check_address(address)
        scopes = _scopes([fields.get("scope", "")])
        refresh_token = None
        if grant_type == "password":
            principal = await _authenticate(app, fields.get("username", ""),
                                            fields.get("password", ""), address=address)
            if fields.get("access_type") == "offline":
                refresh_token = await app[REFRESH_TOKENS].issue(principal, client_id)
        elif grant_type == "refresh_token":
            # The response carries the token that replaces the one presented.
            principal, refresh_token = await app[REFRESH_TOKENS].redeem(
                fields.get("refresh_token", ""), client_id)
            await app[RATE_LIMITS].check_account(principal.name or "")
        else:
            raise Invalid("unsupported_grant_type", "grant_type must be password or refresh_token")
        issued = await _issue(app, principal, scopes)
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
        return _error(exc, oauth=True)


async def _authenticate(app: web.Application, username: str, secret: str, *, address: str
                        ) -> Principal:
    """The account these credentials prove (sent from the client ``address``), charged to its
    rate limit once proven."""
    principal = await app[AUTHENTICATOR].authenticate(username, secret, source=address)
    await app[RATE_LIMITS].check_account(principal.name or "")
    return principal


async def _issue(
    app: web.Application, principal: Principal, scopes: list[Any]
) -> tuple[IssuedToken, list[Grant]]:
    authority = app[AUTHORITY]
    grants = await authority.authorize(principal, scopes)
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


def _json(body: dict[str, Any]) -> web.Response:
    # orjson: the token endpoint is the hottest path there is (docker asks per repository).
    return web.Response(body=orjson.dumps(body), content_type="application/json")


def _check_service(app: web.Application, service: str | None) -> None:
    expected = app[CONFIG].auth.service
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


def _error(exc: DyError, *, oauth: bool = False) -> web.Response:
    """Dockyard's ``error`` object, or for the OAuth2 POST RFC 6749 §5.2's ``error`` code and
    ``error_description``; with distribution's ``errors`` list, which docker prints."""
    body: dict[str, Any] = {
        "error": {"code": exc.code, "message": exc.message},
        "errors": [{"code": _DISTRIBUTION_CODES.get(exc.status, "UNSUPPORTED"),
                    "message": exc.message, "detail": exc.code}],
    }
    if oauth:
        body |= {"error": exc.code, "error_description": exc.message}
    response = web.json_response(body, status=exc.status)
    response.headers.update(exc.headers)
    return response
