"""Harbor scanner adapter documents (scanner-adapter-openapi-v1.1.yaml), pure."""

from datetime import UTC, datetime

import pytest

from services.core.config import Config, ConfigError
from services.scanner.harbor.client import HarborAdapterClient
from services.scanner.harbor.wire import (
    METADATA,
    REPORT_HARBOR,
    REPORT_V11,
    ScanRequest,
    WireError,
    findings_from_report,
    metadata,
    parse_scan_request,
    report,
)
from services.scanner.models import Finding, Package, Severity

DIGEST = "sha256:" + "a" * 64
GOOD = {"registry": {"url": "https://core.harbor.domain/", "authorization": "Basic cm9ib3Q="},
        "artifact": {"repository": "library/mongo", "digest": DIGEST, "tag": "3.14-xenial",
                     "mime_type": "application/vnd.docker.distribution.manifest.v2+json"}}


def test_parse_scan_request():
    assert parse_scan_request(GOOD) == ScanRequest(
        "https://core.harbor.domain", "Basic cm9ib3Q=", "library/mongo", DIGEST, "3.14-xenial",
        "application/vnd.docker.distribution.manifest.v2+json")


def _with(part, **changes):
    body = {"registry": dict(GOOD["registry"]), "artifact": dict(GOOD["artifact"])}
    body[part].update(changes)
    return body


@pytest.mark.parametrize(("body", "status", "message"), [
    ([], 400, "expected a JSON object"),
    ({"registry": {}}, 400, "registry and artifact must be objects"),
    (_with("registry", url=5), 400, "registry.url must be a string"),
    (_with("registry", url="ftp://x"), 422, "registry.url must be an http"),
    (_with("artifact", repository="../etc"), 422, "not a repository name"),
    (_with("artifact", digest="sha256:short"), 422, "sha256 digest"),
    (_with("artifact", mime_type="application/vnd.oci.image.index.v1+json"), 422, "mime_type"),
])
def test_bad_scan_requests(body, status, message):
    with pytest.raises(WireError, match=message) as caught:
        parse_scan_request(body)
    assert caught.value.status == status


def test_metadata_declares_both_report_types():
    document = metadata(datetime(2026, 1, 2, tzinfo=UTC))
    (capability,) = document["capabilities"]
    assert capability["produces_mime_types"] == [REPORT_V11, REPORT_HARBOR]
    assert "application/vnd.oci.image.manifest.v1+json" in capability["consumes_mime_types"]
    assert document["properties"][
        "harbor.scanner-adapter/vulnerability-database-updated-at"] == "2026-01-02T00:00:00Z"
    assert METADATA.startswith("application/vnd.scanner.adapter.metadata+json")


def test_a_report_reads_back_as_the_same_findings():
    findings = [
        Finding("DSA-5532-1", ("CVE-2023-5363",),
                Package("deb", "libssl3", "3.0.11-1~deb12u1", source_name="openssl",
                        layer="sha256:" + "1" * 64),
                "3.0.11-1~deb12u2", Severity.HIGH, "openssl - security update"),
        Finding("GHSA-p6mc-m468-83gw", (), Package("npm", "lodash", "4.17.15"), None,
                Severity.MEDIUM, "Prototype Pollution"),
    ]
    request = parse_scan_request(GOOD)
    document = report(request, findings, datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC))
    assert document["severity"] == "High"
    assert document["generated_at"] == "2026-01-02T03:04:05Z"
    assert document["artifact"]["digest"] == DIGEST
    assert document["vulnerabilities"][1]["fix_version"] == ""
    assert findings_from_report(document) == findings
    assert report(request, [], datetime(2026, 1, 2, tzinfo=UTC))["severity"] == "Unknown"


def test_reading_another_adapters_report():
    document = {"vulnerabilities": [
        {"id": "CVE-2017-8283", "package": "dpkg", "version": "1.17.27", "fix_version": "1.18.0",
         "severity": "Low", "description": "dpkg-source …\nmore"},
        {"id": "CVE-1", "package": "x", "version": "1", "severity": "Weird"},
        {"id": "", "package": "x", "version": "1"},
        "not an object",
    ]}
    first, second = findings_from_report(document)
    assert (first.vulnerability_id, first.package.kind, first.fixed_version, first.severity,
            first.summary) == ("CVE-2017-8283", "deb", "1.18.0", Severity.LOW, "dpkg-source …")
    assert (second.severity, second.fixed_version) == (Severity.UNKNOWN, None)


def test_the_client_needs_an_adapter_url():
    async def tokens(scope: str) -> str:
        return scope

    config = Config.model_validate({"webhook": {"secret": "s" * 16}})
    with pytest.raises(ConfigError, match=r"harbor\.adapter_url"):
        HarborAdapterClient.from_config(config, tokens)
