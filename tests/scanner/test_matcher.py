"""OsvMatcher on real-looking OSV records: source packages, backports, unfixed, ecosystems."""

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from services.scanner.adapters.sqlite import SqliteScanStore
from services.scanner.matcher import (
    OsvMatcher,
    Rematcher,
    affected_by,
    inventories_to_rematch,
    inventory_keys,
)
from services.scanner.models import Distribution, Inventory, Package, Severity
from services.scanner.vulndb.adapters.sqlite import SqliteVulnStore
from services.scanner.vulndb.ecosystems import distribution_ecosystem
from services.scanner.vulndb.importer import import_path
from tests.scanner.vulndb.conftest import TESTDATA

BOOKWORM = Distribution("debian", "12", "Debian GNU/Linux 12 (bookworm)", "bookworm")
ALPINE = Distribution("alpine", "3.19.1")
JAMMY = Distribution("ubuntu", "22.04", version_codename="jammy")


def deb(name, version, source=None, source_version=None):
    return Package("deb", name, version, source_name=source, source_version=source_version,
                   layer="sha256:" + "1" * 64)


@pytest.fixture
async def matcher(tmp_path: Path) -> AsyncIterator[OsvMatcher]:
    store = SqliteVulnStore(tmp_path / "vulndb.db")
    await store.open()
    report = await import_path(store, TESTDATA)
    assert report.broken == []
    yield OsvMatcher(store)
    await store.close()


def summary(findings):
    return [(f.vulnerability_id, f.package.name, f.package.version, f.fixed_version,
             f.severity.label) for f in findings]


async def test_debian_by_source_package_and_version(matcher):
    inventory = Inventory(BOOKWORM, (
        deb("libssl3", "3.0.11-1~deb12u1", "openssl"),
        deb("openssl", "3.0.11-1~deb12u1", "openssl"),
        deb("libc6", "2.36-9+deb12u1", "glibc"),
        deb("zlib1g", "1:1.2.13.dfsg-1", "zlib"),
        # binNMU: the binary version differs, the source version is what advisories name.
        deb("bash", "5.2.15-2+b2", "bash", "5.2.15-2"),
        deb("libssl1.1", "1.1.1n-0+deb10u5", "openssl1.1"),
    ))
    assert summary(await matcher.match(inventory)) == [
        ("DEBIAN-CVE-2023-45853", "zlib1g", "1:1.2.13.dfsg-1", "1:1.3.dfsg-1", "Critical"),
        ("DEBIAN-CVE-2023-4911", "libc6", "2.36-9+deb12u1", "2.36-9+deb12u3", "High"),
        # Debian rates it unimportant, above its 9.8 CVSS score: the distribution's word wins.
        ("DEBIAN-CVE-2019-1010022", "libc6", "2.36-9+deb12u1", None, "Negligible"),
        ("DSA-5532-1", "libssl3", "3.0.11-1~deb12u1", "3.0.11-1~deb12u2", "Unknown"),
        ("DSA-5532-1", "openssl", "3.0.11-1~deb12u1", "3.0.11-1~deb12u2", "Unknown"),
    ]


async def test_fixed_versions_are_not_reported(matcher):
    inventory = Inventory(BOOKWORM, (
        deb("libssl3", "3.0.11-1~deb12u2", "openssl"),
        deb("libc6", "2.36-9+deb12u3", "glibc"),
        deb("zlib1g", "1:1.3.dfsg-3", "zlib"),
    ))
    assert summary(await matcher.match(inventory)) == [
        ("DEBIAN-CVE-2019-1010022", "libc6", "2.36-9+deb12u3", None, "Negligible"),
    ]


async def test_another_release_sees_only_its_own_advisories(matcher):
    bullseye = Inventory(Distribution("debian", "11"), (deb("libc6", "2.31-13+deb11u7", "glibc"),))
    assert summary(await matcher.match(bullseye)) == [
        ("DEBIAN-CVE-2023-4911", "libc6", "2.31-13+deb11u7", None, "Unknown"),
    ]


