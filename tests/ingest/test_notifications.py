"""Registry notification parsing, against golden envelopes in testdata/ (registry 2.8 and 3.x).

Spec: distribution docs/content/about/notifications.md, notifications/event.go and bridge.go.
"""

import json
from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest

from services.ingest.notifications import (
    NotificationError,
    RegistryEvent,
    accept_envelope,
    log_values,
    parse_envelope,
)

TESTDATA = Path(__file__).parent / "testdata"
GOLDEN = sorted(path.name for path in TESTDATA.glob("v[12]-*.json"))

V1 = "application/vnd.docker.distribution.events.v1+json"
V2 = "application/vnd.docker.distribution.events.v2+json"
LIMIT = 1024 * 1024

SHA256_A = "sha256:" + "a" * 64
DELETE = object()


def golden(name: str) -> bytes:
    return (TESTDATA / name).read_bytes()


def parse(body: bytes, content_type: str | None = V1, limit: int = LIMIT) -> list[RegistryEvent]:
    return parse_envelope(body, content_type, max_body_bytes=limit)


def edited(path: str, value: object = DELETE, name: str = "v1-push.json") -> bytes:
    """A golden envelope with the value at ``path`` (``events.0.target.tag``) set or deleted."""
    document = json.loads(golden(name))
    *parents, last = (int(part) if part.isdigit() else part for part in path.split("."))
    node = document
    for part in parents:
        node = node[part]
    if value is DELETE:
        del node[last]
    else:
        node[last] = value
    return json.dumps(document).encode()


def summary(event: RegistryEvent) -> tuple[object, ...]:
    digest = event.digest and event.digest[:18]
    return (event.action, event.repository, event.tag, digest, event.size,
            event.from_repository, event.is_manifest, event.is_blob)  # fmt: skip


# --- golden envelopes --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "content_type", "expected"),
    [
        pytest.param("v1-push.json", V1, [
            ("push", "team/web", None, "sha256:b79606fb3af", 1457, None, False, True),
            ("push", "team/web", None, "sha256:77ea7eee3d8", 3408729, None, False, True),
            ("push", "team/web", "1.4.2", "sha256:05b3abf2579", 528, None, True, False),
        ], id="2.8 blob pushes then manifest push by tag"),
        pytest.param("v2-index-push.json", V2, [
            ("push", "nginx", "1.27-alpine", "sha256:1bc04b5291c", 856, None, True, False),
        ], id="3.x image index push"),
        pytest.param("v1-manifest-delete.json", V1, [
            ("delete", "team/web", None, "sha256:1185f37d33b", None, None, False, False),
            ("delete", "team/web", "1.4.2", None, None, None, False, False),
            ("delete", "team/web", "latest", None, None, None, False, False),
        ], id="2.8 manifest delete followed by its tag deletes"),
        pytest.param("v2-tag-delete.json", V2, [
            ("delete", "nginx", "1.27-alpine", None, None, None, False, False),
        ], id="3.x untag"),
        pytest.param("v1-repository-delete.json", V1, [
            ("delete", "team/old-service", None, None, None, None, False, False),
        ], id="repository delete"),
        pytest.param("v1-pull.json", V1, [
            ("pull", "team/web", "1.4.2", "sha256:05b3abf2579", 528, None, True, False),
            ("pull", "team/web", None, "sha256:77ea7eee3d8", 3408729, None, False, True),
        ], id="anonymous manifest and blob pull"),
        pytest.param("v2-blob-mount.json", V2, [
            ("mount", "team/api", None, "sha256:d4536f25558", 29150423, "library/debian", False,
             True),
        ], id="cross-repository blob mount"),
    ],
)  # fmt: skip
def test_golden_envelope(name, content_type, expected):
    assert [summary(event) for event in parse(golden(name), content_type)] == expected


def test_event_fields():
    body = golden("v1-push.json")
    event = parse(body)[2]

    assert event.id == "c2a8e4f1-5b6d-4c3e-8f7a-9d0b1e2c3f40"
    # Go marshals nanoseconds; Python keeps microseconds.
    assert event.timestamp == datetime(2024, 5, 14, 9, 31, 3, 412009, tzinfo=UTC)
    assert event.media_type == "application/vnd.docker.distribution.manifest.v2+json"
    assert event.digest == "sha256:05b3abf2579a5eb66403cd78be557fd860633a1fe2103c7642030defe32c657f"
    assert event.references == ()
    assert event.actor == "alice"
    assert event.request_addr == "172.18.0.1:50424"
    assert event.request_method == "PUT"
    assert event.request_useragent is not None
    assert event.request_useragent.startswith("docker/24.0.7 ")
    assert event.source_instance == "0d9c0bb6-2f64-4e2e-9a0c-3c8e0a7c1f55"
    assert event.raw == json.loads(body)["events"][2]
    assert event.received_at is None
    assert event.synthetic is False


