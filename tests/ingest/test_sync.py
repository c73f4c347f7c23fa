"""services.ingest.sync.reconcile: the synthetic events that bring the catalog to the registry."""

from __future__ import annotations

import json
from datetime import UTC, datetime

from services.core.schemas import validator
from services.ingest.notifications import EVENT_SCHEMA, RegistryEvent
from services.ingest.sync import RegistryTag, reconcile
from tests.factories import DIGEST_A, DIGEST_B, OCI_MANIFEST

NOW = datetime(2026, 3, 1, tzinfo=UTC)
A = RegistryTag(DIGEST_A, OCI_MANIFEST, 100)
B = RegistryTag(DIGEST_B, OCI_MANIFEST, 200)


def summary(events: list[dict[str, object]]) -> list[tuple[object, ...]]:
    check = validator(EVENT_SCHEMA)
    for event in events:
        check(event)  # what the webhook would accept, and so what consumers may trust
    parsed = [RegistryEvent.from_log_value(json.dumps(e).encode()) for e in events]
    assert all(e.synthetic for e in parsed)
    return [(e.action, e.repository, e.tag, e.digest) for e in parsed]


def test_nothing_to_do_when_they_agree() -> None:
    assert reconcile({"team/app": {"1": A}}, {"team/app": {"1": DIGEST_A}}, NOW) == []


def test_missing_and_moved_tags_become_pushes() -> None:
    events = reconcile({"team/app": {"1": A, "2": B}}, {"team/app": {"1": DIGEST_B}}, NOW)
    assert summary(events) == [
        ("push", "team/app", "1", DIGEST_A),
        ("push", "team/app", "2", DIGEST_B),
    ]
    assert events[0]["target"]["mediaType"] == OCI_MANIFEST


def test_vanished_tags_become_deletes_never_a_wipe() -> None:
    events = reconcile({"team/app": {"1": A}}, {"team/app": {"1": DIGEST_A, "old": DIGEST_B}}, NOW)
    assert summary(events) == [("delete", "team/app", "old", None)]


def test_a_vanished_repository_loses_each_tag_then_itself() -> None:
    events = reconcile({}, {"gone/app": {"a": DIGEST_A, "b": DIGEST_B}}, NOW)
    assert summary(events) == [
        ("delete", "gone/app", "a", None),
        ("delete", "gone/app", "b", None),
        ("delete", "gone/app", None, None),
    ]


def test_every_synthetic_event_has_its_own_id() -> None:
    events = reconcile({"a/b": {"1": A, "2": B}}, {"c/d": {"x": DIGEST_A}}, NOW)
    assert len({e["id"] for e in events}) == len(events)
