"""POST /v2/webhooks/events: the secret, the media types, the envelope, the limits.

Every refused envelope must leave the event log untouched, so each bad-input case checks the
log's length before and after.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from services.core.config import Config
from services.core.web import EVENT_LOG
from services.ingest.consumers import REGISTRY_EVENTS
from services.ingest.notifications import RegistryEvent
from tests.support.dockyard import Dockyard, initialised, running_dockyard

TESTDATA = Path(__file__).parent / "testdata"
V1 = "application/vnd.docker.distribution.events.v1+json"


@pytest.fixture
def config(tmp_path: Path) -> Config:
    # Nothing listens at the registry URL: these tests look at the log, not the catalog.
    return initialised(tmp_path, "http://127.0.0.1:9", webhook_max_body_bytes="4096")


@pytest.fixture
async def dockyard(config: Config) -> AsyncIterator[Dockyard]:
    async with running_dockyard(config) as running:
        yield running


async def logged(dockyard: Dockyard) -> list[RegistryEvent]:
    """Everything on the registry-events topic, read by a throw-away consumer group."""
    subscription = await dockyard.app[EVENT_LOG].subscribe(REGISTRY_EVENTS, "test-reader")
    try:
        records = await subscription.fetch(max_records=10_000, timeout=0.2)
    finally:
        await subscription.close()
    return [RegistryEvent.from_log_value(r.value) for r in records]


def envelope(name: str) -> bytes:
    return (TESTDATA / name).read_bytes()


@pytest.mark.parametrize(
    ("sample", "content_type"),
    [
        ("v1-push.json", V1),
        ("v2-index-push.json", "application/vnd.docker.distribution.events.v2+json"),
        ("v1-manifest-delete.json", "application/json"),
    ],
)
async def test_an_accepted_envelope_is_on_the_log_in_order(
    dockyard: Dockyard, sample: str, content_type: str
) -> None:
    body = envelope(sample)
    headers = {**dockyard.webhook_headers, "Content-Type": content_type}
    response = await dockyard.client.post("/v2/webhooks/events", content=body, headers=headers)
    assert response.status_code == 200, response.text
    sent = [e["id"] for e in json.loads(body)["events"]]
    assert response.json() == {"accepted": len(sent)}
    on_log = await logged(dockyard)
    assert [e.id for e in on_log] == sent
    assert all(e.received_at is not None for e in on_log)


BAD = [
    # (description, headers to change, body, status, code)
    ("no secret", {"Authorization": None}, envelope("v1-push.json"), 401, "unauthorized"),
    ("wrong secret", {"Authorization": "Bearer nope-nope-nope-nope"}, envelope("v1-push.json"),
     401, "unauthorized"),
    ("secret without scheme", {"Authorization": "SECRET"}, envelope("v1-push.json"), 401,
     "unauthorized"),
    ("wrong media type", {"Content-Type": "text/plain"}, envelope("v1-push.json"), 415,
     "unsupported_media_type"),
    ("malformed JSON", {}, b'{"events": [', 400, "malformed_json"),
    ("not an envelope", {}, b'{"event": []}', 422, "invalid_envelope"),
    ("empty events", {}, b'{"events": []}', 422, "invalid_envelope"),
    ("missing target", {}, json.dumps({"events": [{
        "id": "x", "timestamp": "2024-01-01T00:00:00Z", "action": "push"}]}).encode(),
     422, "invalid_envelope"),
    ("wrong type", {}, json.dumps({"events": [{
        "id": "x", "timestamp": "2024-01-01T00:00:00Z", "action": "push",
        "target": {"repository": "a/b", "size": "big"}}]}).encode(), 422, "invalid_envelope"),
    ("bad repository name", {}, json.dumps({"events": [{
        "id": "x", "timestamp": "2024-01-01T00:00:00Z", "action": "delete",
        "target": {"repository": "Team/App"}}]}).encode(), 422, "invalid_repository"),
    ("time beyond year 9999 in UTC", {}, json.dumps({"events": [{
        "id": "x", "timestamp": "9999-12-31T23:59:59-23:00", "action": "delete",
        "target": {"repository": "a/b"}}]}).encode(), 422, "invalid_timestamp"),
    ("oversized body", {}, b'{"events": [' + b" " * 5000 + b"]}", 413, "body_too_large"),
]


@pytest.mark.parametrize(("case", "headers", "body", "status", "code"), BAD,
                         ids=[case[0] for case in BAD])
async def test_bad_input_is_refused_and_nothing_is_written(
    dockyard: Dockyard, case: str, headers: dict[str, str | None], body: bytes, status: int,
    code: str,
) -> None:
    sent = {**dockyard.webhook_headers, **headers}
    response = await dockyard.client.post(
        "/v2/webhooks/events", content=body,
        headers={k: v for k, v in sent.items() if v is not None} | (
            {"Authorization": ""} if headers.get("Authorization", "") is None else {}),
    )
    assert response.status_code == status, response.text
    assert response.json()["error"]["code"] == code
    assert response.json()["error"]["message"]
    assert await logged(dockyard) == []


async def test_one_bad_event_rejects_the_whole_envelope(dockyard: Dockyard) -> None:
    events = json.loads(envelope("v1-push.json"))["events"]
    events[-1]["target"]["repository"] = "bad//name"
    response = await dockyard.client.post("/v2/webhooks/events", json={"events": events},
                                          headers=dockyard.webhook_headers)
    assert response.status_code == 422
    assert f"events[{len(events) - 1}]" in response.json()["error"]["message"]
    assert await logged(dockyard) == []


async def test_metrics_count_received_appended_and_rejected(dockyard: Dockyard) -> None:
    await dockyard.client.post("/v2/webhooks/events", content=envelope("v1-push.json"),
                               headers=dockyard.webhook_headers)
    await dockyard.client.post("/v2/webhooks/events", content=b"{",
                               headers=dockyard.webhook_headers)
    text = (await dockyard.client.get("/metrics")).text
    count = len(json.loads(envelope("v1-push.json"))["events"])
    assert f"dockyard_webhook_events_appended_total {float(count)}" in text
    assert 'dockyard_webhook_envelopes_rejected_total{code="malformed_json"} 1.0' in text


@pytest.mark.parametrize("length_known", [True, False], ids=["content-length", "chunked"])
async def test_a_body_that_arrives_in_pieces_is_read_whole(
    dockyard: Dockyard, length_known: bool
) -> None:
    """Over a real network an envelope arrives in several TCP segments, and may be sent with
    chunked transfer encoding: the webhook must wait for the whole body."""
    body = envelope("v1-push.json")
    pieces = [body[i:i + 200] for i in range(0, len(body), 200)]

    async def trickle() -> AsyncIterator[bytes]:
        for piece in pieces:
            yield piece
            await asyncio.sleep(0.01)  # each piece reaches the server on its own

    headers = dict(dockyard.webhook_headers)
    if length_known:
        headers["Content-Length"] = str(len(body))
    response = await dockyard.client.post("/v2/webhooks/events", content=trickle(),
                                          headers=headers)

    assert len(pieces) > 3
    assert response.status_code == 200, response.text
    assert [e.id for e in await logged(dockyard)] == [e["id"] for e in json.loads(body)["events"]]


async def test_an_oversized_chunked_body_is_refused(dockyard: Dockyard) -> None:
    """Without a Content-Length the limit is enforced on the bytes as they arrive."""

    async def too_much_whitespace() -> AsyncIterator[bytes]:
        yield b'{"events": ['
        for _ in range(10):
            yield b" " * 1000  # 10 kB in all; this app's limit is 4096 bytes

    response = await dockyard.client.post("/v2/webhooks/events", content=too_much_whitespace(),
                                          headers=dockyard.webhook_headers)

    assert response.status_code == 413
    assert response.json()["error"]["code"] == "body_too_large"
    assert await logged(dockyard) == []
