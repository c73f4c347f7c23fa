"""The pages anyone may look at: dashboard, explore, namespace, repository, tag, activity.

Thin: each handler finds out who is looking (``access.looker``), reads through the other
services' module APIs (identity, catalog and activity stores, the registry client) and renders
a template. Nothing here writes; the forms post to ``actions.py``.
"""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime
from typing import Any

from aiohttp import web

from services.auth.access import IDENTITY, may
from services.auth.sessions import current
from services.core.errors import Invalid, NotFound
from services.core.reference import is_valid_repository, is_valid_tag, namespace_of
from services.core.registry import RegistryError
from services.core.web import CONFIG, REGISTRY
from services.ingest.activity import ACTIVITY_TYPES, shown_to
from services.ingest.api import (
    ACTIVITY_STORE,
    CATALOG_STORE,
    activities_csv,
    activity_events,
    activity_json,
)
from services.ingest.models import ActivityFilter
from services.ingest.ports import Row
from services.portal import display, scans
from services.portal.access import (
    Looker,
    fresh_scope,
    looker,
    namespace_record,
    require_readable,
)
from services.portal.render import render, require_viewer
from services.search.api import SEARCH_INDEX
from services.search.models import Position
from services.search.query import parse_query

__all__ = ["routes"]

routes = web.RouteTableDef()

PAGE = 50
TAG_PAGE = 100
RECENT_ACTIVITY = 20
# Integers in page links fit SQLite's 64 bits (19 digits); longer ones are forged.
_MAX_DIGITS = 18
_POSITION_FIELDS = 4  # services.search.models.Position


@routes.get("/")
async def dashboard(request: web.Request) -> web.Response:
    viewer = await current(request)
    if viewer is None:
        target = "/explore" if request.app[CONFIG].portal.anonymous_explore else "/login"
        raise web.HTTPSeeOther(target)
    who = await looker(request)
    profile = await request.app[IDENTITY].profile(who.principal)
    found = await request.app[ACTIVITY_STORE].search(
        ActivityFilter(visible=who.visible), before=None, limit=RECENT_ACTIVITY)
    activities = [activity_json(shown) for _, activity in found
                  if (shown := shown_to(activity, who.scope)) is not None]
    index = request.app.get(SEARCH_INDEX)
    starred = None if index is None else [
        row["repository"] for row in await index.starred(
            viewer.user.name, visible=who.visible, after=None, limit=PAGE)]
    return await render(request, "dashboard.html", {
        "starred": starred,
        "teams": sorted(profile.teams.items()),
        "namespaces": profile.namespaces,
        "activities": activities,
    }, viewer=viewer)


@routes.get("/explore")
async def explore(request: web.Request) -> web.Response:
    """Repositories the looker may pull from; ``q`` narrows them to names holding it."""
    who = await looker(request)
    query = request.query.get("q", "").strip().lower()[:100]
    after = request.query.get("after") or None
    rows, next_after = await _find_repositories(request, who, query, after)
    template = "explore_results.html" if request.query.get("partial") else "explore.html"
    return await render(request, template, {
        "query": query, "repositories": rows, "next_after": next_after,
    }, viewer=who.viewer)


async def _find_repositories(
    request: web.Request, who: Looker, query: str, after: str | None
) -> tuple[list[Row], str | None]:
    """A page of repositories and where the next starts (a name, or a search position)."""
    catalog = request.app[CATALOG_STORE]
    visible = who.visible
    if not query:
        rows = await catalog.repositories(namespace=None, after=after, limit=PAGE + 1,
                                          visible=visible)
        return rows[:PAGE], rows[PAGE - 1]["name"] if len(rows) > PAGE else None
    index = request.app.get(SEARCH_INDEX)
    if index is not None:
        hits = await index.search(parse_query(query), visible=visible,
                                  after=_position(after), limit=PAGE + 1)
        names = [item["repository"] for _, item in hits[:PAGE]]
        next_after = ".".join(map(str, hits[PAGE - 1][0])) if len(hits) > PAGE else None
    else:
        # Without the search service: a name match over the catalog's names.
        matching = [name for name in await catalog.repository_names()
                    if query in name and (after is None or name > after)
                    and (visible is None or namespace_of(name) in visible)]
        names = matching[:PAGE]
        next_after = matching[PAGE - 1] if len(matching) > PAGE else None
    rows = [row for row in await asyncio.gather(*(catalog.repository(n) for n in names))
            if row is not None]
    return rows, next_after


def _position(raw: str | None) -> Position | None:
    """A search position from a next-page link (four integers joined by dots)."""
    if raw is None:
        return None
    parts = raw.split(".")
    if len(parts) != _POSITION_FIELDS or not all(
            part.lstrip("-").isascii() and part.lstrip("-").isdigit()
            and len(part) <= _MAX_DIGITS for part in parts):
        raise Invalid("invalid_page", "This page link is broken; search again.")
    return (int(parts[0]), int(parts[1]), int(parts[2]), int(parts[3]))


