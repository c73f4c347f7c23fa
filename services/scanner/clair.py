"""Clair v4 as the scanner backend (``[scanner] backend = "clair"``).

Clair's HTTP API (quay/clair httptransport/api/v1/openapi.yaml):

- ``POST /indexer/api/v1/index_report`` with a Manifest ``{"hash", "layers": [{"hash", "uri",
  "headers", "media_type"}]}`` → 201 IndexReport. Clair fetches every layer itself from
  ``uri`` with ``headers``: Dockyard gives it the registry's blob URL and a **pull-only**
  registry token for that one repository, never its own credentials.
- ``GET /matcher/api/v1/vulnerability_report/{digest}`` → 201 VulnerabilityReport (404 when
  the manifest was not indexed) with ``packages``, ``environments`` (per package: the layer
  that introduced it, the package database), ``vulnerabilities`` (``normalized_severity`` one
  of Unknown … Critical, ``fixed_in_version``) and ``package_vulnerabilities``.
- ``GET /indexer/api/v1/index_state`` → ``{"state"}`` with an ETag. The state changes when
  Clair's scanners change; a manifest indexed under another state is indexed again.

Authentication (Clair's ``auth.psk``, middleware/auth/httpauth_psk.go): every request carries
``Authorization: Bearer <JWT>`` signed HS256 with the base64-decoded pre-shared key, ``iss``
one of Clair's allowed issuers; Clair checks ``exp``/``nbf`` with 15 s of leeway, so tokens
here live one minute and are minted per request.
"""

from __future__ import annotations

import base64
import binascii
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import httpx
import jwt

from services.core.config import Config, ConfigError
from services.scanner.models import Finding, ImageRef, Package, PackageKind, Severity

__all__ = [
    "ClairError",
    "ClairScanner",
    "clair_token",
    "findings_from_report",
    "manifest_request",
]

log = logging.getLogger("dockyard.scanner.clair")

TOKEN_SECONDS = 60
# Registry scope → a token granting exactly that (services.core.web.SERVICE_TOKENS).
PullTokens = Callable[[str], Awaitable[str]]

# Clair's package databases (claircore's scanners) → our package kinds.
_DATABASES: tuple[tuple[str, PackageKind], ...] = (
    ("var/lib/dpkg", "deb"),
    ("lib/apk/db", "apk"),
    ("var/lib/rpm", "rpm"),
    ("usr/lib/sysimage/rpm", "rpm"),
    ("python:", "pypi"),
    ("nodejs:", "npm"),
    ("go:", "go"),
    ("maven:", "maven"),
)


class ClairError(Exception):
    """Clair could not be used; the message says what it answered."""


def clair_token(psk: bytes, issuer: str, now: float) -> str:
    issued = int(now)
    claims = {"iss": issuer, "iat": issued, "nbf": issued, "exp": issued + TOKEN_SECONDS}
    return jwt.encode(claims, psk, algorithm="HS256")


def manifest_request(image: ImageRef, registry_url: str, token: str) -> dict[str, Any]:
    """The Manifest Clair indexes: each layer's blob URL with a pull-only registry token."""
    base = registry_url.rstrip("/")
    return {
        "hash": image.digest,
        "layers": [
            {
                "hash": layer.digest,
                "uri": f"{base}/v2/{image.repository}/blobs/{layer.digest}",
                "headers": {"Authorization": [f"Bearer {token}"]},
                "media_type": _oci_media_type(layer.media_type),
            }
            for layer in image.layers
        ],
    }


def _oci_media_type(media_type: str) -> str:
    # Clair's layer schema admits only the OCI layer types; Docker's gzip layer is the same bytes.
    if media_type == "application/vnd.docker.image.rootfs.diff.tar.gzip":
        return "application/vnd.oci.image.layer.v1.tar+gzip"
    return media_type


def findings_from_report(report: Mapping[str, Any]) -> list[Finding]:
    """Clair's VulnerabilityReport as our findings, worst first, one per package and advisory."""
    packages = _mapping(report.get("packages"))
    environments = _mapping(report.get("environments"))
    vulnerabilities = _mapping(report.get("vulnerabilities"))
    findings = []
    for package_id, vulnerability_ids in _mapping(report.get("package_vulnerabilities")).items():
        package = _package(_mapping(packages.get(package_id)), environments.get(package_id))
        if package is None:
            continue
        for vulnerability_id in vulnerability_ids or ():
            vulnerability = _mapping(vulnerabilities.get(vulnerability_id))
            name = vulnerability.get("name")
            if not isinstance(name, str) or not name:
                continue
            findings.append(Finding(
                vulnerability_id=name,
                aliases=(),
                package=package,
                fixed_version=vulnerability.get("fixed_in_version") or None,
                severity=_severity(vulnerability.get("normalized_severity")),
                summary=(vulnerability.get("description") or "").strip().split("\n")[0],
            ))
    unique = {(f.vulnerability_id, f.package): f for f in findings}
    return sorted(unique.values(), key=lambda f: (-f.severity, f.vulnerability_id,
                                                  f.package.name))


