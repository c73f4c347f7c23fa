"""``GET /v2/token`` and ``POST /v2/token``: the registry's token endpoint.

distribution docs/spec/auth/token.md (GET, Basic credentials or none) and oauth.md (POST,
``grant_type=password|refresh_token``). ``sub`` is the authenticated account, never the
``account`` parameter, which is only a hint from the client. Errors carry both Dockyard's
``error`` object and distribution's ``errors`` list, which the docker CLI prints.
"""

from __future__ import annotations

import logging
import time
from datetime import UTC, datetime
from typing import Any

from aiohttp import web
from limits import RateLimitItemPerMinute
from limits.aio.storage import MemoryStorage
from limits.aio.strategies import MovingWindowRateLimiter

from services.auth.access import AUTHENTICATOR, AUTHORITY
from services.auth.policy import ANONYMOUS, Principal
from services.auth.scopes import ScopeError, parse_scopes
from services.auth.service import new_secret, parse_basic, secret_hash
from services.auth.tokens import Grant, IssuedToken
from services.core.errors import DyError, Invalid, TooManyRequests, Unauthorized
from services.core.web import CONFIG

__all__ = ["RATE_LIMITS", "RateLimits", "routes"]

log = logging.getLogger("dockyard.token")

REFRESH_TOKEN_PREFIX = "dyrt_"  # noqa: S105 - a prefix, not a secret
routes = web.RouteTableDef()


class RateLimits:
    """Moving-window limits on token requests per client address and per account name."""

    def __init__(self, per_ip: int, per_user: int) -> None:
        self._limiter = MovingWindowRateLimiter(MemoryStorage())
        self._per_ip = RateLimitItemPerMinute(per_ip)
        self._per_user = RateLimitItemPerMinute(per_user)

    async def check(self, address: str, username: str | None) -> None:
        for item, key in ((self._per_ip, f"ip:{address}"), (self._per_user, f"user:{username}")):
            if key == "user:None":
                continue
            if not await self._limiter.hit(item, key):
                stats = await self._limiter.get_window_stats(item, key)
                retry = max(1, int(stats.reset_time - time.time()) + 1)
                raise TooManyRequests("too_many_requests",
                              f"too many token requests; retry in {retry} s",
                              {"Retry-After": str(retry)})


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
        return web.json_response(body)
    except DyError as exc:
        return _error(exc)


@routes.post("/v2/token")
async def post_token(request: web.Request) -> web.Response:
    try:
        form = await request.post()
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
        return web.json_response(body)
    except DyError as exc:
        return _error(exc)


async def _issue(
    request: web.Request, principal: Principal, scopes: list[Any]
) -> tuple[IssuedToken, list[Grant]]:
    authority = request.app[AUTHORITY]
    grants = await authority.grants(principal, scopes)
    issued = authority.sign(principal, grants)
    log.info("token issued", extra={
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


def _rfc3339(epoch: int) -> str:
    return datetime.fromtimestamp(epoch, UTC).isoformat().replace("+00:00", "Z")


def _error(exc: DyError) -> web.Response:
    body = {
        "error": {"code": exc.code, "message": exc.message},
        "errors": [{"code": exc.code.upper(), "message": exc.message}],
    }
    response = web.json_response(body, status=exc.status)
    response.headers.update(exc.headers)
    return response
