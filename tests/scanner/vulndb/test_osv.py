"""OSV records → advisories (ossf/osv-schema docs/schema.md), good and broken."""

import json
from datetime import UTC, datetime

import pytest

from services.scanner.models import Severity
from services.scanner.vulndb.models import Event, Range
from services.scanner.vulndb.osv import BrokenRecord, matches_filter, parse_record
from tests.scanner.vulndb.conftest import TESTDATA


def load(name: str) -> bytes:
    return (TESTDATA / name).read_bytes()


def test_a_debian_security_advisory():
    advisory = parse_record(load("DSA-5532-1.json"))
    assert advisory is not None
    assert advisory.id == "DSA-5532-1"
    assert advisory.modified == datetime(2023, 10, 25, 8, 13, 41, tzinfo=UTC)
    assert advisory.aliases == ()
    (entry,) = advisory.affected
    assert (entry.ecosystem, entry.name) == ("Debian:12", "openssl")
    assert entry.ranges == (Range("ECOSYSTEM", (Event("introduced", "0"),
                                                Event("fixed", "3.0.11-1~deb12u2"))),)
    assert entry.versions == ("3.0.9-1", "3.0.10-1~deb12u1", "3.0.11-1~deb12u1")
    assert entry.severity is Severity.UNKNOWN


def test_the_filter_keeps_only_the_releases_asked_for():
    advisory = parse_record(load("DEBIAN-CVE-2023-4911.json"), frozenset({"Debian:12"}))
    assert advisory is not None
    assert [entry.ecosystem for entry in advisory.affected] == ["Debian:12"]
    assert parse_record(load("DLA-3600-1.json"), frozenset({"Debian:12"})) is None
    assert parse_record(load("DLA-3600-1.json"), frozenset({"Debian"})) is not None


def test_pypi_names_are_normalised_and_git_ranges_left_out():
    data = json.loads(load("PYSEC-2023-212.json"))
    data["affected"][0]["package"]["name"] = "URLLib3"
    advisory = parse_record(json.dumps(data).encode())
    assert advisory is not None
    (entry,) = advisory.affected
    assert entry.name == "urllib3"
    assert entry.ranges == ()
    assert "2.0.4" in entry.versions


def test_events_are_sorted_by_the_ecosystems_order():
    record = {
        "id": "X-1", "modified": "2024-01-01T00:00:00Z",
        "affected": [{"package": {"ecosystem": "Debian:12", "name": "p"}, "ranges": [
            {"type": "ECOSYSTEM", "events": [{"fixed": "1.10-1"}, {"introduced": "1.9~rc1-1"},
                                             {"introduced": "0"}, {"fixed": "1.2-1"}]}]}],
    }
    advisory = parse_record(json.dumps(record).encode())
    assert advisory is not None
    assert [e.version for e in advisory.affected[0].ranges[0].events] == [
        "0", "1.2-1", "1.9~rc1-1", "1.10-1"]


def test_limits_go_last():
    record = {
        "id": "X-1", "modified": "2024-01-01T00:00:00Z",
        "affected": [{"package": {"ecosystem": "PyPI", "name": "p"}, "ranges": [
            {"type": "ECOSYSTEM", "events": [{"limit": "*"}, {"limit": "1.5"},
                                             {"introduced": "1.0"}, {"fixed": "2.0"}]}]}],
    }
    advisory = parse_record(json.dumps(record).encode())
    assert advisory is not None
    assert [(e.kind, e.version) for e in advisory.affected[0].ranges[0].events] == [
        ("introduced", "1.0"), ("fixed", "2.0"), ("limit", "1.5"), ("limit", "*")]


def test_unknown_ecosystems_are_filtered_not_broken():
    record = {"id": "RUSTSEC-2024-1", "modified": "2024-01-01T00:00:00Z",
              "affected": [{"package": {"ecosystem": "crates.io", "name": "x"}}]}
    assert parse_record(json.dumps(record).encode()) is None


def test_a_withdrawn_record_is_kept_and_marked():
    data = json.loads(load("GHSA-9wx4-h78v-vm56.json"))
    data["withdrawn"] = "2024-07-01T00:00:00Z"
    advisory = parse_record(json.dumps(data).encode())
    assert advisory is not None
    assert advisory.withdrawn


def test_matches_filter():
    assert matches_filter("Debian:12", None)
    assert matches_filter("Debian:12", frozenset({"Debian:12"}))
    assert matches_filter("Debian:12", frozenset({"Debian"}))
    assert not matches_filter("Debian:11", frozenset({"Debian:12"}))
    assert not matches_filter("Ubuntu:22.04:LTS", frozenset({"Debian"}))


GOOD = {"id": "X-1", "modified": "2024-01-01T00:00:00Z",
        "affected": [{"package": {"ecosystem": "PyPI", "name": "p"},
                      "ranges": [{"type": "ECOSYSTEM", "events": [{"introduced": "0"}]}]}]}


def _with(**changes):
    record = json.loads(json.dumps(GOOD))
    record.update(changes)
    return json.dumps(record).encode()


def _range(**changes):
    return _with(affected=[{"package": {"ecosystem": "PyPI", "name": "p"},
                            "ranges": [{"type": "ECOSYSTEM", **changes}]}])


@pytest.mark.parametrize(("data", "reason"), [
    (b"{not json", "not JSON"),
    (b"[1, 2]", "not a JSON object"),
    (_with(id=""), "id: missing"),
    (_with(modified="yesterday"), "modified: 'yesterday' is not an RFC 3339 time"),
    (_with(modified=None), "modified: missing"),
    (_with(affected={"package": {}}), "affected: expected a list"),
    (_with(affected=[{"package": {"ecosystem": "PyPI"}}]), r"affected\[0\].package: ecosystem"),
    (_with(aliases="CVE-1"), "aliases: expected a list"),
    (_range(events=[{"introduced": "0", "fixed": "1.0"}]), "expected one of introduced"),
    (_range(events=[{"fixed": "1.0"}]), "no introduced event"),
    (_range(events=[{"introduced": "0"}, {"fixed": "not/a/version"}]),
     "'not/a/version' is not a valid pep440 version"),
    (_range(type="NUMERIC", events=[]), "'NUMERIC' is not ECOSYSTEM, SEMVER or GIT"),
])
def test_broken_records_say_why(data, reason):
    with pytest.raises(BrokenRecord, match=reason):
        parse_record(data)
