"""What the portal's forms change, through IdentityService, the search index and the registry.

Every POST has passed the form-token check (``middleware``) before it gets here. Each handler
reads the form, calls the owning service's module API (which decides what the viewer may do
and audits it), and redirects with a one-time notice; refusals come back as pages that say
what was wrong (``Invalid``/``Forbidden`` from the service) and nothing is changed.
"""

from __future__ import annotations

import json
from datetime import timedelta
from urllib.parse import quote

from aiohttp import web

from services.auth.access import AUTHENTICATOR, AUTHORITY, IDENTITY, client_address, may
from services.auth.scopes import parse_scopes
from services.auth.sessions import SignedIn, stash, take_stashed
from services.core.errors import Forbidden, Invalid, NotFound, Unauthorized
from services.core.http import ApiError
from services.core.reference import is_valid_digest, is_valid_repository, is_valid_tag
from services.core.registry import ManifestNotFound, RegistryClient, RegistryError
from services.core.web import CONFIG
from services.ingest.api import CATALOG_STORE
from services.portal import display
from services.portal.access import looker, require_readable
from services.portal.render import form_fields, redirect, render, require_viewer
from services.search.api import SEARCH_INDEX

__all__ = ["routes"]

routes = web.RouteTableDef()


# --- namespaces ------------------------------------------------------------------------------


@routes.get("/namespaces")
async def namespaces_page(request: web.Request) -> web.Response:
    viewer = await require_viewer(request)
    identity = request.app[IDENTITY]
    roles = await identity.store.roles_of(viewer.user.name)
    teams = sorted(t.name for t in await identity.teams(viewer.principal)
                   if viewer.user.admin or roles.get(t.name) == "owner")
    return await render(request, "namespaces.html", {
        "namespaces": await identity.namespaces(viewer.principal), "teams": teams,
    }, viewer=viewer)


@routes.post("/namespaces")
async def create_namespace(request: web.Request) -> web.StreamResponse:
    viewer = await require_viewer(request)
    form = await form_fields(request)
    namespace = await request.app[IDENTITY].create_namespace(
        viewer.principal, form.get("name", "").strip(), team=form.get("team", ""),
        visibility=form.get("visibility", "private"),  # type: ignore[arg-type]
        description=form.get("description", ""))
    raise redirect(request, f"/n/{namespace.name}", f"Namespace {namespace.name} created.")


@routes.post(r"/n/{namespace:[^/]*}")
async def update_namespace(request: web.Request) -> web.StreamResponse:
    viewer = await require_viewer(request)
    form = await form_fields(request)
    name = request.match_info["namespace"]
    await request.app[IDENTITY].update_namespace(
        viewer.principal, name,
        visibility=form.get("visibility") or None,  # type: ignore[arg-type]
        description=form.get("description", None),
        team=form.get("team") or None)
    raise redirect(request, f"/n/{name}", "Namespace saved.")


# --- teams -----------------------------------------------------------------------------------


@routes.get("/teams")
async def teams_page(request: web.Request) -> web.Response:
    viewer = await require_viewer(request)
    identity = request.app[IDENTITY]
    roles = await identity.store.roles_of(viewer.user.name)
    teams = await identity.teams(viewer.principal)
    return await render(request, "teams.html", {
        "teams": [(team, roles.get(team.name)) for team in teams],
    }, viewer=viewer)


@routes.post("/teams")
async def create_team(request: web.Request) -> web.StreamResponse:
    viewer = await require_viewer(request)
    form = await form_fields(request)
    team = await request.app[IDENTITY].create_team(
        viewer.principal, form.get("name", "").strip(), owner=viewer.user.name,
        description=form.get("description", ""))
    raise redirect(request, f"/teams/{team.name}", f"Team {team.name} created.")


@routes.get("/teams/{team}")
async def team_page(request: web.Request) -> web.Response:
    viewer = await require_viewer(request)
    identity = request.app[IDENTITY]
    team, members = await identity.get_team(viewer.principal, request.match_info["team"])
    role = next((m.role for m in members if m.user == viewer.user.name), None)
    namespaces = [ns for ns in await identity.namespaces(viewer.principal) if ns.team == team.name]
    return await render(request, "team.html", {
        "team": team, "members": members, "namespaces": namespaces,
        "manager": viewer.user.admin or role == "owner",
    }, viewer=viewer)


