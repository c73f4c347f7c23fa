"""Version ordering per ecosystem, on real version pairs from each ecosystem's archives."""

from __future__ import annotations

import pytest
from debian.debian_support import Version as DebianVersion
from hypothesis import given, settings
from hypothesis import strategies as st

from services.scanner.versions import InvalidVersion, compare, scheme_for, sort_key
from services.scanner.versions.dpkg import dpkg_key

# (scheme, lower, higher): each pair must compare lower < higher, and higher > lower.
ORDERED = [
    # dpkg: epochs beat everything, '~' sorts before the empty string, +debNuM security
    # updates sit above the release, ~bpo backports below the next release.
    ("dpkg", "2.36.1-8", "1:2.0-1"),
    ("dpkg", "2.36.1-8", "2.36.1-8+deb12u1"),
    ("dpkg", "2.36.1-8+deb12u1", "2.36.1-8+deb12u2"),
    ("dpkg", "3.0.11-1~deb12u1", "3.0.11-1"),
    ("dpkg", "3.0.11-1~deb12u2", "3.0.13-1~deb12u1"),
    ("dpkg", "1.0~rc1-1", "1.0-1"),
    ("dpkg", "1.0~~-1", "1.0~-1"),
    ("dpkg", "5.10.0-1~bpo11+1", "5.10.0-1"),
    ("dpkg", "7.88.1-10+deb12u5", "7.88.1-10+deb12u12"),
    ("dpkg", "1.2.13.dfsg-1", "1:1.2.13.dfsg-1"),
    ("dpkg", "2.9.14+dfsg-1.3~deb12u1", "2.9.14+dfsg-1.3~deb12u2"),
    ("dpkg", "1.0-1", "1.0-1+b1"),  # binNMU
    ("dpkg", "1.0", "1.0-0.1"),
    ("dpkg", "1.0a", "1.0+"),  # letters before other characters
    ("dpkg", "9", "10"),
    ("dpkg", "2.35-1", "2.36-9+deb12u4"),
    ("dpkg", "252.22-1~deb12u1", "252.26-1~deb12u2"),
    ("dpkg", "2.2.4-1ubuntu1", "2.2.4-1ubuntu1.1"),
    ("dpkg", "1.1.1f-1ubuntu2.19", "1.1.1f-1ubuntu2.20"),
    # apk: -rN releases, _rc/_pre before the release, _p (patch) after it, letters.
    ("apk", "3.1.4-r5", "3.1.4-r6"),
    ("apk", "1.2.3_rc1-r0", "1.2.3-r0"),
    ("apk", "1.2.3-r0", "1.2.3_p1-r0"),
    ("apk", "1.36.1-r5", "1.36.1-r29"),
    ("apk", "3.1.4-r5", "3.1.4a-r0"),
    ("apk", "9.4_p1-r0", "9.6_p1-r0"),
    ("apk", "2.40.0_pre1-r0", "2.40.0-r0"),
    ("apk", "1.2.3_alpha-r0", "1.2.3_beta-r0"),
    # rpm: epoch:version-release.
    ("rpm", "2.0-1.el8", "1:1.0-1.el8"),
    ("rpm", "1.0-1.el8", "1.0-2.el8"),
    ("rpm", "1.0~rc1-1", "1.0-1"),
    ("rpm", "3.0.7-25.el9", "3.0.7-27.el9_4"),
    ("rpm", "1.0-1.el8", "1.0-1.el8_9.1"),
    # PEP 440: dev < pre < release < post; local versions sort above their public one.
    ("pep440", "2.0.0.dev1", "2.0.0a1"),
    ("pep440", "2.0.0a1", "2.0.0b2"),
    ("pep440", "2.0.0rc1", "2.0.0"),
    ("pep440", "2.0.0", "2.0.0.post1"),
    ("pep440", "2.0.0", "2.0.0+local.1"),
    ("pep440", "1!0.1", "1!1.0") ,
    ("pep440", "2.0", "1!0.1"),
    ("pep440", "2.31.0", "2.32.0"),
    ("pep440", "1.26.18", "1.26.19"),
    # semver (npm, Go): prereleases before the release, numeric identifiers by value.
    ("semver", "1.0.0-alpha", "1.0.0"),
    ("semver", "1.0.0-alpha.1", "1.0.0-alpha.beta"),
    ("semver", "1.0.0-rc.2", "1.0.0-rc.10"),
    ("semver", "4.17.20", "4.17.21"),
    ("semver", "0.9.0", "0.10.0"),
    ("semver", "v1.2.3", "1.10.0"),
    # maven
    ("maven", "2.17.0", "2.17.1"),
    ("maven", "1.0-SNAPSHOT", "1.0"),
    ("maven", "2.0.0-rc1", "2.0.0"),
]