# ``/n/`` (an empty name) is the global namespace, home of the repositories without a ``/``.
@routes.get(r"/n/{namespace:[^/]*}")
async def namespace_page(request: web.Request) -> web.Response:
    who = await looker(request)
    name = request.match_info["namespace"]
    namespace, role = await namespace_record(request, who, name)
    after = request.query.get("after") or None
    rows = await request.app[CATALOG_STORE].repositories(
        namespace=name, after=after, limit=PAGE + 1, visible=who.visible)
    principal = who.principal
    manager = principal.admin or role == "owner" or (
        namespace.kind == "personal" and namespace.owner == principal.name)
    teams = []
    if manager and namespace.kind == "team" and who.viewer is not None:
        identity = request.app[IDENTITY]
        roles = await identity.store.roles_of(principal.name or "")
        teams = sorted(t.name for t in await identity.teams(principal)
                       if principal.admin or roles.get(t.name) == "owner")
    return await render(request, "namespace.html", {
        "namespace": namespace, "role": role, "manager": manager, "teams": teams,
        "repositories": rows[:PAGE],
        "next_after": rows[PAGE - 1]["name"] if len(rows) > PAGE else None,
    }, viewer=who.viewer)


@routes.get(r"/r/{repository:[a-z0-9][a-z0-9._/-]*}/-/tags/{tag}/delete")
async def confirm_delete(request: web.Request) -> web.Response:
    viewer = await require_viewer(request)
    who = await looker(request)
    repository, tag = _repository_and_tag(request)
    require_readable(who, repository)
    row = await _tag(request, repository, tag)
    digests = await request.app[CATALOG_STORE].tag_digests(repository)
    return await render(request, "delete_tag.html", {
        "repository": repository, "tag": row,
        "sharing": display.tags_sharing(digests, tag),
        "allowed": await may(request, viewer.principal, repository, "delete"),
    }, viewer=viewer)


@routes.get(r"/r/{repository:[a-z0-9][a-z0-9._/-]*}/-/tags/{tag}")
async def tag_page(request: web.Request) -> web.Response:
    who = await looker(request)
    repository, tag = _repository_and_tag(request)
    require_readable(who, repository)
    row = await _tag(request, repository, tag)
    platform = request.query.get("platform")
    manifest, error = await _manifest(request, repository, row["digest"])
    listed = manifest.get("manifests")
    children = [c for c in listed if isinstance(c, dict)] if isinstance(listed, list) else []
    layers = display.layers_of(manifest)
    shown = None
    if platform and any(child.get("digest") == platform for child in children):
        shown = platform
        child, error = await _manifest(request, repository, platform)
        layers = display.layers_of(child)
    host = display.registry_host(request.app[CONFIG].registry.url)
    # Scans are per image manifest: the tag's own, or each platform's of an index.
    targets = [str(c.get("digest")) for c in children] if children else [row["digest"]]
    records = await scans.scan_records(request, targets)
    chosen = scans.finding_filter(request.query)
    focus = shown or (targets[0] if len(targets) == 1 else None)
    record = records.get(focus) if records is not None and focus is not None else None
    return await render(request, "tag.html", {
        "repository": repository, "tag": row, "children": children, "layers": layers,
        "platform": shown, "registry_error": error,
        "scanning": records is not None,
        "scan_summaries": {d: scans.summary_text(r) for d, r in (records or {}).items()},
        "scan": record, "focus": focus,
        "findings": scans.filter_findings(record.findings, chosen) if record else [],
        "severities": scans.SEVERITIES, "chosen": chosen,
        "pull": display.pull_command(host, repository, tag, row.get("kind")),
        "pull_by_digest": f"{host}/{repository}@{row['digest']}",
        "total_size": sum(int(layer.get("size") or 0) for layer in layers),
    }, viewer=who.viewer)


@routes.get(r"/r/{repository:[a-z0-9][a-z0-9._/-]*}")
async def repository_page(request: web.Request) -> web.Response:
    who = await looker(request)
    repository = request.match_info["repository"]
    if not is_valid_repository(repository):
        raise NotFound("repository_not_found", f"There is no repository named {repository!r}.")
    require_readable(who, repository)
    catalog = request.app[CATALOG_STORE]
    repo = await catalog.repository(repository)
    if repo is None:
        raise NotFound("repository_not_found", f"There is no repository named {repository!r}.")
    after = request.query.get("after") or None
    tags = await catalog.tags(repository, after=after, limit=TAG_PAGE + 1)
    host = display.registry_host(request.app[CONFIG].registry.url)
    deletable = who.viewer is not None and await may(request, who.principal, repository, "delete")
    index = request.app.get(SEARCH_INDEX)
    starred = None
    if index is not None and who.viewer is not None:
        found = await index.starred(who.viewer.user.name, visible=None,
                                    after=display.just_before(repository), limit=1)
        starred = bool(found) and found[0]["repository"] == repository
    shown_tags = tags[:TAG_PAGE]
    records = await scans.scan_records(
        request, sorted({t["digest"] for t in shown_tags if t.get("kind") != "index"}))
    return await render(request, "repository.html", {
        "scan_summaries": None if records is None else {
            digest: scans.summary_text(record) for digest, record in records.items()},
        "starred": starred,
        "repository": repo,
        "tags": [{**tag, "pull": display.pull_command(host, repository, tag["name"],
                                                      tag.get("kind"))}
                 for tag in shown_tags],
        "next_after": tags[TAG_PAGE - 1]["name"] if len(tags) > TAG_PAGE else None,
        "deletable": deletable,
        "namespace": namespace_of(repository),
    }, viewer=who.viewer)