@routes.post("/teams/{team}/members")
async def set_member(request: web.Request) -> web.StreamResponse:
    viewer = await require_viewer(request)
    form = await form_fields(request)
    team = request.match_info["team"]
    user = form.get("user", "").strip()
    identity = request.app[IDENTITY]
    if form.get("remove"):
        await identity.remove_member(viewer.principal, team, user)
        raise redirect(request, f"/teams/{team}", f"{user} removed from {team}.")
    # Which accounts exist is told only to those who may manage the team; others get the
    # service's refusal below, whatever name they try.
    manager = viewer.user.admin or (
        await identity.store.roles_of(viewer.user.name)).get(team) == "owner"
    if manager and await identity.store.get_user(user) is None:
        raise NotFound("user_not_found", f"There is no account named {user!r}.")
    member = await identity.set_member(viewer.principal, team, user,
                                       form.get("role", "viewer"))  # type: ignore[arg-type]
    raise redirect(request, f"/teams/{team}", f"{member.user} is now {member.role} of {team}.")


# --- application tokens ------------------------------------------------------------------------


def _tokens_page(owner: str, viewer: SignedIn) -> str:
    return "/tokens" if owner == viewer.user.name else f"/tokens?user={quote(owner)}"


@routes.get("/tokens")
async def tokens_page(request: web.Request) -> web.Response:
    viewer = await require_viewer(request)
    owner = request.query.get("user") or viewer.user.name
    tokens = await request.app[IDENTITY].tokens(viewer.principal, owner)
    # A token created a moment ago is shown on this one page view (see create_token).
    created = json.loads(await take_stashed(request) or "null")
    if created is not None and created["owner"] != owner:
        created = None
    response = await render(request, "tokens.html", {
        "owner": owner, "tokens": tokens, "created": created,
    }, viewer=viewer)
    if created is not None:
        response.headers["Cache-Control"] = "no-store"
    return response


@routes.post("/tokens")
async def create_token(request: web.Request) -> web.StreamResponse:
    """POST-redirect-GET: reloading the page that shows the secret must not post again (a
    second token), and the secret must never be in a URL; it waits, sealed, in the session
    (``sessions.stash``) for the next view of the tokens page, which shows it once."""
    viewer = await require_viewer(request)
    form = await form_fields(request)
    owner = form.get("user") or viewer.user.name
    token, secret = await request.app[IDENTITY].create_token(viewer.principal, owner,
                                                             form.get("label", "").strip())
    await stash(request, json.dumps({"owner": owner, "label": token.label, "secret": secret}))
    raise web.HTTPSeeOther(_tokens_page(owner, viewer))


@routes.post("/tokens/revoke")
async def revoke_token(request: web.Request) -> web.StreamResponse:
    viewer = await require_viewer(request)
    form = await form_fields(request)
    owner = form.get("user") or viewer.user.name
    label = form.get("label", "")
    await request.app[IDENTITY].revoke_token(viewer.principal, owner, label)
    raise redirect(request, _tokens_page(owner, viewer), f"Token {label} revoked.")


# --- profile ---------------------------------------------------------------------------------


@routes.get("/profile")
async def profile_page(request: web.Request) -> web.Response:
    viewer = await require_viewer(request)
    profile = await request.app[IDENTITY].profile(viewer.principal)
    return await render(request, "profile.html", {
        "profile": profile, "teams": sorted(profile.teams.items()),
    }, viewer=viewer)


@routes.post("/profile")
async def update_profile(request: web.Request) -> web.StreamResponse:
    viewer = await require_viewer(request)
    form = await form_fields(request)
    password = form.get("password") or None
    if password is not None and password != form.get("password_again"):
        raise Invalid("password_mismatch", "The two passwords differ; type the same one twice.")
    email = form.get("email", "").strip() or None
    await request.app[IDENTITY].update_user(
        viewer.principal, viewer.user.name, email=email, password=password,
        reauthenticated=password is not None and await _reauthenticated(
            request, viewer, form.get("current_password", "")))
    raise redirect(request, "/profile", "Profile saved.")