def test_timestamp_keeps_its_offset():
    (event,) = parse(golden("v1-repository-delete.json"))
    assert event.timestamp.utcoffset() == timedelta(hours=2)
    assert event.timestamp == datetime(2024, 6, 2, 6, 15, 30, tzinfo=UTC)


def test_anonymous_pull_has_no_actor():
    manifest, blob = parse(golden("v1-pull.json"))
    assert manifest.actor is None
    assert blob.actor is None


def test_index_references_are_digests():
    (event,) = parse(golden("v2-index-push.json"), V2)
    assert event.references == (
        "sha256:5861314d7fccb39c2192173240eab44fa35ca66426201ca2acd0630a6258dd51",
        "sha256:f69162950f235e3cdbbad33f1f912d1a504be90d8a37d002c735d6f3e3882265",
    )


@pytest.mark.parametrize(
    ("target_edits", "size"),
    [
        ({"size": DELETE}, 528),  # the deprecated length stands in
        ({"size": DELETE, "length": DELETE}, None),  # Go omits zero sizes
        ({"size": 528.0}, 528),  # JSON has no integer type; 528.0 is an integer in JSON Schema
    ],
)
def test_size(target_edits, size):
    document = json.loads(golden("v1-push.json"))
    target = document["events"][2]["target"]
    for key, value in target_edits.items():
        if value is DELETE:
            del target[key]
        else:
            target[key] = value
    event = parse(json.dumps(document).encode())[2]
    assert event.size == size
    assert type(event.size) in {int, type(None)}


def test_empty_strings_from_go_become_none():
    # RequestRecord's id, method and useragent have no omitempty: the registry sends "".
    body = edited("events.0.request", {"id": "", "method": "", "useragent": ""})
    event = parse(body)[0]
    assert (event.request_method, event.request_useragent, event.request_addr) == (None, None, None)


def test_unknown_fields_are_kept():
    document = json.loads(golden("v2-tag-delete.json"))
    event_in = document["events"][0]
    event_in["x-vendor"] = {"nested": [1, None, True]}
    event_in["target"]["platform"] = {"os": "linux"}
    (event,) = parse(json.dumps(document).encode(), V2)
    assert event.raw["x-vendor"] == {"nested": [1, None, True]}
    stored = json.loads(event.to_log_value(datetime.now(UTC)))
    assert stored["target"]["platform"] == {"os": "linux"}


@pytest.mark.parametrize(
    "content_type",
    [
        V1,
        V2,
        "application/json",
        f"{V1}; charset=utf-8",
        "Application/JSON ; charset=UTF-8",
        f" {V2} ",
    ],
)
def test_accepted_content_types(content_type):
    assert len(parse(golden("v1-push.json"), content_type)) == 3


# --- rejections --------------------------------------------------------------------------------

