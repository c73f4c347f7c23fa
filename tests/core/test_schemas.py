"""The schemas in schemas/ and their jsonschema-rs validators, checked against jsonschema.

jsonschema is a test-only dependency: here it is the reference implementation the validators
the services use must agree with.
"""

import copy
import json
from pathlib import Path

import pytest
from jsonschema import Draft7Validator
from referencing import Registry, Resource

from services.core.schemas import SCHEMA_DIR, SchemaViolation, load_schema, validator

ENVELOPE = "registry-notification.schema.json"
EVENT = "events/registry-event.schema.json"
DRAFT_07 = "http://json-schema.org/draft-07/schema#"

TESTDATA = Path(__file__).parents[1] / "ingest" / "testdata"
SAMPLES = sorted(TESTDATA.glob("v*.json"))


def reference(name: str) -> Draft7Validator:
    """jsonschema's validator for ``name``, with every schema file registered by its ``$id``."""
    schemas = [load_schema(path.relative_to(SCHEMA_DIR).as_posix())
               for path in SCHEMA_DIR.rglob("*.schema.json")]  # fmt: skip
    registry = Registry().with_resources(
        (schema["$id"], Resource.from_contents(schema)) for schema in schemas
    )
    return Draft7Validator(load_schema(name), registry=registry)


def is_valid(name: str, instance: object) -> bool:
    try:
        validator(name)(instance)
    except SchemaViolation:
        return False
    return True


@pytest.mark.parametrize("name", [ENVELOPE, EVENT])
def test_schema_is_valid_draft_07(name):
    schema = load_schema(name)
    assert schema["$schema"] == DRAFT_07
    Draft7Validator.check_schema(schema)


def test_id_is_the_file_uri():
    assert load_schema(EVENT)["$id"] == (SCHEMA_DIR / EVENT).as_uri()
    assert "$id" not in json.loads((SCHEMA_DIR / EVENT).read_text())


def test_schema_names_stay_inside_the_folder():
    with pytest.raises(ValueError, match="points outside"):
        load_schema("../pyproject.toml")


def test_cross_file_ref_resolves():
    # The digest pattern lives in the event file's own definitions: reaching it from the
    # envelope takes the relative file $ref and then a $ref relative to the event file.
    envelope = json.loads((TESTDATA / "v1-push.json").read_text())
    envelope["events"][1]["target"]["digest"] = "sha256 abc"
    with pytest.raises(SchemaViolation) as caught:
        validator(ENVELOPE)(envelope)
    assert (caught.value.where, caught.value.keyword) == ("events[1].target.digest", "pattern")
    assert caught.value.path == ("events", 1, "target", "digest")


def test_valid_data_is_returned_unchanged():
    envelope = json.loads((TESTDATA / "v2-index-push.json").read_text())
    before = copy.deepcopy(envelope)
    assert validator(ENVELOPE)(envelope) is envelope
    assert envelope == before


def test_dollar_in_a_pattern_is_the_end_of_the_string():
    # jsonschema-rs reads "$" as JSON Schema's ECMA 262 does; Python's re (and so jsonschema)
    # also lets it match before a final newline. The services' validator is the stricter one.
    event = json.loads((TESTDATA / "v2-tag-delete.json").read_text())["events"][0]
    event["timestamp"] = "2024-05-14T09:31:02Z\n"
    assert not is_valid(EVENT, event)


# --- agreement with jsonschema -----------------------------------------------------------------

GOOD_EVENT = json.loads((TESTDATA / "v1-push.json").read_text())["events"][2]
DELETE = object()


def event(**changes: object) -> dict[str, object]:
    """GOOD_EVENT with top-level keys (``id=…``) or target keys (``target__tag=…``) set, or
    deleted with ``DELETE``."""
    result = copy.deepcopy(GOOD_EVENT)
    for key, value in changes.items():
        leaf = key.removeprefix("target__")
        node = result if leaf == key else result["target"]
        if value is DELETE:
            del node[leaf]
        else:
            node[leaf] = value
    return result