@routes.get("/activity")
async def activity_page(request: web.Request) -> web.Response:
    viewer = await require_viewer(request)
    who = await looker(request)
    where = _activity_filter(request, who)
    before = _before(request)
    found = await request.app[ACTIVITY_STORE].search(where, before=before, limit=PAGE + 1)
    next_before = ("{}.{}".format(*found[PAGE - 1][0]) if len(found) > PAGE else None)
    filters = {key: request.query.get(key, "") for key in
               ("repository", "namespace", "actor", "type", "since", "until")}
    return await render(request, "activity.html", {
        "activities": [activity_json(shown) for _, activity in found[:PAGE]
                       if (shown := shown_to(activity, who.scope)) is not None],
        "filters": filters, "types": ACTIVITY_TYPES, "next_before": next_before,
        "csv_query": request.query_string,
    }, viewer=viewer)


@routes.get("/activity.csv")
async def activity_csv(request: web.Request) -> web.StreamResponse:
    await require_viewer(request)
    who = await looker(request)
    return await activities_csv(request, request.app[ACTIVITY_STORE],
                                _activity_filter(request, who), who.scope)


@routes.get("/activity/stream")
async def activity_stream(request: web.Request) -> web.StreamResponse:
    """The dashboard's live feed: server-sent events of activity the viewer may see."""
    await require_viewer(request)
    return await activity_events(request, ActivityFilter(), lambda: fresh_scope(request))


# helpers ------------------------------------------------------------------------------------


def _repository_and_tag(request: web.Request) -> tuple[str, str]:
    repository, tag = request.match_info["repository"], request.match_info["tag"]
    if not is_valid_repository(repository) or not is_valid_tag(tag):
        raise NotFound("tag_not_found", f"There is no tag {tag!r} in {repository!r}.")
    return repository, tag


async def _tag(request: web.Request, repository: str, tag: str) -> Row:
    rows = await request.app[CATALOG_STORE].tags(repository, after=display.just_before(tag),
                                                 limit=1)
    if not rows or rows[0]["name"] != tag:
        raise NotFound("tag_not_found", f"There is no tag {tag!r} in {repository!r}.")
    return rows[0]


async def _manifest(
    request: web.Request, repository: str, digest: str
) -> tuple[dict[str, Any], str | None]:
    """The manifest as the registry serves it, or an empty one and why it could not be read."""
    try:
        manifest = await request.app[REGISTRY].get_manifest(repository, digest)
        body = json.loads(manifest.body)
    except (RegistryError, ValueError) as exc:
        return {}, f"The registry did not give the manifest: {exc}"
    return (body if isinstance(body, dict) else {}), None


def _activity_filter(request: web.Request, who: Looker) -> ActivityFilter:
    query = request.query
    types = tuple(t for t in query.get("type", "").split(",") if t)
    unknown = sorted(set(types) - set(ACTIVITY_TYPES))
    if unknown:
        raise Invalid("invalid_type", f"There is no activity type {unknown[0]!r}.")
    return ActivityFilter(
        repository=query.get("repository") or None,
        namespace=query.get("namespace") or None,
        actor=query.get("actor") or None,
        types=types,
        since=_time(query.get("since"), "since"),
        until=_time(query.get("until"), "until"),
        visible=who.visible,
    )


def _time(raw: str | None, name: str) -> datetime | None:
    if not raw:
        return None
    try:
        moment = datetime.fromisoformat(raw)
    except ValueError:
        raise Invalid(f"invalid_{name}", f"{name} must be a date and time such as"
                      f" 2026-01-31T12:00, not {raw[:40]!r}.") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _before(request: web.Request) -> tuple[int, int] | None:
    raw = request.query.get("before")
    if not raw:
        return None
    time_us, dot, seq = raw.partition(".")
    if not (dot and time_us.isascii() and time_us.isdigit() and seq.isascii() and seq.isdigit()
            and len(time_us) <= _MAX_DIGITS and len(seq) <= _MAX_DIGITS):
        raise Invalid("invalid_page", "This page link is broken; start from the first page.")
    return int(time_us), int(seq)

