"""Ingest's HTTP surface: the registry webhook, and the catalog and activity APIs."""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime
from typing import Any, TypeVar

from aiohttp import web
from aiohttp_sse import sse_response

from services.auth.access import fresh_read_scope, read_scope
from services.auth.policy import ReadScope
from services.core.config import Config
from services.core.eventlog import Record
from services.core.http import (
    ApiError,
    csv_response,
    decode_cursor,
    encode_cursor,
    page,
    query_limit,
)
from services.core.reference import is_valid_repository, namespace_of
from services.core.times import rfc3339
from services.core.web import CONFIG, EVENT_LOG, METRICS, PRIORITY
from services.ingest.activity import ACTIVITY_TYPES, shown_to
from services.ingest.consumers import REGISTRY_EVENTS
from services.ingest.models import Activity, ActivityFilter
from services.ingest.notifications import NotificationError, accept_envelope, log_values
from services.ingest.ports import ActivityStore, CatalogStore
from services.scanner.api import tag_scans

__all__ = [
    "ACTIVITY_STORE",
    "ACTIVITY_WAKEUP",
    "CATALOG_STORE",
    "STREAMS_CLOSING",
    "activities_csv",
    "activity_events",
    "routes",
]

log = logging.getLogger("dockyard.ingest")

CATALOG_STORE = web.AppKey("ingest.catalog", CatalogStore)
ACTIVITY_STORE = web.AppKey("ingest.activity", ActivityStore)
# Notified when new activity is recorded in this process, and at shutdown; streams wait on it.
ACTIVITY_WAKEUP = web.AppKey("ingest.activity_wakeup", asyncio.Condition)
STREAMS_CLOSING = web.AppKey("ingest.streams_closing", asyncio.Event)

STREAM_KEEPALIVE_SECONDS = 15.0
# How stale a stream's view of its caller's credential and access may be.
STREAM_RECHECK_SECONDS = 3.0
CSV_PAGE = 1000
CSV_COLUMNS = ("id", "time", "type", "actor", "repository", "namespace", "tag", "digest",
               "address", "user_agent", "synthetic", "subject", "team")

_T = TypeVar("_T")
# SQLite integers are 64-bit; a larger one in a forged cursor must be a 400, not an OverflowError.
_SQLITE_INTEGER = range(-(2**63), 2**63)
_MAX_DIGITS = 18  # any number of up to 18 digits fits in 64 bits

routes = web.RouteTableDef()


@routes.post("/v2/webhooks/events")
async def receive_events(request: web.Request) -> web.Response:
    """Registry notifications in; 2xx only once every event is durably on the log."""
    with request.app[PRIORITY].foreground():
        return await _receive_events(request)


async def _receive_events(request: web.Request) -> web.Response:
    config: Config = request.app[CONFIG]
    metrics = request.app[METRICS]
    expected = f"Bearer {config.webhook.secret}".encode()
    # aiohttp decodes header bytes that are not UTF-8 as lone surrogates; encode them back.
    given = request.headers.get("Authorization", "").encode("utf-8", "surrogateescape")
    if not hmac.compare_digest(given, expected):
        metrics.envelopes_rejected.labels("unauthorized").inc()
        raise ApiError(401, "unauthorized", "missing or wrong webhook secret in Authorization")
    limit = config.webhook.max_body_bytes
    body = await _body_within(request, limit)
    if body is None:
        metrics.envelopes_rejected.labels("body_too_large").inc()
        raise ApiError(413, "body_too_large", f"envelopes are limited to {limit} bytes")
    try:
        events = accept_envelope(body, request.headers.get("Content-Type"), max_body_bytes=limit)
    except NotificationError as exc:
        metrics.envelopes_rejected.labels(exc.code).inc()
        raise ApiError(exc.status, exc.code, str(exc)) from None
    metrics.events_received.inc(len(events))
    received_at = datetime.now(UTC)
    records = [Record(event["target"]["repository"], value)
               for event, value in zip(events, log_values(events, received_at), strict=True)]
    try:
        await request.app[EVENT_LOG].append(REGISTRY_EVENTS, records)
    except Exception:
        log.exception("could not append events; the registry will retry")
        raise ApiError(503, "log_unavailable", "the event log cannot take events now") from None
    metrics.events_appended.inc(len(records))
    return web.json_response({"accepted": len(records)})


async def _body_within(request: web.Request, limit: int) -> bytes | None:
    """The whole request body, or None as soon as it is known to exceed ``limit`` bytes.

    A body can arrive in several pieces (TCP segments, chunked transfer encoding), and
    ``StreamReader.read(n)`` returns only what has arrived so far: read to the end.
    """
    if request.content_length is not None and request.content_length > limit:
        return None
    body = bytearray()
    async for piece in request.content.iter_any():
        body += piece
        if len(body) > limit:
            return None
    return bytes(body)


