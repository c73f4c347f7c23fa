"""Who may see what on the portal: the same rule as the API (what you may pull), plus the
``[portal] anonymous_explore`` switch for visitors who are not signed in."""

from __future__ import annotations

from aiohttp import web

from services.auth.access import AUTHORITY, IDENTITY
from services.auth.models import Namespace
from services.auth.policy import Principal, ReadScope, Role
from services.auth.sessions import COOKIE, SESSIONS, SignedIn, current
from services.core.errors import NotFound
from services.core.reference import namespace_of
from services.core.web import CONFIG
from services.portal.render import principal_of, require_viewer

__all__ = [
    "Looker",
    "fresh_scope",
    "looker",
    "namespace_record",
    "require_readable",
]


class Looker:
    """The viewer (None: anonymous) and what they may read (``AUTHORITY.read_scope``)."""

    def __init__(self, viewer: SignedIn | None, scope: ReadScope) -> None:
        self.viewer = viewer
        self.principal: Principal = principal_of(viewer)
        self.scope = scope
        self.visible = scope.readable  # the namespaces they may see (None: all)

    def sees(self, namespace: str) -> bool:
        return self.scope.sees(namespace)


async def looker(request: web.Request) -> Looker:
    """Anyone may look when anonymous explore is on; otherwise only the signed-in."""
    viewer = await current(request)
    if viewer is None and not request.app[CONFIG].portal.anonymous_explore:
        viewer = await require_viewer(request)
    return Looker(viewer, await request.app[AUTHORITY].read_scope(principal_of(viewer)))


async def fresh_scope(request: web.Request) -> ReadScope | None:
    """What the viewer may read now, their session checked again; None once it has ended
    (signed out, expired, the account disabled). For responses that outlive a request."""
    secret = request.cookies.get(COOKIE)
    viewer = await request.app[SESSIONS].resume(secret) if secret else None
    if viewer is None:
        return None
    return await request.app[AUTHORITY].read_scope(viewer.principal)


def require_readable(who: Looker, repository: str) -> None:
    """Not found, as for a repository that does not exist: existence is not leaked."""
    if not who.sees(namespace_of(repository)):
        raise NotFound("repository_not_found", f"There is no repository named {repository!r}.")


async def namespace_record(
    request: web.Request, who: Looker, name: str
) -> tuple[Namespace, Role | None]:
    if not who.sees(name):
        raise NotFound("namespace_not_found", f"There is no namespace named {name!r}.")
    records = await request.app[IDENTITY].store.namespaces(who.principal.name, [name])
    if not records:
        raise NotFound("namespace_not_found", f"There is no namespace named {name!r}.")
    return records[0]