async def test_alpine_by_origin(matcher):
    inventory = Inventory(ALPINE, (
        Package("apk", "libcrypto3", "3.1.4-r0", source_name="openssl"),
        Package("apk", "busybox", "1.36.1-r15", source_name="busybox"),
        Package("apk", "ssl_client", "1.36.1-r16", source_name="busybox"),
        # A deb record in an Alpine image is not matched against Alpine's data.
        deb("openssl", "3.1.4-r0"),
    ))
    assert summary(await matcher.match(inventory)) == [
        ("ALPINE-CVE-2023-42366", "busybox", "1.36.1-r15", "1.36.1-r16", "Medium"),
        ("ALPINE-CVE-2023-5678", "libcrypto3", "3.1.4-r0", "3.1.4-r1", "Medium"),
    ]


async def test_ubuntu_priority(matcher):
    inventory = Inventory(JAMMY, (deb("libcurl4", "7.81.0-1ubuntu1.15", "curl"),))
    assert summary(await matcher.match(inventory)) == [
        ("UBUNTU-CVE-2024-2398", "libcurl4", "7.81.0-1ubuntu1.15", "7.81.0-1ubuntu1.16", "Medium"),
    ]


async def test_language_packages_whatever_the_distribution(matcher):
    inventory = Inventory(None, (
        Package("pypi", "Requests", "2.31.0"),  # PEP 503: advisories say "requests"
        Package("pypi", "urllib3", "2.0.4"),  # listed in `versions` only (GIT range)
        Package("pypi", "urllib3", "2.0.7"),
        Package("npm", "lodash", "4.17.15", path="app/node_modules/lodash/package.json"),
        Package("npm", "lodash", "4.17.21", path="app/node_modules/x/node_modules/lodash/p.json"),
    ))
    findings = await matcher.match(inventory)
    assert summary(findings) == [
        ("GHSA-35jh-r3h4-6jhm", "lodash", "4.17.15", "4.17.21", "High"),
        ("GHSA-p6mc-m468-83gw", "lodash", "4.17.15", None, "High"),
        ("GHSA-9wx4-h78v-vm56", "Requests", "2.31.0", "2.32.0", "Medium"),
        ("PYSEC-2023-212", "urllib3", "2.0.4", None, "Unknown"),
    ]
    assert findings[2].aliases == ("CVE-2024-35195",)
    assert findings[2].summary.startswith("Requests `Session` object")


async def test_an_empty_inventory(matcher):
    assert await matcher.match(Inventory(BOOKWORM, ())) == []
    assert await matcher.match(Inventory(Distribution("arch", ""), (deb("x", "1"),))) == []


def ranges(*events, kind="ECOSYSTEM"):
    return [[kind, [list(event) for event in events]]]


@pytest.mark.parametrize(("stored", "versions", "installed", "expected"), [
    # introduced 0 … fixed
    (ranges(("introduced", "0"), ("fixed", "1.2-1")), [], "1.1-1", (True, "1.2-1")),
    (ranges(("introduced", "0"), ("fixed", "1.2-1")), [], "1.2-1", (False, None)),
    (ranges(("introduced", "0"), ("fixed", "1.2-1")), [], "1.2-1~bpo1", (True, "1.2-1")),
    # several intervals in one range
    (ranges(("introduced", "1.0"), ("fixed", "1.2"), ("introduced", "2.0"), ("fixed", "2.1")),
     [], "1.5", (False, None)),
    (ranges(("introduced", "1.0"), ("fixed", "1.2"), ("introduced", "2.0"), ("fixed", "2.1")),
     [], "2.0", (True, "2.1")),
    (ranges(("introduced", "1.0"), ("fixed", "1.2")), [], "0.9", (False, None)),
    # unfixed
    (ranges(("introduced", "0")), [], "99:9", (True, None)),
    # last_affected: that version is affected, the next is not, and there is no known fix
    (ranges(("introduced", "0"), ("last_affected", "1.4-2")), [], "1.4-2", (True, None)),
    (ranges(("introduced", "0"), ("last_affected", "1.4-2")), [], "1.4-2+deb12u1", (False, None)),
    # limit bounds the range
    (ranges(("introduced", "0"), ("limit", "2.0")), [], "1.9", (True, None)),
    (ranges(("introduced", "0"), ("limit", "2.0")), [], "2.0", (False, None)),
    (ranges(("introduced", "0"), ("limit", "*")), [], "5.0", (True, None)),
    # the versions list counts on its own, and the nearest fix above is still reported
    ([], ["1.0-1", "1.0-2"], "1.0-2", (True, None)),
    ([], ["1.0-1"], "1.0-2", (False, None)),
    (ranges(("introduced", "2.0"), ("fixed", "2.1")), ["1.0-2"], "1.0-2", (True, "2.1")),
])
def test_affected_by(stored, versions, installed, expected):
    assert affected_by(stored, versions, "dpkg", installed) == expected


