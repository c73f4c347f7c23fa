"""Async client for the registry's HTTP API V2 (distribution/distribution docs/spec/api.md).

Dockyard reads the registry (manifests, ``/v2/_catalog``, ``tags/list``) and deletes manifests
by digest; it never moves blobs. When the registry demands token auth it answers 401 with
``WWW-Authenticate: Bearer realm=…,service=…,scope=…`` (docs/spec/auth/token.md); the client
asks its token provider for that scope, retries once, and keeps the token for the next request
of the same kind, asking again only when the registry rejects it.

Every response is read with a cap, streamed, never read whole and then measured: manifests at
4 MiB, as distribution refuses larger ones on push (and 8 MiB would be its config blob limit,
but nothing here reads configs), listings and error bodies at 64 MiB; layer blobs are streamed
to the caller, whose budgets bound them (services/scanner/limits.py). Over the cap the read
stops with ``ResponseTooLarge``, having kept nothing.
"""

from __future__ import annotations

import hashlib
import logging
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Self

import httpx

from services.core.reference import is_valid_digest, is_valid_repository, is_valid_tag

if TYPE_CHECKING:
    from types import TracebackType

__all__ = [
    "MANIFEST_MEDIA_TYPES",
    "Manifest",
    "ManifestNotFound",
    "RegistryClient",
    "RegistryError",
    "RegistryUnreachable",
    "ResponseTooLarge",
    "TokenProvider",
    "parse_bearer_challenge",
]

logger = logging.getLogger("dockyard.registry")

TokenProvider = Callable[[str], Awaitable[str | None]]
"""Given a scope (``repository:team/app:pull``, ``registry:catalog:*``), a bearer token or None."""

# Everything Dockyard can describe. A registry only returns an OCI manifest to a client that
# accepts it (2.8 answers 404 otherwise) and downgrades a manifest list it may not return to a
# schema 1 manifest of one platform, so the list must be complete.
MANIFEST_MEDIA_TYPES = (
    "application/vnd.docker.distribution.manifest.v2+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.oci.artifact.manifest.v1+json",
)
_ACCEPT = ", ".join(MANIFEST_MEDIA_TYPES)

# auth-param of RFC 7235: name=token or name="quoted string".
_AUTH_PARAM = re.compile(r'([A-Za-z][\w-]*)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^\s,"]*))')

_HTTP_UNAUTHORIZED = 401
_HTTP_NOT_FOUND = 404
# distribution's registry/handlers/manifests.go: "maxManifestBodySize = 4 << 20".
MAX_MANIFEST_BYTES = 4 << 20
# A catalog page, a tags list (2.8 sends every tag at once), an error body.
MAX_RESPONSE_BYTES = 64 << 20