BAD_ENVELOPES = [
    # transport-level
    pytest.param(golden("v1-push.json"), "text/plain", 415, "unsupported_media_type",
                 "Content-Type 'text/plain' is not", id="wrong content type"),
    pytest.param(golden("v1-push.json"), None, 415, "unsupported_media_type",
                 "Content-Type is missing", id="missing content type"),
    pytest.param(golden("v1-push.json"), "", 415, "unsupported_media_type",
                 "Content-Type is missing", id="empty content type"),
    pytest.param(golden("v1-push.json"), "application/vnd.docker.distribution.events.v3+json",
                 415, "unsupported_media_type", "events.v3+json", id="unknown envelope version"),
    pytest.param(b"{" + b" " * LIMIT + b"}", V1, 413, "body_too_large",
                 f"more than webhook.max_body_bytes ({LIMIT})", id="oversized"),
    pytest.param(b'{"events": [', V1, 400, "malformed_json", "body is not valid JSON",
                 id="truncated JSON"),
    pytest.param(b"", V1, 400, "malformed_json", "body is not valid JSON", id="empty body"),
    pytest.param(b'{"events": NaN}', V1, 400, "malformed_json", "not valid JSON",
                 id="NaN"),
    pytest.param(b'{"events": "\xff"}', V1, 400, "malformed_json", "UTF-8", id="not UTF-8"),
    pytest.param(b"[" * 100_000, V1, 400, "malformed_json", "not valid JSON", id="nested too deep"),
    # envelope
    pytest.param(b"[]", V1, 422, "invalid_envelope", 'body: [] is not of type "object"',
                 id="not an object"),
    pytest.param(b"{}", V1, 422, "invalid_envelope", 'body: "events" is a required property',
                 id="no events"),
    pytest.param(b'{"events": []}', V1, 422, "invalid_envelope",
                 "events: [] has less than 1 item", id="empty events"),
    pytest.param(b'{"events": {}}', V1, 422, "invalid_envelope",
                 'events: {} is not of type "array"', id="events not a list"),
    # required fields and types
    pytest.param(edited("events.0.id"), V1, 422, "invalid_envelope",
                 'events[0]: "id" is a required property', id="missing id"),
    pytest.param(edited("events.0.id", ""), V1, 422, "invalid_envelope",
                 'events[0].id: "" is shorter than 1 character', id="empty id"),
    pytest.param(edited("events.0.id", 42), V1, 422, "invalid_envelope",
                 'events[0].id: 42 is not of type "string"', id="id not a string"),
    pytest.param(edited("events.0.timestamp"), V1, 422, "invalid_envelope",
                 'events[0]: "timestamp" is a required property', id="missing timestamp"),
    pytest.param(edited("events.0.timestamp", "yesterday"), V1, 422, "invalid_envelope",
                 'events[0].timestamp: "yesterday" does not match',
                 id="timestamp not RFC 3339"),
    pytest.param(edited("events.0.timestamp", "2024-05-14T09:31:02"), V1, 422,
                 "invalid_envelope", "events[0].timestamp:", id="timestamp without offset"),
    pytest.param(edited("events.0.timestamp", "2024-05-14 09:31:02Z"), V1, 422,
                 "invalid_envelope", "events[0].timestamp:", id="timestamp with a space"),
    pytest.param(edited("events.0.timestamp", "2024-13-14T09:31:02Z"), V1, 422,
                 "invalid_timestamp", "events[0].timestamp: '2024-13-14T09:31:02Z' is not a valid",
                 id="month 13"),
    pytest.param(edited("events.0.action", "upload"), V1, 422, "invalid_envelope",
                 'events[0].action: "upload" is not one of "push", "pull"', id="unknown action"),
    pytest.param(edited("events.0.target"), V1, 422, "invalid_envelope",
                 'events[0]: "target" is a required property', id="missing target"),
    pytest.param(edited("events.0.target", "team/web"), V1, 422, "invalid_envelope",
                 'events[0].target: "team/web" is not of type "object"', id="target not object"),
    pytest.param(edited("events.0.target.repository"), V1, 422, "invalid_envelope",
                 'events[0].target: "repository" is a required property',
                 id="missing repository"),
    pytest.param(edited("events.0.target.repository", 5), V1, 422, "invalid_envelope",
                 'events[0].target.repository: 5 is not of type "string"',
                 id="repository not a string"),
    pytest.param(edited("events.0.target.size", -1), V1, 422, "invalid_envelope",
                 "events[0].target.size: -1 is less than the minimum of 0", id="negative size"),
    pytest.param(edited("events.0.target.size", "1457"), V1, 422, "invalid_envelope",
                 'events[0].target.size: "1457" is not of type "integer"', id="size as string"),
    pytest.param(edited("events.0.target.size", value=True), V1, 422, "invalid_envelope",
                 'events[0].target.size: true is not of type "integer"', id="size as boolean"),
    pytest.param(edited("events.0.target.length", 1.5), V1, 422, "invalid_envelope",
                 'events[0].target.length: 1.5 is not of type "integer"', id="fractional length"),
    pytest.param(edited("events.0.target.tag", 7), V1, 422, "invalid_envelope",
                 'events[0].target.tag: 7 is not of type "string"', id="tag not a string"),
    pytest.param(edited("events.0.target.digest", "sha256 abc"), V1, 422, "invalid_envelope",
                 'events[0].target.digest: "sha256 abc" does not match', id="digest shape"),
    pytest.param(edited("events.0.target.references", [{"mediaType": "x"}]), V1, 422,
                 "invalid_envelope",
                 'events[0].target.references[0]: "digest" is a required property',
                 id="reference without digest"),
    pytest.param(edited("events.0.target.annotations", {"a": 1}), V1, 422, "invalid_envelope",
                 'events[0].target.annotations.a: 1 is not of type "string"',
                 id="annotation not a string"),
    pytest.param(edited("events.0.request", "PUT"), V1, 422, "invalid_envelope",
                 'events[0].request: "PUT" is not of type "object"', id="request not object"),
    pytest.param(edited("events.0.request.method", 1), V1, 422, "invalid_envelope",
                 'events[0].request.method: 1 is not of type "string"', id="method not a string"),
    pytest.param(edited("events.0.actor.name", 3), V1, 422, "invalid_envelope",
                 'events[0].actor.name: 3 is not of type "string"', id="actor name not a string"),
    pytest.param(edited("events.0.source.instanceID", None), V1, 422, "invalid_envelope",
                 'events[0].source.instanceID: null is not of type "string"',
                 id="instance id null"),
    pytest.param(edited("events.0.synthetic", value=True), V1, 422, "invalid_envelope",
                 "events[0].synthetic: true is not allowed here",
                 id="registry claims synthetic"),
    pytest.param(edited("events.0.received_at", "2024-05-14T09:31:02Z"), V1, 422,
                 "invalid_envelope",
                 'events[0].received_at: "2024-05-14T09:31:02Z" is not allowed here',
                 id="registry sets received_at"),
    # reference grammar
    pytest.param(edited("events.0.target.repository", "Bad/Name"), V1, 422, "invalid_repository",
                 "events[0].target.repository: 'Bad/Name' is not a valid repository name",
                 id="uppercase repository"),
    pytest.param(edited("events.0.target.repository", "team/../web"), V1, 422,
                 "invalid_repository", "events[0].target.repository: 'team/../web'",
                 id="dot-dot in repository"),
    pytest.param(edited("events.0.target.repository", "/team/web"), V1, 422, "invalid_repository",
                 "events[0].target.repository: '/team/web'", id="leading slash"),
    pytest.param(edited("events.0.target.repository", "a" * 256), V1, 422, "invalid_repository",
                 "events[0].target.repository: 'aaaa", id="repository too long"),
    pytest.param(edited("events.0.target.repository", ""), V1, 422, "invalid_envelope",
                 'events[0].target.repository: "" is shorter than 1 character',
                 id="empty repository"),
    pytest.param(edited("events.0.target.fromRepository", "Library/debian"), V1, 422,
                 "invalid_repository", "events[0].target.fromRepository: 'Library/debian'",
                 id="bad mount source"),
    pytest.param(edited("events.2.target.tag", ""), V1, 422, "invalid_tag",
                 "events[2].target.tag: '' is not a valid tag", id="empty tag"),
    pytest.param(edited("events.2.target.tag", ".hidden"), V1, 422, "invalid_tag",
                 "events[2].target.tag: '.hidden' is not a valid tag", id="tag with leading dot"),
    pytest.param(edited("events.2.target.tag", "v" * 129), V1, 422, "invalid_tag",
                 "events[2].target.tag: 'vvv", id="tag too long"),
    pytest.param(edited("events.0.target.digest", "sha256:" + "A" * 64), V1, 422,
                 "invalid_digest", "events[0].target.digest: 'sha256:AAAA", id="uppercase digest"),
    pytest.param(edited("events.0.target.digest", "sha256:abc"), V1, 422, "invalid_digest",
                 "events[0].target.digest: 'sha256:abc' is not a valid digest", id="short digest"),
    pytest.param(edited("events.0.target.digest", "md5:" + "0" * 32), V1, 422, "invalid_digest",
                 "is not a valid digest", id="unsupported digest algorithm"),
    pytest.param(edited("events.0.target.references", [{"digest": "sha256:" + "A" * 64}]), V1,
                 422, "invalid_digest", "events[0].target.references[0].digest: 'sha256:AAA",
                 id="bad reference digest"),
]  # fmt: skip


