"""services.ingest.activity.activity_for: which events are activity, and of what type."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from services.auth.policy import ReadScope
from services.ingest.activity import ACTIVITY_TYPES, activity_for, shown_to
from tests.factories import DIGEST_A, OCI_MANIFEST, registry_event

BLOB = "application/octet-stream"

TABLE: list[tuple[str, dict[str, Any], bool, str | None]] = [
    ("push", {"mediaType": OCI_MANIFEST, "digest": DIGEST_A, "tag": "1.0"}, False, "tag.pushed"),
    ("push", {"mediaType": OCI_MANIFEST, "digest": DIGEST_A}, False, None),  # platform child
    ("push", {"mediaType": BLOB, "digest": DIGEST_A}, False, None),
    ("delete", {"tag": "1.0"}, False, "tag.deleted"),
    ("delete", {"digest": DIGEST_A}, False, "manifest.deleted"),
    ("delete", {}, False, "repository.deleted"),
    ("pull", {"mediaType": OCI_MANIFEST, "digest": DIGEST_A, "tag": "1.0"}, False, None),
    ("pull", {"mediaType": OCI_MANIFEST, "digest": DIGEST_A, "tag": "1.0"}, True,
     "manifest.pulled"),
    ("pull", {"mediaType": BLOB, "digest": DIGEST_A}, True, None),
    ("mount", {"mediaType": BLOB, "digest": DIGEST_A, "fromRepository": "a/b"}, True, None),
]


@pytest.mark.parametrize(("action", "target", "record_pulls", "expected"), TABLE)
def test_activity_type(
    action: str, target: dict[str, Any], record_pulls: bool, expected: str | None
) -> None:
    entry = activity_for(registry_event(action, **target), record_pulls=record_pulls)
    assert (entry.type if entry else None) == expected
    assert expected is None or expected in ACTIVITY_TYPES


def test_an_entry_carries_who_what_where_and_when() -> None:
    event = registry_event("push", "team/sub/app", mediaType=OCI_MANIFEST, digest=DIGEST_A,
                           tag="1.0")
    entry = activity_for(event, record_pulls=False)
    assert entry is not None
    assert (entry.id, entry.actor, entry.repository, entry.namespace) == (
        event.id, "alice", "team/sub/app", "team")
    assert (entry.tag, entry.digest, entry.time) == ("1.0", DIGEST_A, event.timestamp)
    assert (entry.address, entry.user_agent, entry.synthetic) == (
        "10.0.0.7:5123", "skopeo/1.9", False)


def test_anonymous_and_global_namespace() -> None:
    entry = activity_for(registry_event("delete", "nginx", actor=None, tag="1"),
                         record_pulls=False)
    assert entry is not None
    assert (entry.actor, entry.namespace) == (None, "")


# shown_to: what a reader gets of an entry -----------------------------------------------------

PUSHED = activity_for(registry_event("push", "crew/app", mediaType=OCI_MANIFEST,
                                     digest=DIGEST_A, tag="1.0"), record_pulls=False)
EVERYTHING = ReadScope(None, None)
READS_CREW = ReadScope(frozenset({"crew"}), frozenset())
MANAGES_CREW = ReadScope(frozenset({"crew"}), frozenset({"crew"}))
READS_OTHERS = ReadScope(frozenset({"others"}), frozenset({"others"}))


@pytest.mark.parametrize(
    ("scope", "shown", "details"),
    [(EVERYTHING, True, True), (MANAGES_CREW, True, True), (READS_CREW, True, False),
     (READS_OTHERS, False, False)],
    ids=["admin", "manager", "reader", "outsider"],
)
def test_addresses_and_user_agents_are_shown_to_managers_only(
    scope: ReadScope, shown: bool, details: bool,
) -> None:
    assert PUSHED is not None
    seen = shown_to(PUSHED, scope)
    assert (seen is not None) is shown
    if seen is not None:
        assert (seen.address is not None, seen.user_agent is not None) == (details, details)
        assert (seen.id, seen.actor, seen.tag) == (PUSHED.id, PUSHED.actor, PUSHED.tag)


def test_admin_only_entries_are_shown_to_admins_only() -> None:
    assert PUSHED is not None
    login = dataclasses.replace(PUSHED, type="user.login", audience="admin")
    assert shown_to(login, EVERYTHING) == login
    assert shown_to(login, MANAGES_CREW) is None