EQUAL = [
    ("dpkg", "1.0", "0:1.0"),
    ("dpkg", "1.0", "1.0-0"),
    ("dpkg", "1.001-1", "1.1-1"),
    ("pep440", "1.0", "1.0.0"),
    ("pep440", "1.0rc1", "1.0-rc.1"),
    ("apk", "1.2.3-r0", "1.2.3-r0"),
    ("rpm", "0:1.0-1", "1.0-1"),
    ("semver", "1.0.0+build.1", "1.0.0+build.2"),  # build metadata has no precedence
]


@pytest.mark.parametrize(("scheme", "lower", "higher"), ORDERED)
def test_ordered_pairs(scheme, lower, higher):
    assert compare(scheme, lower, higher) == -1
    assert compare(scheme, higher, lower) == 1


@pytest.mark.parametrize(("scheme", "left", "right"), EQUAL)
def test_equal_pairs(scheme, left, right):
    assert compare(scheme, left, right) == 0


@pytest.mark.parametrize(("scheme", "text"), [
    ("dpkg", "not a version"),
    ("dpkg", "x:1.0"),  # the epoch is a number
    ("apk", "1.2.3-rX"),
    ("pep440", "1.0-foo-bar"),
    ("semver", "not.semver.at.all"),
])
def test_invalid_versions_are_refused(scheme, text):
    with pytest.raises(InvalidVersion, match="not a valid"):
        sort_key(scheme, text)


@pytest.mark.parametrize(("ecosystem", "scheme"), [
    ("Debian:12", "dpkg"),
    ("Ubuntu:22.04:LTS", "dpkg"),
    ("Alpine:v3.19", "apk"),
    ("PyPI", "pep440"),
    ("npm", "semver"),
    ("Go", "semver"),
    ("Maven", "maven"),
    ("Rocky Linux:9", "rpm"),
    ("crates.io", None),
])
def test_scheme_for(ecosystem, scheme):
    assert scheme_for(ecosystem) == scheme


# Versions shaped like Debian's: digits first, then digits, letters and the characters policy
# allows, with an optional epoch and revision.
_part = st.text(alphabet="0123456789abz.+~", min_size=0, max_size=8)
_upstream = st.builds(lambda d, rest: d + rest, st.sampled_from("0123456789"), _part)
_debian_versions = st.builds(
    lambda epoch, upstream, revision: f"{epoch}{upstream}{revision}",
    st.sampled_from(["", "1:", "2:"]),
    _upstream,
    st.one_of(st.just(""), st.builds(lambda r: "-" + r, st.text("0123456789abu.+~", min_size=1,
                                                                max_size=8))),
)


@settings(max_examples=3000, deadline=None)
@given(_debian_versions, _debian_versions)
def test_dpkg_key_orders_as_python_debian(left, right):
    expected = DebianVersion(left)._compare(DebianVersion(right))
    a, b = dpkg_key(left), dpkg_key(right)
    assert (a > b) - (a < b) == (expected > 0) - (expected < 0)
