"""The pure helpers behind the pages: sizes, times, commands, marks, Markdown, scans."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from services.core.errors import Invalid
from services.portal.display import (
    human_size,
    human_time,
    is_signed,
    just_before,
    platform_label,
    pull_command,
    registry_host,
    short_digest,
    tags_sharing,
)
from services.portal.markdown import render_markdown
from services.portal.scans import filter_findings, finding_filter, summary_text
from services.portal.signin import safe_next
from services.scanner.models import Finding, Package, ScanRecord, Severity
from services.scanner.scans import INVENTORY_ONLY

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize(("size", "shown"), [
    (None, "—"), (0, "0 B"), (1023, "1023 B"), (1024, "1.0 KiB"), (1536, "1.5 KiB"),
    (5 * 1024**2, "5.0 MiB"), (3 * 1024**4, "3.0 TiB"), (2048 * 1024**4, "2048.0 TiB"),
])
def test_human_size(size: int | None, shown: str) -> None:
    assert human_size(size) == shown


@pytest.mark.parametrize(("ago", "shown"), [
    (timedelta(seconds=5), "just now"), (timedelta(minutes=1), "1 minute ago"),
    (timedelta(minutes=59), "59 minutes ago"), (timedelta(hours=2), "2 hours ago"),
    (timedelta(days=1), "1 day ago"), (timedelta(days=30), "30 days ago"),
    (timedelta(days=40), "2026-01-20"),
])
def test_human_time(ago: timedelta, shown: str) -> None:
    assert human_time((NOW - ago).isoformat(), NOW) == shown
    assert human_time(None, NOW) == "never"


@pytest.mark.parametrize(("kind", "command"), [
    ("image", "docker pull reg.example:5000/team/app:1.0"),
    (None, "docker pull reg.example:5000/team/app:1.0"),
    ("helm_chart", "helm pull oci://reg.example:5000/team/app --version 1.0"),
])
def test_pull_command(kind: str | None, command: str) -> None:
    assert pull_command(registry_host("http://reg.example:5000"), "team/app", "1.0",
                        kind) == command


def test_short_digest_and_platforms() -> None:
    assert short_digest("sha256:" + "ab" * 32) == "sha256:abababababab"
    assert short_digest(None) == "—"
    assert platform_label({"os": "linux", "architecture": "arm64", "variant": "v8"}) == (
        "linux/arm64/v8")
    assert platform_label({"os": "linux", "architecture": "amd64", "variant": None}) == (
        "linux/amd64")


@pytest.mark.parametrize(("referrers", "signed"), [
    ([], False), ([{"kind": "sbom"}], False), ([{"kind": "sbom"}, {"kind": "signature"}], True),
])
def test_is_signed(referrers: list[dict[str, str]], signed: bool) -> None:
    assert is_signed({"referrers": referrers}) is signed


def test_tags_sharing_a_digest() -> None:
    digests = {"1.0": "sha256:a", "latest": "sha256:a", "stable": "sha256:a", "0.9": "sha256:b"}
    assert tags_sharing(digests, "latest") == ["1.0", "stable"]
    assert tags_sharing(digests, "0.9") == []


@pytest.mark.parametrize("name", ["latest", "v1.0", "a", "0", "A_b-c", "team/app", "x/y-z.1"])
def test_just_before_finds_exactly_the_name(name: str) -> None:
    below = just_before(name)
    others = ["", name[:-1], name + "0", name + "z", name[:-1] + "~", "0", "zzzz", "a-", "a."]
    assert below < name
    # Nothing a tag or repository may be named sorts between the bound and the name.
    assert not [o for o in others if below < o < name and o != name[:-1] + "~"]


@pytest.mark.parametrize(("target", "safe"), [
    ("/teams", "/teams"), ("/r/team/app?x=1", "/r/team/app?x=1"), (None, "/"), ("", "/"),
    ("//evil.example/", "/"), ("https://evil.example/", "/"), ("/\\evil.example", "/"),
    ("javascript:alert(1)", "/"),
    # Browsers drop tabs and newlines from URLs (WHATWG URL parser), so these are "//evil…".
    ("/\t/evil.example", "/"), ("/\n/evil.example", "/"), ("/\r/evil.example", "/"),
    ("/\x00/evil.example", "/"), ("/\x7f", "/"),
])
def test_safe_next_stays_on_the_site(target: str | None, safe: str) -> None:
    assert safe_next(target) == safe


@pytest.mark.parametrize(("markdown", "present", "absent"), [
    ("# Title\n\nSome *text*.", ["<h1>Title</h1>", "<em>text</em>"], []),
    ("<script>alert(1)</script>", ["&lt;script&gt;"], ["<script"]),
    ("[click](javascript:alert(1))", [], ['href="javascript', "<a"]),
    ('<img src=x onerror="alert(1)">', ["&lt;img"], ["<img"]),
    ("[ok](https://example.org)", ['href="https://example.org"', 'rel="noopener noreferrer'],
     []),
    ("[x](data:text/html;base64,PHNjcmlwdD4=)", [], ['href="data', "<a"]),
    ('<a href="x" onclick="alert(1)">y</a>', ["&lt;a href"], ["<a "]),
    ("| a |\n|---|\n| 1 |", ["<table>", "<td>1</td>"], []),
])
def test_markdown_is_rendered_and_inert(markdown: str, present: list[str],
                                        absent: list[str]) -> None:
    html = str(render_markdown(markdown))
    for fragment in present:
        assert fragment in html
    for fragment in absent:
        assert fragment not in html


# scans ------------------------------------------------------------------------------------------


def _finding(vid: str, severity: Severity, fixed: str | None) -> Finding:
    return Finding(vid, (), Package("deb", "openssl", "3.0.1"), fixed, severity)


FINDINGS = [_finding("CVE-1", Severity.LOW, "1.1"), _finding("CVE-2", Severity.CRITICAL, None),
            _finding("CVE-3", Severity.HIGH, "2.0"), _finding("CVE-4", Severity.CRITICAL, "3")]


@pytest.mark.parametrize(("query", "ids"), [
    ({}, ["CVE-2", "CVE-4", "CVE-3", "CVE-1"]),
    ({"severity": "Critical"}, ["CVE-2", "CVE-4"]),
    ({"severity": "Critical", "fixable": "1"}, ["CVE-4"]),
    ({"fixable": "on"}, ["CVE-4", "CVE-3", "CVE-1"]),
    ({"severity": "Medium"}, []),
    ({"severity": ""}, ["CVE-2", "CVE-4", "CVE-3", "CVE-1"]),
])
def test_findings_filter_by_severity_and_fix(query: dict[str, str], ids: list[str]) -> None:
    assert [f.vulnerability_id for f in filter_findings(FINDINGS, finding_filter(query))] == ids


def test_an_unknown_severity_is_refused() -> None:
    with pytest.raises(Invalid, match="severity must be one of Critical, High"):
        finding_filter({"severity": "Apocalyptic"})


@pytest.mark.parametrize(("record", "text"), [
    (None, "not scanned"),
    (ScanRecord("sha256:a", "t/a", "queued", None, 0, 0), "queued"),
    (ScanRecord("sha256:a", "t/a", "failed", "timeout", 0, 0), "failed"),
    (ScanRecord("sha256:a", "t/a", "done", None, 0, 0), "no known vulnerabilities"),
    # Scanned while no vulnerability data was loaded: not the same as none found.
    (ScanRecord("sha256:a", "t/a", "done", INVENTORY_ONLY, 0, 0),
     "not matched: no vulnerability data"),
    (ScanRecord("sha256:a", "t/a", "done", None, 0, 0, None, tuple(FINDINGS)),
     "2 Critical, 1 High, 1 Low"),
])
def test_summary_text(record: ScanRecord | None, text: str) -> None:
    assert summary_text(record) == text