def _package(package: Mapping[str, Any], environments: object) -> Package | None:
    name, version = package.get("name"), package.get("version")
    if not isinstance(name, str) or not isinstance(version, str):
        return None
    environment = environments[0] if isinstance(environments, list) and environments else {}
    database = str(_mapping(environment).get("package_db") or "")
    source = _mapping(package.get("source"))
    kind: PackageKind = next((k for prefix, k in _DATABASES if database.startswith(prefix)),
                             "deb")
    return Package(
        kind=kind,
        name=name,
        version=version,
        source_name=source.get("name") or None,
        source_version=source.get("version") or None,
        path=database,
        layer=str(_mapping(environment).get("introduced_in") or ""),
    )


def _severity(value: object) -> Severity:
    try:
        return Severity[str(value).upper()]
    except KeyError:
        return Severity.UNKNOWN


def _mapping(value: object) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


class ClairScanner:
    """``ports.RemoteScanner`` over Clair v4's indexer and matcher."""

    def __init__(
        self,
        url: str,
        psk: bytes,
        issuer: str,
        registry_url: str,
        pull_tokens: PullTokens,
        *,
        timeout: float = 300.0,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self._psk = psk
        self._issuer = issuer
        self._registry_url = registry_url
        self._pull_tokens = pull_tokens
        self._client = httpx.AsyncClient(base_url=url, timeout=timeout, transport=transport)
        self._state: str | None = None
        self._etag: str | None = None
        # Manifest digest → the index state it was indexed under (this process's memory; after
        # a restart a manifest is posted once more, which Clair answers from its own records).
        self._indexed: dict[str, str] = {}

    @classmethod
    def from_config(cls, config: Config, pull_tokens: PullTokens) -> ClairScanner:
        try:
            psk = base64.b64decode(config.clair.psk.get_secret_value(), validate=True)
        except (binascii.Error, ValueError):
            psk = b""
        if not psk:
            raise ConfigError("clair.psk: expected Clair's auth.psk.key, base64-encoded")
        return cls(config.clair.url, psk, config.clair.issuer,
                   config.clair.registry_url or config.registry.url, pull_tokens,
                   timeout=config.clair.timeout_seconds)

    async def aclose(self) -> None:
        await self._client.aclose()

    async def index_state(self) -> str:
        """Clair's current index state (a 304 to our ETag keeps the one we have)."""
        headers = {"If-None-Match": self._etag} if self._etag and self._state else {}
        response = await self._request("GET", "/indexer/api/v1/index_state", headers=headers)
        if response.status_code == 304 and self._state is not None:  # noqa: PLR2004
            return self._state
        state = response.json().get("state")
        if not isinstance(state, str):
            raise ClairError("Clair's index_state has no state")
        self._state, self._etag = state, response.headers.get("ETag")
        return state

    async def scan(self, image: ImageRef) -> list[Finding]:
        state = await self.index_state()
        if self._indexed.get(image.digest) != state:
            await self._index(image, state)
        response = await self._request(
            "GET", f"/matcher/api/v1/vulnerability_report/{image.digest}", allow={404})
        if response.status_code == 404:  # noqa: PLR2004 - Clair lost it (e.g. a fresh database)
            await self._index(image, state)
            response = await self._request(
                "GET", f"/matcher/api/v1/vulnerability_report/{image.digest}")
        return findings_from_report(response.json())

    async def _index(self, image: ImageRef, state: str) -> None:
        token = await self._pull_tokens(f"repository:{image.repository}:pull")
        body = manifest_request(image, self._registry_url, token)
        response = await self._request("POST", "/indexer/api/v1/index_report", json=body)
        report = response.json()
        if not report.get("success", False):
            raise ClairError(f"Clair could not index {image.digest}:"
                             f" {report.get('err') or report.get('state') or 'no reason given'}")
        self._indexed[image.digest] = state
        log.info("indexed by Clair", extra={"digest": image.digest, "state": state})

    async def _request(
        self, method: str, path: str, *, allow: frozenset[int] | set[int] = frozenset(),
        **kwargs: Any,
    ) -> httpx.Response:
        headers = {"Authorization": f"Bearer {clair_token(self._psk, self._issuer, time.time())}",
                   **kwargs.pop("headers", {})}
        try:
            response = await self._client.request(method, path, headers=headers, **kwargs)
        except httpx.HTTPError as exc:
            raise ClairError(f"Clair at {self._client.base_url} cannot be reached: {exc}") from None
        if response.status_code >= 400 and response.status_code not in allow:  # noqa: PLR2004
            try:
                message = response.json().get("message", "")
            except ValueError:
                message = response.text[:200]
            raise ClairError(f"Clair answered {response.status_code} to {method} {path}:"
                             f" {message or response.reason_phrase}")
        return response
