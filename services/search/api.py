"""Search's HTTP surface: ``GET /api/v1/search`` and stars."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from services.auth.access import AUTHORITY, read_scope, require_user
from services.core.http import ApiError, decode_cursor, encode_cursor, page, query_limit
from services.core.reference import is_valid_repository, namespace_of
from services.search.models import Position
from services.search.ports import SearchIndex
from services.search.query import parse_query

__all__ = ["SEARCH_INDEX", "routes"]

SEARCH_INDEX = web.AppKey("search.index", SearchIndex)

# SQLite integers are 64-bit; a larger one in a forged cursor must be a 400, not an error.
_INTEGER = range(-(2**63), 2**63)
_MATCH_CLASSES = range(3)

routes = web.RouteTableDef()


@routes.get("/api/v1/search")
async def search(request: web.Request) -> web.Response:
    """Ranked matches among what the caller may pull (everything for admins)."""
    params = request.query
    query = parse_query(params.get("q"), params.get("type"), namespace=params.get("namespace"),
                        artifact_type=params.get("artifact_type"))
    limit = query_limit(request)
    after = _position(params.get("cursor"))
    visible = await _visible(request)
    hits = await request.app[SEARCH_INDEX].search(query, visible=visible, after=after,
                                                  limit=limit + 1)
    items = [item for _, item in hits[:limit]]
    await _add_visibility(request, items)
    next_cursor = encode_cursor(list(hits[limit - 1][0])) if len(hits) > limit else None
    return page(items, next_cursor)


@routes.get("/api/v1/stars")
async def list_stars(request: web.Request) -> web.Response:
    """The repositories the signed-in caller starred and may still pull from."""
    principal = await require_user(request)
    limit = query_limit(request)
    after = None
    if "cursor" in request.query:
        (after,) = decode_cursor(request.query["cursor"], 1)
        if not isinstance(after, str):
            raise ApiError(400, "invalid_cursor", "cursor is not one this API returned")
    rows = await request.app[SEARCH_INDEX].starred(
        principal.name or "", visible=await _visible(request), after=after, limit=limit + 1)
    next_cursor = encode_cursor([rows[limit - 1]["repository"]]) if len(rows) > limit else None
    return page(rows[:limit], next_cursor)


@routes.put("/api/v1/stars")
async def star(request: web.Request) -> web.Response:
    principal = await require_user(request)
    repository = await _visible_repository(request)
    if not await request.app[SEARCH_INDEX].star(principal.name or "", repository):
        raise _not_found(repository)
    return web.Response(status=204)


@routes.delete("/api/v1/stars")
async def unstar(request: web.Request) -> web.Response:
    principal = await require_user(request)
    repository = await _visible_repository(request)
    await request.app[SEARCH_INDEX].unstar(principal.name or "", repository)
    return web.Response(status=204)


async def _visible_repository(request: web.Request) -> str:
    repository = request.query.get("repository", "")
    if not is_valid_repository(repository):
        raise ApiError(400, "invalid_repository",
                       "give ?repository=NAME with a valid repository name, e.g. team/app")
    visible = await _visible(request)
    if visible is not None and namespace_of(repository) not in visible:
        raise _not_found(repository)  # as for one that does not exist: existence is not leaked
    return repository


def _not_found(repository: str) -> ApiError:
    return ApiError(404, "repository_not_found", f"no repository named {repository!r}")


def _position(cursor: str | None) -> Position | None:
    if cursor is None:
        return None
    values = decode_cursor(cursor, 4)
    if not all(type(v) is int and v in _INTEGER for v in values) or values[0] not in _MATCH_CLASSES:
        raise ApiError(400, "invalid_cursor", "cursor is not one this API returned")
    return (values[0], values[1], values[2], values[3])


async def _visible(request: web.Request) -> frozenset[str] | None:
    """The namespaces the caller may pull from (None: all). Anonymous callers see public ones."""
    return (await read_scope(request)).readable


async def _add_visibility(request: web.Request, items: list[dict[str, Any]]) -> None:
    """Each result's visibility, read from the auth service now rather than copied into the
    index, so a visibility change shows at once."""
    names = sorted({item["namespace"] for item in items})
    if not names:
        return
    records = await request.app[AUTHORITY].store.namespaces(None, names)
    visibility = {namespace.name: namespace.visibility for namespace, _ in records}
    for item in items:
        item["visibility"] = visibility.get(item["namespace"])