def test_semver_ranges_compare_as_semver_whatever_the_ecosystem():
    stored = ranges(("introduced", "0"), ("fixed", "1.0.0"), kind="SEMVER")
    assert affected_by(stored, [], "pep440", "1.0.0-rc.1") == (True, "1.0.0")


@pytest.mark.parametrize(("distribution", "ecosystem"), [
    (BOOKWORM, "Debian:12"),
    (Distribution("debian", "12.5"), "Debian:12"),
    (JAMMY, "Ubuntu:22.04:LTS"),
    (Distribution("ubuntu", "23.10"), "Ubuntu:23.10"),
    (Distribution("ubuntu", "21.04"), "Ubuntu:21.04"),
    (ALPINE, "Alpine:v3.19"),
    (Distribution("rocky", "9.3"), "Rocky Linux:9"),
    (Distribution("debian", ""), None),  # sid/trixie without VERSION_ID
    (Distribution("arch", ""), None),
])
def test_distribution_ecosystem(distribution, ecosystem):
    assert distribution_ecosystem(distribution) == ecosystem


def test_which_inventories_to_rematch():
    debian = Inventory(BOOKWORM, (deb("libssl3", "3.0.11-1~deb12u1", "openssl"),))
    python = Inventory(None, (Package("pypi", "Requests", "2.31.0"),))
    assert inventory_keys(debian) == {("Debian:12", "openssl")}
    inventories = [("sha256:d", debian), ("sha256:p", python)]
    assert inventories_to_rematch({("Debian:12", "openssl")}, inventories) == ["sha256:d"]
    assert inventories_to_rematch({("PyPI", "requests")}, inventories) == ["sha256:p"]
    assert inventories_to_rematch({("Debian:11", "openssl")}, inventories) == []


def test_severity_order():
    assert max(Severity) is Severity.CRITICAL


async def test_an_unreadable_installed_version_is_skipped_and_logged_once(matcher, caplog):
    inventory = Inventory(None, (Package("pypi", "requests", "not a version!"),
                                 Package("pypi", "requests", "2.31.0")))
    findings = await matcher.match(inventory)
    assert [(f.vulnerability_id, f.package.version) for f in findings] == [
        ("GHSA-9wx4-h78v-vm56", "2.31.0")]
    warnings = [r for r in caplog.records
                if r.getMessage() == "installed version cannot be compared"]
    assert len(warnings) == 1


async def test_rematching_after_an_import_touches_only_the_images_concerned(tmp_path):
    scans = SqliteScanStore(tmp_path / "scans.db")
    vulns = SqliteVulnStore(tmp_path / "vulndb.db")
    await scans.open()
    await vulns.open()
    try:
        debian = Inventory(BOOKWORM, (deb("libssl3", "3.0.11-1~deb12u1", "openssl"),))
        alpine = Inventory(ALPINE, (Package("apk", "busybox", "1.36.1-r15",
                                            source_name="busybox"),))
        for digest, inventory in (("sha256:" + "d" * 64, debian), ("sha256:" + "a" * 64, alpine)):
            await scans.queue(digest, "team/app")
            await scans.claim()
            await scans.finish(digest, "done", inventory=inventory, findings=[])
        rematcher = Rematcher(scans, vulns, OsvMatcher(vulns))
        assert await rematcher.run() == 0  # nothing imported yet

        source = tmp_path / "osv"
        source.mkdir()
        (source / "DSA-5532-1.json").write_bytes((TESTDATA / "DSA-5532-1.json").read_bytes())
        await import_path(vulns, source)
        assert await rematcher.run() == 1
        record = await scans.get("sha256:" + "d" * 64)
        assert [f.vulnerability_id for f in record.findings] == ["DSA-5532-1"]
        assert await rematcher.run() == 0  # nothing changed since
    finally:
        await vulns.close()
        await scans.close()