async def _reauthenticated(request: web.Request, viewer: SignedIn, current_password: str
                           ) -> bool:
    """Whether the viewer signed in a short while ago (``[portal] reauthenticate_seconds``),
    or typed their current password, which is checked as a sign-in is (failures count
    towards the lockout, and towards the client address's failure budget)."""
    window = timedelta(seconds=request.app[CONFIG].portal.reauthenticate_seconds)
    if viewer.signed_in_within(window):
        return True
    if not current_password:
        return False
    try:
        proven = await request.app[AUTHENTICATOR].authenticate(
            viewer.user.name, current_password, source=client_address(request))
    except Unauthorized:
        raise Forbidden("wrong_password", "Your current password is not that; nothing was"
                        " changed.") from None
    return proven.credential == "password"


# --- stars ----------------------------------------------------------------------------------


@routes.post(r"/r/{repository:[a-z0-9][a-z0-9._/-]*}/-/star")
async def star(request: web.Request) -> web.StreamResponse:
    """Star or unstar through the search service, which keeps stars with its index."""
    viewer = await require_viewer(request)
    who = await looker(request)
    repository = request.match_info["repository"]
    if not is_valid_repository(repository):
        raise NotFound("repository_not_found", f"There is no repository named {repository!r}.")
    require_readable(who, repository)
    index = request.app.get(SEARCH_INDEX)
    if index is None:
        raise NotFound("stars_unavailable", "Stars need the search service, which is not"
                       " running here.")
    if (await form_fields(request)).get("star") == "1":
        if not await index.star(viewer.user.name, repository):
            raise NotFound("repository_not_found",
                           f"There is no repository named {repository!r} (yet).")
        raise redirect(request, f"/r/{repository}", f"Starred {repository}.")
    await index.unstar(viewer.user.name, repository)
    raise redirect(request, f"/r/{repository}", f"Unstarred {repository}.")


# --- deleting a tag --------------------------------------------------------------------------


@routes.post(r"/r/{repository:[a-z0-9][a-z0-9._/-]*}/-/tags/{tag}/delete")
async def delete_tag(request: web.Request) -> web.StreamResponse:
    """Deletes the manifest the tag points at, by digest (registry 2.8 deletes by digest only).

    The registry is called with a token Dockyard signs for the viewer, granting only what the
    policy allows them (delete, or nothing): the registry's notification then names them.
    """
    viewer = await require_viewer(request)
    who = await looker(request)
    repository, tag = request.match_info["repository"], request.match_info["tag"]
    form = await form_fields(request)
    digest = form.get("digest", "")
    if not is_valid_repository(repository) or not is_valid_tag(tag) or not is_valid_digest(
            digest):
        raise Invalid("invalid_request", "This delete form is incomplete; open the tag again.")
    require_readable(who, repository)
    if not await may(request, viewer.principal, repository, "delete"):
        raise Forbidden("forbidden", f"You may not delete from {repository}: only its"
                        " namespace's owners (and admins) may.")
    current = await request.app[CATALOG_STORE].tag_digests(repository)
    if current.get(tag) != digest:
        raise Invalid("tag_moved", f"{repository}:{tag} no longer points at"
                      f" {display.short_digest(digest)}; nothing was deleted. Look again.")
    authority = request.app[AUTHORITY]

    async def token(scope: str) -> str:
        return (await authority.issue(viewer.principal, parse_scopes([scope]))).token

    config = request.app[CONFIG].registry
    async with RegistryClient(config.url, timeout=config.timeout_seconds,
                              token_provider=token) as registry:
        try:
            await registry.delete_manifest(repository, digest)
        except ManifestNotFound:
            pass  # already gone: the catalog will catch up
        except RegistryError as exc:
            raise ApiError(502, "registry_error",
                           f"The registry refused the delete: {exc}") from None
    gone = [tag, *display.tags_sharing(current, tag)]
    raise redirect(request, f"/r/{repository}", f"Deleted {display.short_digest(digest)}"
                    f" ({', '.join(gone)}). The tag list catches up in a moment.")
