"""A FAKE of Clair v4's HTTP API, for tests where a real Clair cannot run (it needs PostgreSQL
and its vulnerability feeds; infra/ runs the real one).

It follows quay/clair httptransport/api/v1/openapi.yaml for paths, media types, status codes
and documents, and middleware/auth/httpauth_psk.go for authentication: a Bearer JWT signed
HS256 with the pre-shared key, ``iss`` in the allowed list, ``exp``/``nbf`` checked with 15 s of
leeway; anything else is a 401. Like Clair, indexing really fetches every layer from its
``uri`` with its ``headers`` and checks the blob's digest. What a layer "contains" and which
vulnerabilities affect which package versions are told to the fake by the test
(``contents``, ``vulnerabilities``): it does not scan.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import jwt
from aiohttp import web

__all__ = ["FakeClair", "FakePackage", "FakeVulnerability"]

_DIGEST = re.compile(r"^sha256:[a-f0-9]{64}$")
_LAYER_TYPE = re.compile(r"^application/vnd\.oci\.image\.layer\.v1\.tar(\+(gzip|zstd))?$")
_INTRASERVICE_ISSUER = "clair-intraservice"


@dataclass(frozen=True)
class FakePackage:
    name: str
    version: str
    source: str | None = None
    package_db: str = "var/lib/dpkg/status"


@dataclass(frozen=True)
class FakeVulnerability:
    name: str
    package: str
    affected_version: str
    fixed_in_version: str = ""
    normalized_severity: str = "Unknown"
    description: str = ""


@dataclass
class FakeClair:
    psk: bytes
    issuers: tuple[str, ...] = ("dockyard",)
    state: str = "b1c4e1a8e4f0e2d0"
    # layer digest → the packages "found" in it; package name → its vulnerabilities.
    contents: dict[str, list[FakePackage]] = field(default_factory=dict)
    vulnerabilities: list[FakeVulnerability] = field(default_factory=list)
    # What Dockyard did, for the tests: indexed manifests and each layer fetch's Authorization.
    indexed: list[dict[str, Any]] = field(default_factory=list)
    layer_fetches: list[tuple[str, str | None, int]] = field(default_factory=list)
    rejected: list[str] = field(default_factory=list)
    _reports: dict[str, dict[str, Any]] = field(default_factory=dict)

    def app(self) -> web.Application:
        app = web.Application(middlewares=[self._auth])
        app.router.add_post("/indexer/api/v1/index_report", self._index)
        app.router.add_get("/indexer/api/v1/index_state", self._index_state)
        app.router.add_get("/indexer/api/v1/index_report/{digest}", self._get_index_report)
        app.router.add_get("/matcher/api/v1/vulnerability_report/{digest}", self._report)
        return app

    @web.middleware
    async def _auth(self, request: web.Request, handler: Any) -> web.StreamResponse:
        header = request.headers.get("Authorization", "")
        scheme, _, token = header.partition(" ")
        reason = None
        if scheme.lower() != "bearer" or not token:
            reason = "no bearer token"
        else:
            try:
                claims = jwt.decode(token, self.psk, algorithms=["HS256"], leeway=15,
                                    options={"require": ["iss"], "verify_aud": False})
            except jwt.PyJWTError as exc:
                reason = f"bad token: {exc}"
            else:
                if claims["iss"] not in (_INTRASERVICE_ISSUER, *self.issuers):
                    reason = f"issuer {claims['iss']!r} not allowed"
        if reason is not None:
            self.rejected.append(reason)
            return _error(401, "unauthorized", reason)
        return await handler(request)

    async def _index_state(self, request: web.Request) -> web.StreamResponse:
        etag = f'"{self.state}"'
        if request.headers.get("If-None-Match") == etag:
            return web.Response(status=304, headers={"ETag": etag})
        return web.json_response({"state": self.state}, headers={"ETag": etag},
                                 content_type="application/vnd.clair.index_state.v1+json")

    async def _index(self, request: web.Request) -> web.StreamResponse:
        try:
            manifest = await request.json()
        except ValueError:
            return _error(400, "bad-request", "body is not JSON")
        problem = _manifest_problem(manifest)
        if problem is not None:
            return _error(400, "bad-request", problem)
        self.indexed.append(manifest)
        digest = manifest["hash"]
        error = await self._fetch_layers(manifest.get("layers", []))
        report = self._index_report(digest, manifest.get("layers", []), error)
        if error is None:
            self._reports[digest] = report
        return web.json_response(report, status=201,
                                 headers={"Location": f"/indexer/api/v1/index_report/{digest}"},
                                 content_type="application/vnd.clair.index_report.v1+json")

    async def _fetch_layers(self, layers: list[dict[str, Any]]) -> str | None:
        async with aiohttp.ClientSession() as session:
            for layer in layers:
                headers = {name: ", ".join(values)
                           for name, values in (layer.get("headers") or {}).items()}
                async with session.get(layer["uri"], headers=headers) as response:
                    body = await response.read()
                self.layer_fetches.append(
                    (layer["uri"], headers.get("Authorization"), response.status))
                if response.status != 200:
                    return f"fetching {layer['hash']}: {response.status}"
                if "sha256:" + hashlib.sha256(body).hexdigest() != layer["hash"]:
                    return f"layer {layer['hash']}: digest mismatch"
        return None

    def _index_report(
        self, digest: str, layers: list[dict[str, Any]], error: str | None
    ) -> dict[str, Any]:
        if error is not None:
            return {"manifest_hash": digest, "state": "IndexError", "success": False,
                    "err": error}
        packages: dict[str, Any] = {}
        environments: dict[str, Any] = {}
        for layer in layers:
            for found in self.contents.get(layer["hash"], []):
                package_id = str(len(packages) + 1)
                package: dict[str, Any] = {"id": package_id, "name": found.name,
                                           "version": found.version, "kind": "binary"}
                if found.source:
                    package["source"] = {"id": f"s{package_id}", "name": found.source,
                                         "version": found.version, "kind": "source"}
                packages[package_id] = package
                environments[package_id] = [{"package_db": found.package_db,
                                             "introduced_in": layer["hash"],
                                             "distribution_id": "1"}]
        return {
            "manifest_hash": digest, "state": "IndexFinished", "success": True,
            "packages": packages, "environments": environments,
            "distributions": {"1": {"id": "1", "did": "debian", "name": "Debian GNU/Linux",
                                    "version_id": "12", "version_code_name": "bookworm"}},
        }

    async def _get_index_report(self, request: web.Request) -> web.StreamResponse:
        report = self._reports.get(request.match_info["digest"])
        if report is None:
            return _error(404, "not-found", "manifest not indexed")
        return web.json_response(report, content_type="application/vnd.clair.index_report.v1+json")

    async def _report(self, request: web.Request) -> web.StreamResponse:
        digest = request.match_info["digest"]
        if not _DIGEST.match(digest):
            return _error(400, "bad-request", f"malformed digest {digest!r}")
        index = self._reports.get(digest)
        if index is None:
            return _error(404, "not-found", f"no index report for {digest}")
        vulnerabilities: dict[str, Any] = {}
        by_package: dict[str, list[str]] = {}
        for package_id, package in index["packages"].items():
            for number, vulnerability in enumerate(self.vulnerabilities):
                if (vulnerability.package == package["name"]
                        and vulnerability.affected_version == package["version"]):
                    vulnerability_id = str(1000 + number)
                    vulnerabilities[vulnerability_id] = {
                        "id": vulnerability_id, "updater": "debian/updater",
                        "name": vulnerability.name, "description": vulnerability.description,
                        "fixed_in_version": vulnerability.fixed_in_version,
                        "normalized_severity": vulnerability.normalized_severity,
                        "severity": vulnerability.normalized_severity.lower(),
                        "package": {"id": package_id, "name": package["name"],
                                    "version": "", "kind": "binary"},
                        "arch_op": "equals",
                    }
                    by_package.setdefault(package_id, []).append(vulnerability_id)
        report = {
            "manifest_hash": digest, "packages": index["packages"],
            "distributions": index["distributions"], "environments": index["environments"],
            "vulnerabilities": vulnerabilities, "package_vulnerabilities": by_package,
        }
        return web.json_response(report, status=201,
                                 content_type="application/vnd.clair.vulnerability_report.v1+json")


def _manifest_problem(manifest: object) -> str | None:  # noqa: PLR0911 - one return per rule
    """What makes the body not a Manifest (openapi.yaml components/schemas/manifest, layer)."""
    if not isinstance(manifest, dict) or not _DIGEST.match(str(manifest.get("hash", ""))):
        return "manifest: hash must be a sha256 digest"
    if set(manifest) - {"hash", "layers"}:
        return "manifest: unexpected properties"
    for layer in manifest.get("layers", []):
        if not isinstance(layer, dict) or set(layer) - {"hash", "uri", "headers", "media_type"}:
            return "layer: unexpected properties"
        if not _DIGEST.match(str(layer.get("hash", ""))) or not layer.get("uri"):
            return "layer: hash and uri are required"
        if "media_type" in layer and not _LAYER_TYPE.match(layer["media_type"]):
            return f"layer: media_type {layer['media_type']!r} is not an OCI layer type"
        headers = layer.get("headers", {})
        if not isinstance(headers, dict) or not all(
                isinstance(v, list) and all(isinstance(i, str) for i in v)
                for v in headers.values()):
            return "layer: headers must map names to lists of strings"
    return None


def _error(status: int, code: str, message: str) -> web.Response:
    return web.json_response({"code": code, "message": message}, status=status,
                             content_type="application/vnd.clair.error.v1+json")