EVENTS = [
    pytest.param(event(), id="golden"),
    pytest.param(event(target__size=528.0), id="integral float size"),
    pytest.param(event(target__size=1.5), id="fractional size"),
    pytest.param(event(target__size=True), id="boolean size"),
    pytest.param(event(target__size=-1), id="negative size"),
    pytest.param(event(target__length=0), id="zero length"),
    pytest.param(event(id=""), id="empty id"),
    pytest.param(event(id=None), id="null id"),
    pytest.param(event(id=DELETE), id="no id"),
    pytest.param(event(action="upload"), id="unknown action"),
    pytest.param(event(action=["push"]), id="action as list"),
    pytest.param(event(timestamp="2024-05-14T09:31:02.123456789+02:00"), id="nanoseconds"),
    pytest.param(event(timestamp="2024-05-14t09:31:02z"), id="lowercase t and z"),
    pytest.param(event(timestamp="2024-05-14T09:31:02"), id="no offset"),
    pytest.param(event(timestamp="2024-13-14T09:31:02Z"), id="month 13 (a code check)"),
    pytest.param(event(timestamp=1715678462), id="epoch timestamp"),
    pytest.param(event(target="team/web"), id="target not object"),
    pytest.param(event(target__repository=DELETE), id="no repository"),
    pytest.param(event(target__repository=""), id="empty repository"),
    pytest.param(event(target__digest="sha256 abc"), id="digest shape"),
    pytest.param(event(target__digest="sha256:" + "A" * 64), id="uppercase digest (code check)"),
    pytest.param(event(target__tag=7), id="tag not string"),
    pytest.param(event(target__references=[]), id="no references"),
    pytest.param(event(target__references=[{"mediaType": "x"}]), id="reference without digest"),
    pytest.param(event(target__references=[{"digest": 5}]), id="reference digest not string"),
    pytest.param(event(target__annotations={"a": "b"}), id="annotations"),
    pytest.param(event(target__annotations={"a": 1}), id="annotation not string"),
    pytest.param(event(target__urls=["https://x"]), id="urls"),
    pytest.param(event(target__urls="https://x"), id="urls not array"),
    pytest.param(event(request="PUT"), id="request not object"),
    pytest.param(event(actor={}), id="anonymous actor"),
    pytest.param(event(actor={"name": 3}), id="actor name not string"),
    pytest.param(event(source={"instanceID": None}), id="instance id null"),
    pytest.param(event(received_at="2024-05-14T09:31:02Z"), id="received_at"),
    pytest.param(event(received_at="now"), id="received_at not a timestamp"),
    pytest.param(event(synthetic=True), id="synthetic"),
    pytest.param(event(synthetic="yes"), id="synthetic not boolean"),
    pytest.param(event(**{"x-vendor": {"nested": [1, None]}}), id="unknown field"),
    pytest.param("push", id="not an object"),
    pytest.param([], id="array"),
]


@pytest.mark.parametrize("path", SAMPLES, ids=lambda path: path.name)
def test_agrees_with_jsonschema_on_samples(path):
    envelope = json.loads(path.read_text())
    assert is_valid(ENVELOPE, envelope)
    assert reference(ENVELOPE).is_valid(envelope)
    for each in envelope["events"]:
        assert is_valid(EVENT, each)
        assert reference(EVENT).is_valid(each)


@pytest.mark.parametrize("instance", EVENTS)
def test_agrees_with_jsonschema_on_events(instance):
    assert is_valid(EVENT, instance) == reference(EVENT).is_valid(instance)
    envelope = {"events": [GOOD_EVENT, instance]}
    assert is_valid(ENVELOPE, envelope) == reference(ENVELOPE).is_valid(envelope)


@pytest.mark.parametrize(
    "envelope",
    [{}, [], {"events": []}, {"events": {}}, {"events": None}, {"events": [GOOD_EVENT]}],
    ids=repr,
)
def test_agrees_with_jsonschema_on_envelopes(envelope):
    assert is_valid(ENVELOPE, envelope) == reference(ENVELOPE).is_valid(envelope)


def test_table_has_both_answers():
    # Guard against an agreement test that passes because everything is valid (or invalid).
    answers = {is_valid(EVENT, param.values[0]) for param in EVENTS}
    envelopes = {is_valid(ENVELOPE, {"events": [param.values[0]]}) for param in EVENTS}
    assert answers == envelopes == {True, False}
