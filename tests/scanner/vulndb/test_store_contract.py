"""The VulnStore contract, beyond what the importer tests cover, on every adapter."""

import json
from datetime import UTC, datetime

from services.scanner.models import Severity
from services.scanner.vulndb.importer import import_path
from services.scanner.vulndb.osv import parse_record
from tests.scanner.vulndb.conftest import TESTDATA

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def advisory(name: str, **changes):
    record = json.loads((TESTDATA / name).read_text())
    record.update(changes)
    parsed = parse_record(json.dumps(record).encode())
    assert parsed is not None
    return parsed


async def test_candidates_by_ecosystem_and_name(store):
    await store.upsert([advisory("GHSA-35jh-r3h4-6jhm.json"), advisory("DSA-5532-1.json")], T0)
    found = await store.candidates([("npm", "lodash"), ("Debian:12", "openssl"),
                                    ("Debian:11", "openssl"), ("PyPI", "lodash")])
    assert sorted((c.advisory, c.ecosystem, c.name) for c in found) == [
        ("DSA-5532-1", "Debian:12", "openssl"),
        ("GHSA-35jh-r3h4-6jhm", "npm", "lodash"),
    ]
    lodash = next(c for c in found if c.name == "lodash")
    assert lodash.aliases == ("CVE-2021-23337",)
    assert lodash.severity is Severity.HIGH
    assert lodash.ranges == [["SEMVER", [["introduced", "0"], ["fixed", "4.17.21"]]]]
    assert await store.candidates([]) == []


async def test_a_withdrawn_advisory_matches_nothing_but_stays_known(store):
    await store.upsert([advisory("GHSA-9wx4-h78v-vm56.json")], T0)
    withdrawn = advisory("GHSA-9wx4-h78v-vm56.json", modified="2025-01-01T00:00:00Z",
                         withdrawn="2025-01-01T00:00:00Z")
    result = await store.upsert([withdrawn], T0)
    assert result.updated == 1
    assert await store.candidates([("PyPI", "requests")]) == []
    # An older copy imported again does not bring it back.
    assert (await store.upsert([advisory("GHSA-9wx4-h78v-vm56.json")], T0)).unchanged == 1
    assert await store.candidates([("PyPI", "requests")]) == []


async def test_ids_and_aliases(store):
    await import_path(store, TESTDATA)
    assert await store.advisory_ids("CVE-2023-43804") == ["PYSEC-2023-212"]
    assert await store.advisory_ids("GHSA-v845-jxx5-vc9f") == ["PYSEC-2023-212"]
    assert await store.advisory_ids("DSA-5532-1") == ["DSA-5532-1"]
    assert await store.advisory_ids("CVE-0000-0000") == []


async def test_changed_since_moves_forward(store):
    assert await store.changed_since(0) == (frozenset(), 0)
    await store.upsert([advisory("DSA-5532-1.json")], T0)
    keys, first = await store.changed_since(0)
    assert keys == {("Debian:12", "openssl")}
    await store.upsert([advisory("GHSA-35jh-r3h4-6jhm.json")], T0)
    keys, second = await store.changed_since(first)
    assert keys == {("npm", "lodash"), ("npm", "lodash-es")}
    assert second > first
    assert await store.changed_since(second) == (frozenset(), second)
