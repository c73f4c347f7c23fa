"""The Harbor pluggable scanner adapter API's documents (goharbor/pluggable-scanner-spec,
api/spec/scanner-adapter-openapi-v1.1.yaml): pure parsing and building, no transport.

Report types: the spec's ``application/vnd.scanner.adapter.vuln.report.harbor+json;
version=1.0`` and the ``application/vnd.security.vulnerability.report; version=1.1`` that
Harbor's core asks for and adapters such as Trivy's produce; both carry the same
HarborVulnerabilityReport document, so Dockyard produces and reads both.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, get_args

from services.core.times import rfc3339
from services.scanner.models import Finding, Package, PackageKind, Severity

__all__ = [
    "CONSUMES",
    "ERROR",
    "METADATA",
    "REPORT_HARBOR",
    "REPORT_V11",
    "SCAN_REQUEST",
    "SCAN_RESPONSE",
    "ScanRequest",
    "WireError",
    "findings_from_report",
    "metadata",
    "parse_scan_request",
    "report",
]

METADATA = "application/vnd.scanner.adapter.metadata+json; version=1.0"
SCAN_REQUEST = "application/vnd.scanner.adapter.scan.request+json; version=1.0"
SCAN_RESPONSE = "application/vnd.scanner.adapter.scan.response+json; version=1.0"
ERROR = "application/vnd.scanner.adapter.error+json; version=1.0"
REPORT_V11 = "application/vnd.security.vulnerability.report; version=1.1"
REPORT_HARBOR = "application/vnd.scanner.adapter.vuln.report.harbor+json; version=1.0"
CONSUMES = (
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.v2+json",
)
SCANNER = {"name": "Dockyard", "vendor": "Dockyard", "version": "0.1.0"}

_DIGEST = re.compile(r"sha256:[a-f0-9]{64}")
# A repository name as the distribution spec allows it (docs/spec/api.md, "Overview").
_REPOSITORY = re.compile(r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*(?:/[a-z0-9]+(?:(?:[._]|__|-+)"
                         r"[a-z0-9]+)*)*")


class WireError(ValueError):
    """A request Harbor should not have sent: 400 for a wrong shape, 422 for a wrong value."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True, slots=True)
class ScanRequest:
    registry_url: str
    authorization: str  # sent as-is as the registry's Authorization ("Basic …", "Bearer …")
    repository: str
    digest: str
    tag: str
    mime_type: str


def metadata(database_updated_at: datetime | None) -> dict[str, Any]:
    properties = {"harbor.scanner-adapter/scanner-type": "os-package-vulnerability"}
    if database_updated_at is not None:
        properties["harbor.scanner-adapter/vulnerability-database-updated-at"] = rfc3339(
            database_updated_at)
    return {
        "scanner": SCANNER,
        "capabilities": [{"consumes_mime_types": list(CONSUMES),
                          "produces_mime_types": [REPORT_V11, REPORT_HARBOR]}],
        "properties": properties,
    }


def parse_scan_request(body: object) -> ScanRequest:
    if not isinstance(body, Mapping):
        raise WireError(400, "expected a JSON object with registry and artifact")
    registry, artifact = body.get("registry"), body.get("artifact")
    if not isinstance(registry, Mapping) or not isinstance(artifact, Mapping):
        raise WireError(400, "registry and artifact must be objects")
    fields = {
        "registry.url": registry.get("url"),
        "registry.authorization": registry.get("authorization", ""),
        "artifact.repository": artifact.get("repository"),
        "artifact.digest": artifact.get("digest"),
        "artifact.tag": artifact.get("tag", ""),
        "artifact.mime_type": artifact.get("mime_type", CONSUMES[0]),
    }
    for name, value in fields.items():
        if not isinstance(value, str):
            raise WireError(400, f"{name} must be a string")
    url = str(fields["registry.url"])
    if not url.startswith(("http://", "https://")):
        raise WireError(422, "registry.url must be an http(s) URL")
    if not _REPOSITORY.fullmatch(str(fields["artifact.repository"])):
        raise WireError(422, "artifact.repository is not a repository name")
    if not _DIGEST.fullmatch(str(fields["artifact.digest"])):
        raise WireError(422, "artifact.digest must be a sha256 digest")
    if fields["artifact.mime_type"] not in CONSUMES:
        raise WireError(422, f"artifact.mime_type must be one of {', '.join(CONSUMES)}")
    return ScanRequest(url.rstrip("/"), str(fields["registry.authorization"]),
                       str(fields["artifact.repository"]), str(fields["artifact.digest"]),
                       str(fields["artifact.tag"]), str(fields["artifact.mime_type"]))


def report(
    request: ScanRequest, findings: Sequence[Finding], generated_at: datetime
) -> dict[str, Any]:
    """A HarborVulnerabilityReport; ``severity`` is the worst finding's (Unknown if none)."""
    worst = max((f.severity for f in findings), default=Severity.UNKNOWN)
    return {
        "generated_at": rfc3339(generated_at),
        "artifact": {"repository": request.repository, "digest": request.digest,
                     "tag": request.tag, "mime_type": request.mime_type},
        "scanner": SCANNER,
        "severity": worst.label,
        "vulnerabilities": [
            {
                "id": f.vulnerability_id,
                "package": f.package.name,
                "version": f.package.version,
                "fix_version": f.fixed_version or "",
                "severity": f.severity.label,
                "description": f.summary,
                "links": [f"https://osv.dev/vulnerability/{f.vulnerability_id}"],
                "vendor_attributes": {"aliases": list(f.aliases), "kind": f.package.kind,
                                      "layer": f.package.layer,
                                      "source": f.package.source_name or ""},
            }
            for f in findings
        ],
    }


def findings_from_report(document: Mapping[str, Any]) -> list[Finding]:
    """Findings from an adapter's HarborVulnerabilityReport.

    The spec's items do not say what kind of package is affected (dpkg, apk, PyPI …) nor
    which layer brought it; Dockyard's own adapter puts both in ``vendor_attributes``, and
    without them the package is taken as an OS package ("deb") from an unknown layer.
    """
    findings = []
    for item in document.get("vulnerabilities") or ():
        if not isinstance(item, Mapping):
            continue
        identifier, package, version = item.get("id"), item.get("package"), item.get("version")
        if not all(isinstance(v, str) and v for v in (identifier, package, version)):
            continue
        try:
            severity = Severity[str(item.get("severity", "Unknown")).upper()]
        except KeyError:
            severity = Severity.UNKNOWN
        extra = item.get("vendor_attributes")
        extra = extra if isinstance(extra, Mapping) else {}
        kind: PackageKind = extra["kind"] if extra.get("kind") in get_args(PackageKind) else "deb"
        aliases = extra.get("aliases")
        findings.append(Finding(
            vulnerability_id=str(identifier),
            aliases=tuple(a for a in aliases if isinstance(a, str))
            if isinstance(aliases, list) else (),
            package=Package(kind, str(package), str(version),
                            source_name=str(extra.get("source") or "") or None,
                            layer=str(extra.get("layer") or "")),
            fixed_version=item.get("fix_version") or None,
            severity=severity,
            summary=str(item.get("description") or "").strip().split("\n")[0],
        ))
    return findings