@routes.get("/api/v1/repositories")
async def list_repositories(request: web.Request) -> web.Response:
    """The repositories the caller may pull from (all of them for admins)."""
    visible = await _visible(request)
    limit = query_limit(request)
    after = _cursor_value(request, str)
    namespace = request.query.get("namespace")
    rows = await request.app[CATALOG_STORE].repositories(
        namespace=namespace, after=after, limit=limit + 1, visible=visible
    )
    return _keyset_page(rows, limit, lambda row: [row["name"]])


@routes.get("/api/v1/tags")
async def list_tags(request: web.Request) -> web.Response:
    visible = await _visible(request)
    repository = request.query.get("repository", "")
    if not is_valid_repository(repository):
        raise ApiError(400, "invalid_repository",
                       "give ?repository=NAME with a valid repository name, e.g. team/app")
    if visible is not None and namespace_of(repository) not in visible:
        # The same answer as for a repository that does not exist: existence is not leaked.
        raise ApiError(404, "repository_not_found", f"no repository named {repository!r}")
    limit = query_limit(request)
    after = _cursor_value(request, str)
    store = request.app[CATALOG_STORE]
    rows = await store.tags(repository, after=after, limit=limit + 1)
    if not rows and after is None and await store.repository(repository) is None:
        raise ApiError(404, "repository_not_found", f"no repository named {repository!r}")
    # Through the scanner's module API, never its tables.
    scans = await tag_scans(request.app, [row["digest"] for row in rows[:limit]])
    rows = [{**row, "scan": scans.get(row["digest"])} for row in rows]
    return _keyset_page(rows, limit, lambda row: [row["name"]])


@routes.get("/api/v1/activities")
async def list_activities(request: web.Request) -> web.StreamResponse:
    """The activity the caller may see: of namespaces they may pull from; everything for
    admins. Addresses and user agents only for the namespaces they manage."""
    where = await _activity_filter(request)
    scope = await read_scope(request)
    store = request.app[ACTIVITY_STORE]
    if "text/csv" in request.headers.get("Accept", ""):
        return await activities_csv(request, store, where, scope)
    limit = query_limit(request)
    before = None
    if "cursor" in request.query:
        time_us, seq = decode_cursor(request.query["cursor"], 2)
        if not all(isinstance(n, int) and n in _SQLITE_INTEGER for n in (time_us, seq)):
            raise ApiError(400, "invalid_cursor", "cursor is not one this API returned")
        before = (time_us, seq)
    found = await store.search(where, before=before, limit=limit + 1)
    items = [activity_json(shown) for _, activity in found[:limit]
             if (shown := shown_to(activity, scope)) is not None]
    next_cursor = encode_cursor(list(found[limit - 1][0])) if len(found) > limit else None
    return page(items, next_cursor)


@routes.get("/api/v1/activities/stream")
async def stream_activities(request: web.Request) -> web.StreamResponse:
    """Server-sent events: each new activity as ``event: activity`` with its JSON."""
    where = await _activity_filter(request)
    return await activity_events(request, where, lambda: fresh_read_scope(request))


async def activity_events(
    request: web.Request, where: ActivityFilter,
    current_scope: Callable[[], Awaitable[ReadScope | None]],
) -> web.StreamResponse:
    """The live activity stream (server-sent events) of the activities ``where`` selects,
    resumed after ``Last-Event-ID``; the API's and the portal's dashboard feed.

    ``current_scope`` checks the caller's credential again and says what they may see now;
    it is asked at most every ``STREAM_RECHECK_SECONDS``, and the stream ends once it answers
    None (a revoked token, a disabled account, an ended session).
    """
    store = request.app[ACTIVITY_STORE]
    wakeup = request.app[ACTIVITY_WAKEUP]
    closing = request.app[STREAMS_CLOSING]
    scope_now = _at_most_every(STREAM_RECHECK_SECONDS, current_scope)
    resumed = _last_event_id(request)
    position = await store.last_sequence() if resumed is None else resumed
    async with sse_response(request, ping_interval=STREAM_KEEPALIVE_SECONDS) as stream:
        while stream.is_connected() and not closing.is_set():
            for sequence, activity in await store.since(position, 100):
                scope = await scope_now()
                if scope is None:
                    return stream
                position = sequence
                shown = shown_to(activity, scope) if _matches(activity, where) else None
                if shown is not None:
                    await stream.send(json.dumps(activity_json(shown)), id=str(sequence),
                                      event="activity")
            if await scope_now() is None:
                return stream
            # On a timeout look again anyway: another process may have recorded activity.
            async with wakeup:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(wakeup.wait(), STREAM_RECHECK_SECONDS)
    return stream


