"""``import_path``: directories and OSV zips; idempotent, ``modified`` wins, broken ones counted."""

import json
import shutil
import zipfile
from datetime import UTC, datetime
from pathlib import Path

import pytest

from services.core.errors import Invalid
from services.scanner.vulndb.importer import import_path
from tests.scanner.vulndb.conftest import TESTDATA

ALL = sorted(p.name for p in TESTDATA.glob("*.json"))


def make_zip(path: Path, members: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return path


async def test_a_directory_imports_every_record(store):
    progress = []
    report = await import_path(store, TESTDATA, progress=lambda done, total: progress.append(
        (done, total)))
    assert (report.read, report.added, report.updated, report.unchanged) == (len(ALL), len(ALL),
                                                                             0, 0)
    assert report.broken == []
    assert progress[-1] == (len(ALL), len(ALL))
    assert ("Debian:12", "openssl") in report.changed
    assert ("npm", "lodash") in report.changed


async def test_importing_again_changes_nothing(store):
    await import_path(store, TESTDATA)
    again = await import_path(store, TESTDATA)
    assert (again.added, again.updated, again.unchanged) == (0, 0, len(ALL))
    assert again.changed == set()
    assert (await store.changed_since(0))[0]  # the first import's changes are still logged


async def test_modified_wins(store, tmp_path):
    source = tmp_path / "osv"
    source.mkdir()
    record = json.loads((TESTDATA / "DSA-5532-1.json").read_text())
    path = source / "DSA-5532-1.json"
    path.write_text(json.dumps(record))
    await import_path(store, source)

    older = {**record, "modified": "2020-01-01T00:00:00Z", "summary": "stale copy"}
    path.write_text(json.dumps(older))
    report = await import_path(store, source)
    assert (report.updated, report.unchanged) == (0, 1)
    (candidate,) = await store.candidates([("Debian:12", "openssl")])
    assert candidate.summary == "openssl - security update"

    newer = {**record, "modified": "2024-01-01T00:00:00Z", "summary": "openssl - regression"}
    newer["affected"][0]["ranges"][0]["events"][1]["fixed"] = "3.0.11-1~deb12u3"
    path.write_text(json.dumps(newer))
    _, position = await store.changed_since(0)
    report = await import_path(store, source)
    assert (report.updated, report.unchanged) == (1, 0)
    (candidate,) = await store.candidates([("Debian:12", "openssl")])
    assert candidate.summary == "openssl - regression"
    assert candidate.ranges == [["ECOSYSTEM", [["introduced", "0"],
                                               ["fixed", "3.0.11-1~deb12u3"]]]]
    assert (await store.changed_since(position))[0] == {("Debian:12", "openssl")}


async def test_an_osv_zip_with_broken_records_imports_the_rest(store, tmp_path):
    members = {name: (TESTDATA / name).read_bytes() for name in ALL}
    members["BROKEN-1.json"] = b'{"id": "BROKEN-1", "modified": '
    members["BROKEN-2.json"] = json.dumps({"id": "BROKEN-2"}).encode()
    members["BROKEN-3.json"] = json.dumps({
        "id": "BROKEN-3", "modified": "2024-01-01T00:00:00Z",
        "affected": [{"package": {"ecosystem": "Debian:12", "name": "x"},
                      "ranges": [{"type": "ECOSYSTEM", "events": [{"introduced": "0"},
                                                                  {"fixed": "x:1"}]}]}],
    }).encode()
    members["README.txt"] = b"not a record"
    archive = make_zip(tmp_path / "all.zip", members)
    report = await import_path(store, archive)
    assert report.read == len(ALL) + 3
    assert report.added == len(ALL)
    assert sorted(report.broken) == [
        ("BROKEN-1.json", "not JSON: unexpected end of data: line 1 column 32 (char 31)"),
        ("BROKEN-2.json", "modified: missing or not a string"),
        ("BROKEN-3.json", "affected[0].ranges[0]: 'x:1' is not a valid dpkg version"),
    ]


async def test_a_corrupt_member_is_reported_not_fatal(store, tmp_path):
    archive = make_zip(tmp_path / "all.zip", {
        "A.json": (TESTDATA / "DSA-5532-1.json").read_bytes(),
        "B.json": (TESTDATA / "DLA-3600-1.json").read_bytes(),
    })
    data = bytearray(archive.read_bytes())
    # Flip a byte inside the first member's compressed data: its CRC no longer matches.
    with zipfile.ZipFile(archive) as z:
        info = z.getinfo("A.json")
    offset = info.header_offset + 30 + len(info.filename) + 10
    data[offset] ^= 0xFF
    archive.write_bytes(bytes(data))
    report = await import_path(store, archive)
    assert report.added == 1
    assert [name for name, _ in report.broken] == ["A.json"]
    assert report.broken[0][1].startswith("cannot be read")


async def test_the_ecosystem_filter(store):
    report = await import_path(store, TESTDATA, ecosystems=frozenset({"Debian:12"}))
    assert report.added == 4  # DSA-5532-1 and three DEBIAN-CVE records
    assert report.filtered == len(ALL) - 4
    assert [s.ecosystem for s in await store.status()] == ["Debian:12"]
    # The same records unfiltered: the other releases and ecosystems are added.
    report = await import_path(store, TESTDATA)
    assert report.updated == 1  # DEBIAN-CVE-2023-4911 gains Debian:11
    assert report.added == len(ALL) - 4


async def test_status_per_ecosystem(store):
    moment = datetime(2026, 5, 1, tzinfo=UTC)
    await import_path(store, TESTDATA, now=lambda: moment)
    status = {s.ecosystem: s for s in await store.status()}
    assert sorted(status) == ["Alpine:v3.18", "Alpine:v3.19", "Debian:10", "Debian:11",
                              "Debian:12", "PyPI", "Ubuntu:22.04:LTS", "npm"]
    assert status["Debian:12"].advisories == 4
    assert status["Debian:12"].newest_modified == datetime(2024, 9, 18, 3, 28, 59, tzinfo=UTC)
    assert status["npm"].advisories == 2
    assert status["PyPI"].imported_at == moment


async def test_not_a_source(store, tmp_path):
    with pytest.raises(Invalid, match="no such file"):
        await import_path(store, tmp_path / "missing")
    (tmp_path / "junk.zip").write_bytes(b"PK junk")
    with pytest.raises(Invalid, match="nor a zip"):
        await import_path(store, tmp_path / "junk.zip")


async def test_nested_directories_as_in_the_osv_bucket(store, tmp_path):
    for ecosystem, name in [("Debian", "DSA-5532-1.json"), ("PyPI", "PYSEC-2023-212.json")]:
        (tmp_path / ecosystem).mkdir()
        shutil.copy(TESTDATA / name, tmp_path / ecosystem / name)
    report = await import_path(store, tmp_path)
    assert report.added == 2


async def test_oversized_records_are_refused_unread(store, tmp_path, monkeypatch):
    monkeypatch.setattr("services.scanner.vulndb.importer.MAX_RECORD_BYTES", 100)
    source = tmp_path / "osv"
    source.mkdir()
    shutil.copy(TESTDATA / "DSA-5532-1.json", source / "DSA-5532-1.json")
    archive = make_zip(tmp_path / "all.zip",
                       {"DSA-5532-1.json": (TESTDATA / "DSA-5532-1.json").read_bytes()})
    for origin in (source, archive):
        report = await import_path(store, origin)
        assert report.added == 0
        (name, reason), = report.broken
        assert name == "DSA-5532-1.json"
        assert "larger than any OSV record" in reason
