"""An existing Harbor scanner adapter (Trivy's, Dockyard's own …) as Dockyard's scanner backend.

Driven as Harbor drives it (scanner-adapter-openapi-v1.1.yaml): ``GET /api/v1/metadata`` once,
to check it consumes the image's manifest type and produces a report type we read;
``POST /api/v1/scan`` with Dockyard's registry URL and ``Authorization: Bearer <pull-only
token>`` for the one repository; then ``GET /api/v1/scan/{id}/report`` until it stops answering
302, waiting ``Refresh-After`` seconds between polls (0.5 to 60, 5 when absent).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

import httpx

from services.core.config import Config, ConfigError
from services.scanner.harbor.wire import (
    REPORT_HARBOR,
    REPORT_V11,
    SCAN_REQUEST,
    findings_from_report,
)
from services.scanner.models import Finding, ImageRef

__all__ = ["AdapterError", "HarborAdapterClient"]

PullTokens = Callable[[str], Awaitable[str]]
DEFAULT_REFRESH = 5.0


class AdapterError(Exception):
    """The adapter could not scan the image; the message says what it answered."""


class HarborAdapterClient:
    """``ports.RemoteScanner`` over a Harbor scanner adapter at ``url`` (without ``/api/v1``)."""

    def __init__(
        self,
        url: str,
        token: str,
        registry_url: str,
        pull_tokens: PullTokens,
        *,
        timeout: float = 600.0,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self._http = httpx.AsyncClient(base_url=url.rstrip("/") + "/api/v1", headers=headers,
                                       timeout=30.0, transport=transport)
        self._registry_url = registry_url.rstrip("/")
        self._pull_tokens = pull_tokens
        self._timeout = timeout
        self._report_type: str | None = None
        self._consumes: frozenset[str] = frozenset()

    @classmethod
    def from_config(cls, config: Config, pull_tokens: PullTokens) -> HarborAdapterClient:
        if not config.harbor.adapter_url:
            raise ConfigError("harbor.adapter_url: the adapter to use when scanner.backend is"
                              " harbor (e.g. http://trivy-adapter:8080)")
        return cls(config.harbor.adapter_url, config.harbor.adapter_token.get_secret_value(),
                   config.registry.url, pull_tokens, timeout=config.harbor.timeout_seconds)

    async def aclose(self) -> None:
        await self._http.aclose()

    async def metadata(self) -> dict[str, Any]:
        response = await self._call("GET", "/metadata")
        document: dict[str, Any] = response.json()
        for capability in document.get("capabilities") or ():
            produces = capability.get("produces_mime_types") or ()
            chosen = next((t for t in (REPORT_V11, REPORT_HARBOR) if t in produces), None)
            if chosen is not None:
                self._report_type = chosen
                self._consumes = frozenset(capability.get("consumes_mime_types") or ())
                return document
        raise AdapterError(f"the adapter produces none of the report types Dockyard reads"
                           f" ({REPORT_V11}, {REPORT_HARBOR})")

    async def scan(self, image: ImageRef) -> list[Finding]:
        if self._report_type is None:
            await self.metadata()
        if image.media_type not in self._consumes:
            raise AdapterError(f"the adapter does not scan {image.media_type} manifests")
        token = await self._pull_tokens(f"repository:{image.repository}:pull")
        request = {
            "registry": {"url": self._registry_url, "authorization": f"Bearer {token}"},
            "artifact": {"repository": image.repository, "digest": image.digest,
                         "tag": image.tag or "", "mime_type": image.media_type},
        }
        accepted = await self._call("POST", "/scan", json=request,
                                    headers={"Content-Type": SCAN_REQUEST})
        identifier = accepted.json().get("id")
        if not isinstance(identifier, str) or not identifier:
            raise AdapterError("the adapter accepted the scan without an id")
        return findings_from_report(await self._report(identifier))

    async def _report(self, identifier: str) -> dict[str, Any]:
        deadline = time.monotonic() + self._timeout
        while True:
            response = await self._call("GET", f"/scan/{identifier}/report",
                                        headers={"Accept": self._report_type or REPORT_V11})
            if response.status_code != 302:  # noqa: PLR2004
                document: dict[str, Any] = response.json()
                return document
            if time.monotonic() >= deadline:
                raise AdapterError(f"no report for scan {identifier} after"
                                   f" {self._timeout:.0f} s")
            await asyncio.sleep(_refresh_after(response.headers.get("Refresh-After")))

    async def _call(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        try:
            response = await self._http.request(method, path, follow_redirects=False, **kwargs)
        except httpx.HTTPError as exc:
            raise AdapterError(f"the adapter at {self._http.base_url} cannot be reached:"
                               f" {exc}") from None
        if response.status_code >= 400:  # noqa: PLR2004
            try:
                message = response.json()["error"]["message"]
            except (ValueError, KeyError, TypeError):
                message = response.text[:200] or response.reason_phrase
            raise AdapterError(f"the adapter answered {response.status_code} to {method}"
                               f" {path}: {message}")
        return response


def _refresh_after(value: str | None) -> float:
    try:
        seconds = float(value) if value is not None else DEFAULT_REFRESH
    except ValueError:
        seconds = DEFAULT_REFRESH
    return min(max(seconds, 0.5), 60.0)