@pytest.mark.parametrize(("body", "content_type", "status", "code", "message"), BAD_ENVELOPES)
def test_rejected(body, content_type, status, code, message):
    with pytest.raises(NotificationError) as caught:
        parse(body, content_type)
    assert (caught.value.status, caught.value.code) == (status, code)
    assert message in str(caught.value)
    assert len(str(caught.value)) < 400


def test_one_bad_event_rejects_the_envelope():
    with pytest.raises(NotificationError, match=r"^events\[2\]\.target\.repository: 'Bad'"):
        parse(edited("events.2.target.repository", "Bad"))


def test_first_error_by_path_is_reported():
    document = json.loads(golden("v1-push.json"))
    document["events"][1]["action"] = "upload"
    document["events"][0]["target"]["size"] = "big"
    document["events"][0]["id"] = 1
    body = json.dumps(document).encode()
    for _ in range(3):
        with pytest.raises(NotificationError, match=r'^events\[0\]\.id: 1 is not of type "string"'):
            parse(body)


def test_size_limit_is_inclusive():
    body = golden("v2-tag-delete.json")
    assert len(parse(body, V2, limit=len(body))) == 1
    with pytest.raises(NotificationError) as caught:
        parse(body, V2, limit=len(body) - 1)
    assert caught.value.status == 413


