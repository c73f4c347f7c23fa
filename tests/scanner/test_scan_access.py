"""Who sees which scan, and who may rescan: through the HTTP API, with the scan store filled
directly (no registry runs, and no worker claims anything).

One manifest pushed to a private repository first and then to a public one has one scan,
scanned from the private one: a reader of the public repository sees it as theirs, and never
learns the private name. Rescans need push access and are rate-limited per manifest.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from services.auth.access import IDENTITY
from services.auth.policy import Principal
from services.core.config import Config
from services.scanner.api import SCAN_STORE
from tests.factories import DIGEST_A
from tests.support.dockyard import Dockyard, initialised, running_dockyard
from tests.support.openapi import assert_matches_openapi

ADMIN = Principal("admin", "user", admin=True, credential="password")
PASSWORD = "secret-password-1"
OWNER = ("alice", PASSWORD)  # owns the team owning both namespaces
READER = ("bob", PASSWORD)  # no team: may pull what is public, push nothing
RESCAN_SECONDS = 4
PRIVATE_REASON = f"GET /v2/secret/app/blobs/{DIGEST_A}: HTTP 500 INTERNAL"


@pytest.fixture
def config(tmp_path: Path) -> Config:
    return initialised(tmp_path, "http://127.0.0.1:9", scanner_enabled="false",
                       scanner_rescan_seconds=str(RESCAN_SECONDS))


@pytest.fixture
async def dockyard(config: Config) -> AsyncIterator[Dockyard]:
    async with running_dockyard(config) as running:
        identity = running.app[IDENTITY]
        for user in ("alice", "bob"):
            await identity.create_user(ADMIN, user, email="", password=PASSWORD)
        await identity.create_team(ADMIN, "crew", owner="alice")
        await identity.create_namespace(ADMIN, "open", team="crew", visibility="public")
        await identity.create_namespace(ADMIN, "secret", team="crew", visibility="private")
        store = running.app[SCAN_STORE]
        await store.queue(DIGEST_A, "secret/app")
        assert await store.claim() is not None
        await store.finish(DIGEST_A, "failed", reason=PRIVATE_REASON)
        await store.tag("secret/app", "1", DIGEST_A)
        await store.tag("open/app", "1", DIGEST_A)
        yield running


async def call(dockyard: Dockyard, auth: tuple[str, str] | None, method: str, path: str,
               **options: object) -> httpx.Response:
    async with httpx.AsyncClient(base_url=dockyard.url, auth=auth) as client:
        return await client.request(method, path, **options)  # type: ignore[arg-type]


@pytest.mark.parametrize("auth", [None, READER])
async def test_a_manifest_shared_with_a_private_repository_reads_as_the_public_ones(
    dockyard: Dockyard, auth: tuple[str, str] | None
) -> None:
    listed = await call(dockyard, auth, "GET", "/api/v1/scans",
                        params={"repository": "open/app", "tag": "1"})
    assert_matches_openapi(listed, "/api/v1/scans", "get")
    assert [(i["repository"], i["reason"]) for i in listed.json()["items"]] == [
        ("open/app", PRIVATE_REASON.replace("secret/app", "open/app"))]
    one = await call(dockyard, auth, "GET", f"/api/v1/scans/{DIGEST_A}")
    assert (one.status_code, one.json()["repository"]) == (200, "open/app")
    for response in (listed, one):
        assert "secret" not in response.text
    hidden = await call(dockyard, auth, "GET", "/api/v1/scans",
                        params={"repository": "secret/app", "tag": "1"})
    assert hidden.status_code == 404


async def test_only_those_who_may_push_rescan_and_not_too_often(dockyard: Dockyard) -> None:
    body = {"repository": "open/app", "tag": "1"}
    assert (await call(dockyard, None, "POST", "/api/v1/scans", json=body)).status_code == 401
    pull_only = await call(dockyard, READER, "POST", "/api/v1/scans", json=body)
    assert_matches_openapi(pull_only, "/api/v1/scans", "post")
    assert (pull_only.status_code, pull_only.json()["error"]["code"]) == (403, "forbidden")
    unseen = await call(dockyard, READER, "POST", "/api/v1/scans",
                        json={"repository": "secret/app", "tag": "1"})
    assert unseen.status_code == 404

    await asyncio.sleep(RESCAN_SECONDS)  # since the setup queued it
    queued = await call(dockyard, OWNER, "POST", "/api/v1/scans", json=body)
    assert queued.status_code == 202
    assert [i["status"] for i in queued.json()["items"]] == ["queued"]
    # Still queued: never queued twice, whoever asks.
    again = await dockyard.client.post("/api/v1/scans", json=body)
    assert_matches_openapi(again, "/api/v1/scans", "post")
    assert (again.status_code, again.json()["error"]["code"]) == (429, "rescan_too_soon")
    # Finished, but queued less than RESCAN_SECONDS ago: the rest of it to wait.
    store = dockyard.app[SCAN_STORE]
    assert await store.claim() is not None
    await store.finish(DIGEST_A, "failed", reason="registry unreachable")
    soon = await dockyard.client.post("/api/v1/scans", json=body)
    assert soon.status_code == 429
    assert 1 <= int(soon.headers["Retry-After"]) <= RESCAN_SECONDS


async def test_a_rescan_with_a_field_it_does_not_know_changes_nothing(
    dockyard: Dockyard
) -> None:
    """Found by the attacker's review (issue 15): a body with an unknown field queued the scan
    anyway; an API body with a field the operation does not know is a 400 naming it."""
    await asyncio.sleep(RESCAN_SECONDS)  # since the setup queued it
    refused = await call(dockyard, OWNER, "POST", "/api/v1/scans",
                         json={"repository": "open/app", "tag": "1", "platform": "linux/arm64"})
    assert_matches_openapi(refused, "/api/v1/scans", "post")
    assert (refused.status_code, refused.json()["error"]["code"]) == (400, "unknown_field")
    assert "platform" in refused.json()["error"]["message"]
    record = await dockyard.app[SCAN_STORE].get(DIGEST_A)
    assert record is not None
    assert record.status == "failed"  # not queued again
    for content, code in ((b"{", "malformed_json"), (b"[]", "invalid_body")):
        bad = await call(dockyard, OWNER, "POST", "/api/v1/scans", content=content,
                         headers={"Content-Type": "application/json"})
        assert (bad.status_code, bad.json()["error"]["code"]) == (400, code)