def _last_event_id(request: web.Request) -> int | None:
    """Where a reconnecting client left off (``Last-Event-ID``), or None to start from now.

    Only ASCII digits (``str.isdigit`` also takes "²", which ``int`` refuses) of a sequence
    number that fits the stores' 64 bits; anything else starts from now, as the header is
    only a hint (WHATWG HTML, server-sent events).
    """
    raw = request.headers.get("Last-Event-ID", "")
    if not (raw.isascii() and raw.isdigit() and len(raw) <= _MAX_DIGITS):
        return None
    return int(raw)


def _at_most_every(
    seconds: float, check: Callable[[], Awaitable[_T]]
) -> Callable[[], Awaitable[_T]]:
    """``check``, its answer reused for ``seconds`` after each call."""
    last: list[tuple[float, _T]] = []

    async def cached() -> _T:
        now = time.monotonic()
        if not last or now - last[0][0] >= seconds:
            last[:] = [(now, await check())]
        return last[0][1]

    return cached


def activity_json(activity: Activity) -> dict[str, Any]:
    return {
        "id": activity.id,
        "type": activity.type,
        "actor": activity.actor,
        "repository": activity.repository,
        "namespace": activity.namespace,
        "tag": activity.tag,
        "digest": activity.digest,
        "time": rfc3339(activity.time),
        "address": activity.address,
        "user_agent": activity.user_agent,
        "synthetic": activity.synthetic,
        "subject": activity.subject,
        "team": activity.team,
        "details": activity.details,
    }


async def activities_csv(
    request: web.Request, store: ActivityStore, where: ActivityFilter, scope: ReadScope
) -> web.StreamResponse:
    """Every activity ``where`` selects as ``scope`` may see it, streamed as CSV a page at a
    time (the API's export and the portal's)."""

    async def pages() -> AsyncIterator[list[list[object]]]:
        before = None
        while True:
            found = await store.search(where, before=before, limit=CSV_PAGE)
            rows = [activity_json(shown) for _, activity in found
                    if (shown := shown_to(activity, scope)) is not None]
            yield [[row[column] for column in CSV_COLUMNS] for row in rows]
            if len(found) < CSV_PAGE:
                return
            before = found[-1][0]

    return await csv_response(request, "activities.csv", CSV_COLUMNS, pages())


async def _activity_filter(request: web.Request) -> ActivityFilter:
    query = request.query
    types = tuple(t for value in query.getall("type", []) for t in value.split(",") if t)
    unknown = sorted(set(types) - set(ACTIVITY_TYPES))
    if unknown:
        raise ApiError(400, "invalid_type",
                       f"unknown activity type {unknown[0]!r}; known: {', '.join(ACTIVITY_TYPES)}")
    return ActivityFilter(
        repository=query.get("repository"),
        namespace=query.get("namespace"),
        actor=query.get("actor"),
        types=types,
        since=_time_param(request, "since"),
        until=_time_param(request, "until"),
        visible=await _visible(request),
    )


def _time_param(request: web.Request, name: str) -> datetime | None:
    raw = request.query.get(name)
    if raw is None:
        return None
    try:
        moment = datetime.fromisoformat(raw)
    except ValueError:
        raise ApiError(400, f"invalid_{name}",
                       f"{name} must be an RFC 3339 time, e.g. 2026-01-31T12:00:00Z") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _matches(activity: Activity, where: ActivityFilter) -> bool:
    """Whether ``activity`` is one ``where`` asks for (what the reader may see: ``shown_to``)."""
    return (
        (where.repository is None or activity.repository == where.repository)
        and (where.namespace is None or activity.namespace == where.namespace)
        and (where.actor is None or activity.actor == where.actor)
        and (not where.types or activity.type in where.types)
        and (where.since is None or activity.time >= where.since)
        and (where.until is None or activity.time < where.until)
    )


async def _visible(request: web.Request) -> frozenset[str] | None:
    """The namespaces the caller may see (None: all). Anonymous callers see public ones."""
    return (await read_scope(request)).readable


def _cursor_value(request: web.Request, kind: type[_T]) -> _T | None:
    if "cursor" not in request.query:
        return None
    (value,) = decode_cursor(request.query["cursor"], 1)
    if not isinstance(value, kind):
        raise ApiError(400, "invalid_cursor", "cursor is not one this API returned")
    return value


def _keyset_page(rows: list[dict[str, Any]], limit: int, key: Any) -> web.Response:
    next_cursor = encode_cursor(key(rows[limit - 1])) if len(rows) > limit else None
    return page(rows[:limit], next_cursor)