class RegistryError(Exception):
    """The registry refused or failed a request.

    ``status`` is the HTTP status (None when no response came back) and ``code`` the first
    error code of the registry's body (``MANIFEST_UNKNOWN``, ``NAME_UNKNOWN``, ``UNAUTHORIZED``
    … from docs/spec/api.md "Errors"), or None when the body carried none.
    """

    def __init__(
        self, message: str, *, status: int | None = None, code: str | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code


class ManifestNotFound(RegistryError):
    """404 on a manifest: no such tag or digest (or no such repository)."""


class RegistryUnreachable(RegistryError):
    """No HTTP response: connection refused, DNS failure or timeout."""


class ResponseTooLarge(RegistryError):
    """The registry's answer is over the size Dockyard reads for its kind."""


@dataclass(frozen=True)
class Manifest:
    """A manifest as the registry served it; ``body`` is the exact bytes its digest covers."""

    digest: str
    media_type: str
    body: bytes

    @property
    def size(self) -> int:
        return len(self.body)


class RegistryClient:
    """One registry, one connection pool; close it with ``aclose()`` or ``async with``."""

    def __init__(
        self,
        base_url: str,
        timeout: float = 10.0,
        *,
        token_provider: TokenProvider | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self._token_provider = token_provider
        # Predicted scope of a request -> the last token that the registry accepted for it.
        self._tokens: dict[str, str] = {}
        self._http = httpx.AsyncClient(
            base_url=self.base_url,
            timeout=timeout,
            headers={"User-Agent": "dockyard"},
        )

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    async def ping(self) -> bool:
        """Whether a registry answers at ``base_url`` (200, or 401 when it wants a token)."""
        try:
            response = await self._http.get("/v2/")
        except httpx.TransportError as exc:
            logger.debug("ping %s: %s", self.base_url, exc)
            return False
        return response.status_code in {200, _HTTP_UNAUTHORIZED}

    async def get_manifest(self, repository: str, reference: str) -> Manifest:
        """The manifest a tag or digest names; ManifestNotFound when there is none."""
        _check_repository(repository)
        is_digest = _check_reference(reference)
        response = await self._send(
            "GET",
            f"/v2/{repository}/manifests/{reference}",
            scope=f"repository:{repository}:pull",
            headers={"Accept": _ACCEPT},
            limit=MAX_MANIFEST_BYTES,
        )
        _raise_for_status(response, not_found=ManifestNotFound)
        body = response.content
        computed = "sha256:" + hashlib.sha256(body).hexdigest()
        digest = response.headers.get("Docker-Content-Digest") or computed
        expected = reference if is_digest else digest
        # The digest is what every other record keys on: never store one the bytes don't match.
        if expected.startswith("sha256:") and expected != computed:
            raise RegistryError(
                f"GET {response.url.path}: body hashes to {computed}, not {expected}",
                status=response.status_code,
                code="DIGEST_INVALID",
            )
        media_type = response.headers.get("Content-Type", "").partition(";")[0].strip()
        return Manifest(digest=expected, media_type=media_type, body=body)

    @asynccontextmanager
    async def blob(
        self, repository: str, digest: str, chunk_size: int = 1 << 20
    ) -> AsyncIterator[AsyncIterator[bytes]]:
        """The blob's bytes as they arrive, for reading a layer without holding it.

        A HEAD first runs the token dance (a streamed GET cannot be resent); the GET follows
        redirects to storage (S3, a CDN), and httpx drops the Authorization header when the
        redirect leaves the registry's origin.
        """
        _check_repository(repository)
        if not is_valid_digest(digest):
            raise ValueError(f"not a digest: {digest!r}")
        scope = f"repository:{repository}:pull"
        url = f"/v2/{repository}/blobs/{digest}"
        _raise_for_status(await self._send("HEAD", url, scope=scope), not_found=ManifestNotFound)
        headers = {}
        if (token := self._tokens.get(scope)) is not None:
            headers["Authorization"] = f"Bearer {token}"
        request = self._http.build_request("GET", url, headers=headers)
        try:
            response = await self._http.send(request, stream=True, follow_redirects=True)
        except httpx.TransportError as exc:
            raise RegistryUnreachable(f"GET {url}: registry unreachable ({exc!r})") from exc
        try:
            if not response.is_success:
                _raise_for_status(await _capped(response, MAX_RESPONSE_BYTES),
                                  not_found=ManifestNotFound)
            yield response.aiter_bytes(chunk_size)
        finally:
            await response.aclose()

    async def catalog(self, page_size: int = 100) -> AsyncIterator[str]:
        """Every repository name, following ``Link: <…>; rel="next"`` page by page."""
        if page_size < 1:
            raise ValueError(f"page_size must be at least 1, not {page_size}")
        url: str | None = f"/v2/_catalog?n={page_size}"
        while url is not None:
            response = await self._send("GET", url, scope="registry:catalog:*")
            _raise_for_status(response)
            for name in _string_list(response, "repositories"):
                yield name
            url = _next_page(response)

    async def tags(self, repository: str) -> list[str]:
        """The repository's tags; empty when the registry does not know the repository.

        Registry 2.8 returns every tag at once; 3.x pages with Link like the catalog.
        """
        _check_repository(repository)
        tags: list[str] = []
        url: str | None = f"/v2/{repository}/tags/list"
        while url is not None:
            response = await self._send("GET", url, scope=f"repository:{repository}:pull")
            if response.status_code == _HTTP_NOT_FOUND and _error_code(response) == "NAME_UNKNOWN":
                return []
            _raise_for_status(response)
            # 2.8 answers {"tags": null} for a repository whose last tag was deleted.
            tags.extend(_string_list(response, "tags"))
            url = _next_page(response)
        return tags

    async def delete_manifest(self, repository: str, digest: str) -> None:
        """Delete a manifest by digest, which also drops every tag pointing at it.

        Registry 2.8 deletes by digest only (a tag answers 400 DIGEST_INVALID); the registry
        must run with ``storage.delete.enabled: true`` or it answers 405 UNSUPPORTED.
        """
        _check_repository(repository)
        if not _check_reference(digest):
            raise ValueError(f"delete_manifest needs a digest (sha256:…), not the tag {digest!r}")
        response = await self._send(
            "DELETE",
            f"/v2/{repository}/manifests/{digest}",
            scope=f"repository:{repository}:delete",
        )
        _raise_for_status(response, not_found=ManifestNotFound)

    async def _send(
        self,
        method: str,
        url: str,
        *,
        scope: str,
        headers: dict[str, str] | None = None,
        limit: int = MAX_RESPONSE_BYTES,
    ) -> httpx.Response:
        """Send, and on a Bearer challenge fetch a token for the demanded scope and resend once.

        ``scope`` is what this request is expected to need; it keys the token cache. The scope
        sent to the provider is the one the registry's challenge names. The body is read up to
        ``limit`` bytes.
        """
        headers = dict(headers or {})
        cached = self._tokens.get(scope)
        if cached is not None:
            headers["Authorization"] = f"Bearer {cached}"
        response = await self._request(method, url, headers, limit)
        if response.status_code != _HTTP_UNAUTHORIZED:
            return response
        self._tokens.pop(scope, None)
        challenge = _bearer_challenge(response)
        if challenge is None:
            return response
        demanded = challenge.get("scope", scope)
        if self._token_provider is None:
            raise RegistryError(
                f"{method} {response.url.path}: the registry demands a bearer token for"
                f" {demanded!r} and this client has no token provider",
                status=_HTTP_UNAUTHORIZED,
                code=_error_code(response),
            )
        token = await self._token_provider(demanded)
        if token is None:
            raise RegistryError(
                f"{method} {response.url.path}: no token granted for {demanded!r}",
                status=_HTTP_UNAUTHORIZED,
                code=_error_code(response),
            )
        logger.debug("retrying %s %s with a token for %s", method, response.url.path, demanded)
        headers["Authorization"] = f"Bearer {token}"
        response = await self._request(method, url, headers, limit)
        if response.status_code == _HTTP_UNAUTHORIZED:
            reason = (_bearer_challenge(response) or {}).get("error", "no reason given")
            raise RegistryError(
                f"{method} {response.url.path}: the registry rejected the token for {demanded!r}"
                f" ({reason}); check that it trusts Dockyard's signing certificate and that"
                " issuer and service match its auth.token settings",
                status=_HTTP_UNAUTHORIZED,
                code=_error_code(response),
            )
        self._tokens[scope] = token
        return response

    async def _request(
        self, method: str, url: str, headers: dict[str, str], limit: int
    ) -> httpx.Response:
        request = self._http.build_request(method, url, headers=headers)
        try:
            streamed = await self._http.send(request, stream=True)
            try:
                response = await _capped(streamed, limit)
            finally:
                await streamed.aclose()
        except httpx.TransportError as exc:
            target = url if "://" in url else f"{self.base_url}{url}"
            raise RegistryUnreachable(
                f"{method} {target}: registry unreachable ({exc!r});"
                " check that it runs and that registry.url points at it",
            ) from exc
        logger.debug("%s %s -> %d", method, response.url, response.status_code)
        return response


async def _capped(response: httpx.Response, limit: int) -> httpx.Response:
    """A streamed response read to its end, refused past ``limit`` bytes (the declared
    Content-Length first, then what actually arrives): the same response, body in memory."""
    declared = response.headers.get("Content-Length", "")
    what = f"{response.request.method} {response.request.url.path}"
    if declared.isdigit() and int(declared) > limit:
        raise ResponseTooLarge(f"{what}: the registry answers {declared} bytes, over the"
                               f" {limit}-byte limit for this read; refused",
                               status=response.status_code)
    pieces, size = [], 0
    async for piece in response.aiter_bytes():
        size += len(piece)
        if size > limit:
            raise ResponseTooLarge(f"{what}: the registry's answer is over the {limit}-byte"
                                   " limit for this read; refused", status=response.status_code)
        pieces.append(piece)
    # Decoded already: the copy must not claim a content encoding it no longer has.
    headers = [(name, value) for name, value in response.headers.multi_items()
               if name.lower() not in {"content-encoding", "content-length"}]
    return httpx.Response(response.status_code, headers=headers, content=b"".join(pieces),
                          request=response.request)


def parse_bearer_challenge(header: str) -> dict[str, str] | None:
    """The auth-params of a ``Bearer`` challenge (realm, service, scope, error), else None."""
    scheme, _, params = header.strip().partition(" ")
    if scheme.lower() != "bearer":
        return None
    # A bare token cannot hold backslashes or quotes, so unescaping it too changes nothing.
    return {
        name.lower(): re.sub(r"\\(.)", r"\1", quoted or bare)
        for name, quoted, bare in _AUTH_PARAM.findall(params)
    }


def _bearer_challenge(response: httpx.Response) -> dict[str, str] | None:
    for header in response.headers.get_list("WWW-Authenticate"):
        challenge = parse_bearer_challenge(header)
        if challenge is not None:
            return challenge
    return None


def _check_repository(repository: str) -> None:
    # Names end up in URL paths: refusing anything outside the grammar also refuses "../".
    if not is_valid_repository(repository):
        raise ValueError(f"not a valid repository name: {repository!r}")


def _check_reference(reference: str) -> bool:
    """True for a digest, False for a tag; ValueError for anything else."""
    if is_valid_digest(reference):
        return True
    if is_valid_tag(reference):
        return False
    raise ValueError(f"not a valid tag or digest: {reference!r}")


def _next_page(response: httpx.Response) -> str | None:
    link = response.links.get("next", {}).get("url")
    if not link:
        return None
    # The Link is relative to the request (docs/spec/api.md "Pagination").
    next_url = str(response.url.join(link))
    if next_url == str(response.url):
        raise RegistryError(
            f"GET {response.url.path}: the next page link points back at the same page",
            status=response.status_code,
        )
    return next_url


def _raise_for_status(
    response: httpx.Response,
    *,
    not_found: type[RegistryError] = RegistryError,
) -> None:
    if response.is_success:
        return
    code = _error_code(response)
    detail = _error_message(response)
    error_class = not_found if response.status_code == _HTTP_NOT_FOUND else RegistryError
    raise error_class(
        f"{response.request.method} {response.url.path}: HTTP {response.status_code}"
        f" {code or response.reason_phrase}{': ' + detail if detail else ''}",
        status=response.status_code,
        code=code,
    )


def _first_error(response: httpx.Response) -> dict[str, Any]:
    """The first entry of ``{"errors": [{"code", "message", "detail"}]}``, or {}."""
    try:
        body = response.json()
    except ValueError:
        return {}
    errors = body.get("errors") if isinstance(body, dict) else None
    if isinstance(errors, list) and errors and isinstance(errors[0], dict):
        return errors[0]
    return {}


def _error_code(response: httpx.Response) -> str | None:
    code = _first_error(response).get("code")
    return code if isinstance(code, str) else None


def _error_message(response: httpx.Response) -> str:
    message = _first_error(response).get("message")
    return message if isinstance(message, str) else ""


def _string_list(response: httpx.Response, key: str) -> list[str]:
    try:
        body = response.json()
    except ValueError:
        body = None
    if not isinstance(body, dict):
        raise RegistryError(
            f"GET {response.url.path}: expected a JSON object, got {response.text[:200]!r}",
            status=response.status_code,
        )
    values = body.get(key) or []
    if not isinstance(values, list) or not all(isinstance(value, str) for value in values):
        raise RegistryError(
            f"GET {response.url.path}: {key!r} is not a list of strings",
            status=response.status_code,
        )
    return values