# --- the event log -----------------------------------------------------------------------------

RECEIVED = datetime(2025, 2, 3, 18, 0, 0, 250000, tzinfo=timezone(timedelta(hours=1)))


@pytest.mark.parametrize("name", GOLDEN)
def test_log_value_round_trip(name):
    for event in parse(golden(name)):
        stored = RegistryEvent.from_log_value(event.to_log_value(RECEIVED))
        assert stored == replace(event, received_at=RECEIVED)


@pytest.mark.parametrize("name", GOLDEN)
def test_the_webhook_stores_what_parsing_would_type(name):
    # The webhook skips typing (accept_envelope, log_values); consumers read the same bytes.
    body = golden(name)
    content_type = V2 if name.startswith("v2") else V1
    raws = accept_envelope(body, content_type, max_body_bytes=LIMIT)
    events = parse(body, content_type)
    assert raws == [event.raw for event in events]
    values = log_values(raws, RECEIVED)
    assert values == [event.to_log_value(RECEIVED) for event in events]
    assert [RegistryEvent.from_log_value(v) for v in values] == [
        replace(event, received_at=RECEIVED) for event in events]


def test_log_value_is_compact_sorted_and_utc():
    event = parse(golden("v2-tag-delete.json"), V2)[0]
    value = event.to_log_value(RECEIVED)
    expected = {**event.raw, "received_at": "2025-02-03T17:00:00.250000Z"}
    assert value == json.dumps(expected, sort_keys=True, separators=(",", ":")).encode()
    assert value.startswith(b'{"action":"delete","actor":{"name":"admin"},"id":')


def test_log_value_needs_an_aware_time():
    event = parse(golden("v2-tag-delete.json"), V2)[0]
    with pytest.raises(ValueError, match="timezone-aware"):
        event.to_log_value(datetime(2025, 2, 3, 18, 0))  # noqa: DTZ001 - the point of the test


def test_synthetic_event_from_the_sync_job():
    value = json.dumps({
        "id": "5a0e6c5e-2f0e-4b7e-9a43-0c1d2e3f4a5b",
        "timestamp": "2025-02-03T18:00:00.123456Z",
        "action": "push",
        "target": {"repository": "team/web", "tag": "1.4.2", "digest": SHA256_A,
                   "mediaType": "application/vnd.oci.image.manifest.v1+json", "size": 1609},
        "source": {"instanceID": "dockyard-sync"},
        "synthetic": True,
        "received_at": "2025-02-03T18:00:00.123456Z",
    }).encode()  # fmt: skip
    event = RegistryEvent.from_log_value(value)
    assert event.synthetic is True
    assert event.received_at == datetime(2025, 2, 3, 18, 0, 0, 123456, tzinfo=UTC)
    assert (event.actor, event.request_addr, event.source_instance) == (None, None, "dockyard-sync")
    assert event.is_manifest
    assert "received_at" not in event.raw


def stored(**changes: object) -> bytes:
    event = json.loads(golden("v2-tag-delete.json"))["events"][0]
    event["received_at"] = "2025-02-03T18:00:00Z"
    for key, value in changes.items():
        if value is DELETE:
            del event[key]
        else:
            event[key] = value
    return json.dumps(event).encode()


@pytest.mark.parametrize(
    ("value", "code", "message"),
    [
        (b"\x00", "malformed_json", "event is not valid JSON"),
        # Stored events were validated when appended; a read checks only what it needs.
        (b'"push"', "invalid_event", "event: a stored event must be an object"),
        (stored(target=DELETE), "invalid_event", "event: not a stored registry event"),
        (stored(received_at="now"), "invalid_timestamp", "received_at: 'now' is not"),
        (stored(received_at="2025-02-30T00:00:00Z"), "invalid_timestamp", "received_at: "),
        (stored(target={"repository": "UPPER"}), "invalid_repository", "target.repository: 'UP"),
        (stored(target={"repository": "a", "tag": "-x"}), "invalid_tag", "target.tag: '-x'"),
    ],
)
def test_bad_log_value(value, code, message):
    with pytest.raises(NotificationError) as caught:
        RegistryEvent.from_log_value(value)
    assert caught.value.code == code
    assert str(caught.value).startswith(message)
