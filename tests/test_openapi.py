"""schemas/openapi.yaml is a valid OpenAPI 3.1 document, and the API does what it says.

Schemathesis generates requests for every operation but the endless SSE stream and checks each
answer against the document. Its pytest tests are synchronous, so Dockyard runs for this module
on an event loop of its own in a background thread (``serving_in_background``), seeded through
its own interfaces: the sample envelopes go through the webhook (so every activity type is in
the feed) and catalog rows go through the catalog store's ``apply`` (no registry runs here, so
the catalog consumer cannot fetch manifests), and accounts, teams, a public namespace ``team``
and tokens go through IdentityService, making one change of every identity activity type. The
seeded names are the document's parameter and body examples (``team/app``, ``team/web``,
``alice``, ``crew``, ``bob``, ``ci``), which schemathesis sends first, so real tags, activity
entries, accounts and teams get checked too. The direct tests pin down answers generated
requests reach only by luck, using ``assert_matches_openapi`` as any other test may.
"""

from __future__ import annotations

import asyncio
import base64
import csv
import io
import json
import threading
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from jsonschema import Draft7Validator, Draft202012Validator  # type: ignore[import-untyped]
from jsonschema.exceptions import SchemaError  # type: ignore[import-untyped]
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from services.auth.access import IDENTITY
from services.auth.policy import Principal
from services.core.config import Config
from services.core.schemas import SCHEMA_DIR, load_schema
from services.ingest.activity import ACTIVITY_TYPES, REGISTRY_ACTIVITY_TYPES
from services.ingest.api import CATALOG_STORE, CSV_COLUMNS
from services.ingest.models import Operation, PlatformEntry, PutManifest, PutTag, RecordPull
from tests.support.dockyard import Dockyard, admin_auth, initialised, running_dockyard
from tests.support.openapi import (
    OPENAPI_PATH,
    assert_matches_openapi,
    assert_matches_schema,
    load_openapi,
)
from tests.support.waiting import eventually

T = TypeVar("T")

SAMPLES = Path(__file__).parent / "ingest" / "testdata"
# What the sample envelopes record with [activity] record_pulls on: one manifest push by tag in
# each of v1-push and v2-index-push, a manifest delete and its two tag deletes, a repository
# delete, a tag delete, and a pull by tag (blob pushes, pulls and mounts are not activity).
SAMPLE_ACTIVITIES = {
    "tag.pushed": 2, "tag.deleted": 3, "manifest.deleted": 1, "repository.deleted": 1,
    "manifest.pulled": 1,
}
STREAM = "/api/v1/activities/stream"
WEBHOOK = "/v2/webhooks/events"
ADMIN = Principal("admin", "user", admin=True, credential="password")
# alice's password is the one in the document's example of POST /v2/token.
PASSWORDS = {"alice": "alice-password-1", "bob": "bob-password-1", "dave": "dave-password-1"}


def digest(n: int) -> str:
    return f"sha256:{n:064x}"


PUSHED = datetime(2026, 1, 31, 12, 0, 0, 123456, tzinfo=UTC)
IMAGE = "application/vnd.oci.image.manifest.v1+json"
INDEX = "application/vnd.oci.image.index.v1+json"
# Three repositories (one in the global namespace), an index with two platforms, and an image
# with a cosign signature: every field of Repository, Tag, Platform and Referrer gets a value.
# team/app is the example of GET /api/v1/tags?repository= in the document.
CATALOG: list[tuple[str, list[Operation]]] = [
    ("seed-1", [
        PutManifest("team/app", digest(1), IMAGE, "image",
                    "application/vnd.oci.image.config.v1+json", 1234, (), None, "alice", PUSHED),
        PutTag("team/app", "1.0", digest(1), "alice", PUSHED),
        PutManifest("team/app", digest(2), IMAGE, "signature",
                    "application/vnd.dev.cosign.artifact.sig.v1+json", 300, (), digest(1), None,
                    PUSHED),
        PutTag("team/app", f"sha256-{digest(1)[7:]}.sig", digest(2), None, PUSHED),
        RecordPull("team/app", "1.0", digest(1), PUSHED),
    ]),
    ("seed-2", [
        PutManifest("team/multiarch", digest(3), INDEX, "index", None, None, (
            PlatformEntry("linux", "amd64", None, digest(4), 2000),
            PlatformEntry("linux", "arm", "v7", digest(5), None),
        ), None, "ci-bot", PUSHED),
        PutTag("team/multiarch", "latest", digest(3), "ci-bot", PUSHED),
    ]),
    ("seed-3", [
        PutManifest("tools", digest(6), IMAGE, "image", None, 10, (), None, None, PUSHED),
        PutTag("tools", "v1", digest(6), None, PUSHED),
    ]),
]


# --- Dockyard in a background thread ---------------------------------------------------------


@contextmanager
def background_loop() -> Iterator[asyncio.AbstractEventLoop]:
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, name="dockyard-loop", daemon=True)
    thread.start()
    try:
        yield loop
    finally:
        run_on(loop, loop.shutdown_asyncgens())
        run_on(loop, loop.shutdown_default_executor())
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=30)
        loop.close()


def run_on(loop: asyncio.AbstractEventLoop, work: Awaitable[T]) -> T:
    async def wrapped() -> T:
        return await work

    return asyncio.run_coroutine_threadsafe(wrapped(), loop).result(timeout=120)


@contextmanager
def serving_in_background(
    config: Config, seed: Callable[[Dockyard], Awaitable[None]]
) -> Iterator[Dockyard]:
    """``running_dockyard`` (consumers included) for synchronous tests.

    Use only the thread-safe parts of the result from the test (``url``, ``config``,
    ``webhook_headers``): its ``client`` and ``app`` belong to the background loop.
    """
    with background_loop() as loop:
        context = running_dockyard(config)
        dockyard = run_on(loop, context.__aenter__())
        try:
            run_on(loop, seed(dockyard))
            yield dockyard
        finally:
            run_on(loop, context.__aexit__(None, None, None))


async def seed(dockyard: Dockyard) -> None:
    for sample in sorted(SAMPLES.glob("v*.json")):
        response = await dockyard.client.post(WEBHOOK, content=sample.read_bytes(),
                                              headers=dockyard.webhook_headers)
        assert response.status_code == 200, f"{sample.name}: {response.text}"
    await dockyard.app[CATALOG_STORE].apply(CATALOG)
    await eventually(
        lambda: dockyard.client.get("/api/v1/activities", params={
            "limit": 500, "type": ",".join(REGISTRY_ACTIVITY_TYPES)}),
        lambda response: response.status_code == 200
        and len(response.json()["items"]) == sum(SAMPLE_ACTIVITIES.values()),
        what="the sample envelopes recorded as activity",
    )
    await seed_identity(dockyard)
    await eventually(
        lambda: dockyard.client.get("/api/v1/activities", params={"limit": 500}),
        lambda response: {item["type"] for item in response.json()["items"]}
        >= set(ACTIVITY_TYPES),
        what="an identity change of every type recorded as activity",
    )


async def seed_identity(dockyard: Dockyard) -> None:
    """One change of every identity activity type, leaving the documents' examples in place:
    alice owns team crew (bob is a contributor, bot robot a viewer) and its public namespace
    team; alice has a live token labelled ci."""
    identity = dockyard.app[IDENTITY]
    for name, password in PASSWORDS.items():
        await identity.create_user(ADMIN, name, email=f"{name}@example.com", password=password)
    await identity.update_user(ADMIN, "bob", admin=True, enabled=False)
    await identity.update_user(ADMIN, "bob", admin=False, enabled=True,
                               password=PASSWORDS["bob"], email="bob@example.org")
    await identity.create_team(ADMIN, "crew", owner="alice", description="The crew")
    await identity.create_team(ADMIN, "backstage", owner="alice")
    for role in ("viewer", "contributor"):
        await identity.set_member(ADMIN, "crew", "bob", role)
    await identity.set_member(ADMIN, "crew", "dave", "viewer")
    await identity.remove_member(ADMIN, "crew", "dave")
    await identity.sign_out_everywhere(ADMIN, "dave")
    await identity.create_bot(ADMIN, "robot", team="crew", role="viewer")
    await identity.create_namespace(ADMIN, "team", team="crew", visibility="protected")
    await identity.update_namespace(ADMIN, "team", visibility="public",
                                    description="The crew's images")
    await identity.create_namespace(ADMIN, "props", team="crew")
    await identity.update_namespace(ADMIN, "props", team="backstage")
    await identity.create_token(ADMIN, "alice", "ci")
    await identity.create_token(ADMIN, "alice", "old")
    await identity.revoke_token(ADMIN, "alice", "old")
    await identity.unlock(ADMIN, "bob")
    # Sign-ins: the admin client's own requests verify a password; these fail, one of them
    # with an empty username, which the activity schema allows for failed logins only.
    for username in ("alice", ""):
        response = await dockyard.client.get("/api/v1/me", auth=(username, "wrong-password"))
        assert response.status_code == 401


@contextmanager
def seeded_dockyard(data_dir: Path) -> Iterator[Dockyard]:
    # Nothing listens at the registry URL: health reports the registry unreachable (503).
    config = initialised(data_dir, "http://127.0.0.1:9", activity_record_pulls="true",
                         sync_interval_seconds="0")
    with serving_in_background(config, seed) as running:
        yield running


@pytest.fixture(scope="module")
def dockyard(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Dockyard]:
    """For the direct tests: holds the seed data and nothing else."""
    with seeded_dockyard(tmp_path_factory.mktemp("dockyard")) as running:
        yield running


@pytest.fixture(scope="module")
def fuzzed_dockyard(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Dockyard]:
    """For schemathesis, whose accepted envelopes add activity of their own."""
    with seeded_dockyard(tmp_path_factory.mktemp("fuzzed")) as running:
        yield running


@pytest.fixture(scope="module")
def client(dockyard: Dockyard) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=dockyard.url, headers={"Authorization": admin_auth()},
                      timeout=30) as signed_in:
        yield signed_in


# --- the document itself -----------------------------------------------------------------------


def test_the_document_is_valid_openapi_3_1() -> None:
    schema = schemathesis.openapi.from_path(OPENAPI_PATH)
    schema.validate()  # against the OpenAPI 3.1 meta-schema
    document = load_openapi()
    assert document["openapi"].startswith("3.1.")
    for name, component in document["components"]["schemas"].items():
        try:
            Draft202012Validator.check_schema(component)
        except SchemaError as error:
            pytest.fail(f"components.schemas.{name}: {error}")
    for path in SCHEMA_DIR.rglob("*.schema.json"):
        Draft7Validator.check_schema(json.loads(path.read_text()))


# The machine interface and the sign-in redirects; the portal's HTML pages are not part of it.
API_PREFIXES = ("/api/", "/v2/", "/metrics", "/auth/")


def test_every_route_is_documented_and_nothing_else(dockyard: Dockyard) -> None:
    documented = {
        (method.upper(), path)
        for path, item in load_openapi()["paths"].items()
        for method in item
        if method != "parameters"
    }
    served = {
        (route.method, route.resource.canonical)
        for route in dockyard.app.router.routes()
        if route.method != "HEAD" and route.resource is not None
        and route.resource.canonical.startswith(API_PREFIXES)
    }
    assert documented == served


def test_the_activity_schema_documents_every_type() -> None:
    schema = load_schema("activity.schema.json")
    assert tuple(schema["definitions"]["type"]["enum"]) == ACTIVITY_TYPES
    described = {
        rule["if"]["properties"]["type"]["const"]: rule["then"]["description"]
        for rule in schema["allOf"]
    }
    assert sorted(described) == sorted(ACTIVITY_TYPES)
    assert all(text.startswith(f"{kind}: ") for kind, text in described.items())
    assert load_openapi()["components"]["schemas"]["Activity"] == {"$ref": "activity.schema.json"}


# --- schemathesis against the live app ---------------------------------------------------------

SCHEMA = schemathesis.openapi.from_path(OPENAPI_PATH).exclude(path=STREAM)
CHECKS = [not_a_server_error, response_schema_conformance, status_code_conformance,
          content_type_conformance]
# Health answers a documented 503 here, where no registry runs; every other check still applies.
HEALTH_CHECKS = [check for check in CHECKS if check is not not_a_server_error]


@SCHEMA.parametrize()
@settings(max_examples=30, deadline=None, database=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
def test_the_api_answers_as_documented(
    case: schemathesis.Case[Any], fuzzed_dockyard: Dockyard
) -> None:
    if case.path == WEBHOOK:
        headers = {"Authorization": fuzzed_dockyard.webhook_headers["Authorization"]}
    else:
        headers = {"Authorization": admin_auth()}
    checks = HEALTH_CHECKS if case.path == "/api/v1/health" else CHECKS
    case.call_and_validate(base_url=fuzzed_dockyard.url, headers=headers, checks=checks,
                           timeout=30)


# --- direct tests -------------------------------------------------------------------------------


def test_repositories_page_through_by_name(client: httpx.Client) -> None:
    response = client.get("/api/v1/repositories", params={"limit": 2})
    assert_matches_openapi(response, "/api/v1/repositories", "get")
    first = response.json()
    assert first["next"] is not None
    response = client.get("/api/v1/repositories", params={"limit": 2, "cursor": first["next"]})
    assert_matches_openapi(response, "/api/v1/repositories", "get")
    names = [item["name"] for item in first["items"] + response.json()["items"]]
    assert names == sorted(names)
    assert {"team/app", "team/multiarch", "tools"} <= set(names)


def test_repositories_of_the_global_namespace(client: httpx.Client) -> None:
    response = client.get("/api/v1/repositories", params={"namespace": ""})
    assert_matches_openapi(response, "/api/v1/repositories", "get")
    tools = next(item for item in response.json()["items"] if item["name"] == "tools")
    assert tools["namespace"] == ""
    assert tools["tag_count"] == 1


def test_tags_show_platforms_and_referrers(client: httpx.Client) -> None:
    response = client.get("/api/v1/tags", params={"repository": "team/multiarch"})
    assert_matches_openapi(response, "/api/v1/tags", "get")
    (latest,) = response.json()["items"]
    assert [p["variant"] for p in latest["platforms"]] == [None, "v7"]

    response = client.get("/api/v1/tags", params={"repository": "team/app"})
    assert_matches_openapi(response, "/api/v1/tags", "get")
    tags = {item["name"]: item for item in response.json()["items"]}
    assert tags["1.0"]["referrers"] == [
        {"digest": digest(2), "kind": "signature",
         "artifact_type": "application/vnd.dev.cosign.artifact.sig.v1+json"},
    ]
    assert tags["1.0"]["pull_count"] == 1
    assert tags["1.0"]["last_pulled_at"] == "2026-01-31T12:00:00.123456Z"


def test_tags_of_an_unknown_repository_are_a_404(client: httpx.Client) -> None:
    response = client.get("/api/v1/tags", params={"repository": "no/such-repository"})
    assert response.status_code == 404
    assert_matches_openapi(response, "/api/v1/tags", "get")
    assert response.json()["error"]["code"] == "repository_not_found"


@pytest.mark.parametrize("repository", [None, "", "Team/App", "a//b", "x" * 256])
def test_tags_need_a_valid_repository_name(client: httpx.Client, repository: str | None) -> None:
    params = {} if repository is None else {"repository": repository}
    response = client.get("/api/v1/tags", params=params)
    assert response.status_code == 400
    assert_matches_openapi(response, "/api/v1/tags", "get")
    assert response.json()["error"]["code"] == "invalid_repository"


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ({"repository": "team/web", "type": "tag.pushed"}, {"tag.pushed": 1}),
        ({"repository": "team/web", "type": "tag.deleted,manifest.deleted"},
         {"tag.deleted": 2, "manifest.deleted": 1}),
        ({"repository": "team/web", "type": ["manifest.pulled", "repository.deleted"]},
         {"manifest.pulled": 1}),
        ({"namespace": "", "type": ["tag.pushed", "tag.deleted"]},
         {"tag.pushed": 1, "tag.deleted": 1}),
        ({"namespace": "team", "actor": "alice"}, {"tag.pushed": 1}),
        ({"repository": "team/old-service", "since": "2016-01-01T00:00:00Z",
          "until": "2030-01-01T00:00:00+02:00"}, {"repository.deleted": 1}),
        ({"repository": "team/web", "until": "2000-01-01T00:00:00"}, {}),
    ],
)
def test_activities_filtered(
    client: httpx.Client, params: dict[str, Any], expected: dict[str, int]
) -> None:
    response = client.get("/api/v1/activities", params=params)
    assert_matches_openapi(response, "/api/v1/activities", "get")
    found: dict[str, int] = {}
    for item in response.json()["items"]:
        found[item["type"]] = found.get(item["type"], 0) + 1
    assert found == expected


def test_activities_page_newest_first(client: httpx.Client) -> None:
    seen: list[dict[str, Any]] = []
    # The registry's entries only: scans of these pushes (they fail, as nothing listens at the
    # registry URL) add scan.completed entries at their own pace.
    params: dict[str, Any] = {"limit": 3, "repository": "team/web",
                              "type": ",".join(REGISTRY_ACTIVITY_TYPES)}
    while True:
        response = client.get("/api/v1/activities", params=params)
        assert_matches_openapi(response, "/api/v1/activities", "get")
        seen.extend(response.json()["items"])
        if response.json()["next"] is None:
            break
        params["cursor"] = response.json()["next"]
    assert len(seen) == len({item["id"] for item in seen}) == 5
    assert [item["time"] for item in seen] == sorted((item["time"] for item in seen),
                                                     reverse=True)


def test_every_activity_type_matches_the_activity_schema(client: httpx.Client) -> None:
    response = client.get("/api/v1/activities", params={"limit": 500})
    items = response.json()["items"]
    assert {item["type"] for item in items} >= set(ACTIVITY_TYPES)
    for item in items:
        assert_matches_schema(item, "Activity")


def test_activities_as_csv(client: httpx.Client) -> None:
    response = client.get("/api/v1/activities",
                          params={"repository": "team/web",
                                  "type": ",".join(REGISTRY_ACTIVITY_TYPES)},
                          headers={"Accept": "text/csv"})
    assert_matches_openapi(response, "/api/v1/activities", "get")
    rows = list(csv.reader(io.StringIO(response.text)))
    assert tuple(rows[0]) == CSV_COLUMNS
    assert len(rows) == 1 + 5
    assert all(row[CSV_COLUMNS.index("repository")] == "team/web" for row in rows[1:])


def _cursor(position: object) -> str:
    return base64.urlsafe_b64encode(json.dumps(position).encode()).decode().rstrip("=")


@pytest.mark.parametrize(
    ("path", "params", "code"),
    [
        ("/api/v1/repositories", {"limit": "0"}, "invalid_limit"),
        ("/api/v1/repositories", {"limit": "501"}, "invalid_limit"),
        ("/api/v1/repositories", {"limit": "-1"}, "invalid_limit"),
        ("/api/v1/repositories", {"limit": "1.5"}, "invalid_limit"),
        ("/api/v1/repositories", {"limit": "²"}, "invalid_limit"),  # str.isdigit() says yes
        ("/api/v1/repositories", {"limit": "9" * 5000}, "invalid_limit"),  # beyond int()'s limit
        ("/api/v1/repositories", {"cursor": "not a cursor"}, "invalid_cursor"),
        ("/api/v1/repositories", {"cursor": _cursor([1])}, "invalid_cursor"),
        ("/api/v1/repositories", {"cursor": _cursor("[" * 5000)}, "invalid_cursor"),
        ("/api/v1/activities", {"cursor": _cursor(["a", 1])}, "invalid_cursor"),
        ("/api/v1/activities", {"cursor": _cursor([2**63, 1])}, "invalid_cursor"),
        ("/api/v1/activities", {"cursor": _cursor([1, -(2**64)])}, "invalid_cursor"),
        ("/api/v1/activities", {"cursor": base64.urlsafe_b64encode(b"[" * 5000).decode()},
         "invalid_cursor"),
        ("/api/v1/activities", {"type": "tag.pushed,image.pushed"}, "invalid_type"),
        ("/api/v1/activities", {"since": "yesterday"}, "invalid_since"),
        ("/api/v1/activities", {"until": "2026-13-01T00:00:00Z"}, "invalid_until"),
        ("/api/v1/activities", {"limit": "abc"}, "invalid_limit"),
    ],
)
def test_invalid_parameters_are_a_400_with_the_error_object(
    client: httpx.Client, path: str, params: dict[str, str], code: str
) -> None:
    response = client.get(path, params=params)
    assert response.status_code == 400, response.text
    assert_matches_openapi(response, path, "get")
    assert response.json()["error"]["code"] == code


def test_anonymous_callers_see_public_namespaces_only(dockyard: Dockyard) -> None:
    # The namespace team is public; the global namespace (tools) is protected.
    response = httpx.get(dockyard.url + "/api/v1/repositories")
    assert_matches_openapi(response, "/api/v1/repositories", "get")
    assert {item["name"] for item in response.json()["items"]} == {"team/app", "team/multiarch"}
    response = httpx.get(dockyard.url + "/api/v1/tags", params={"repository": "team/app"})
    assert_matches_openapi(response, "/api/v1/tags", "get")
    assert response.status_code == 200
    response = httpx.get(dockyard.url + "/api/v1/tags", params={"repository": "tools"})
    assert response.status_code == 404
    assert_matches_openapi(response, "/api/v1/tags", "get")
    response = httpx.get(dockyard.url + "/api/v1/activities", params={"limit": 500})
    assert_matches_openapi(response, "/api/v1/activities", "get")
    items = response.json()["items"]
    assert {item["namespace"] for item in items} == {"team"}
    assert {"namespace.create", "namespace.change_visibility"} <= {i["type"] for i in items}


@pytest.mark.parametrize("path", ["/api/v1/repositories", "/api/v1/activities", STREAM,
                                  "/api/v1/me"])
def test_wrong_credentials_are_a_401_with_a_challenge(dockyard: Dockyard, path: str) -> None:
    response = httpx.get(dockyard.url + path, params={"repository": "team/app"},
                         auth=("alice", "not-her-password"))
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"].startswith("Basic ")
    assert_matches_openapi(response, path, "get")


def test_the_webhook_refuses_a_secret_that_is_not_ascii(dockyard: Dockyard) -> None:
    headers = {**dockyard.webhook_headers, "Authorization": "Bearer s\u00e9same".encode("latin-1")}
    response = httpx.post(dockyard.url + WEBHOOK, content=b'{"events": []}',
                          headers=headers)  # type: ignore[arg-type]
    assert response.status_code == 401
    assert_matches_openapi(response, WEBHOOK, "post")


def test_health_reports_each_check(client: httpx.Client) -> None:
    response = client.get("/api/v1/health")
    assert_matches_openapi(response, "/api/v1/health", "get")
    body = response.json()
    assert response.status_code == 503
    assert body["status"] == "degraded"
    assert body["checks"]["registry"]["ok"] is False
    assert body["checks"]["eventlog"] == {"ok": True}


def test_metrics_are_prometheus_text(client: httpx.Client) -> None:
    response = client.get("/metrics")
    assert_matches_openapi(response, "/metrics", "get")
    assert "dockyard_webhook_events_appended_total" in response.text


@pytest.mark.parametrize(
    ("method", "path", "status"),
    [("GET", "/api/v1/nothing-here", 404), ("DELETE", "/api/v1/repositories", 405)],
)
def test_aiohttp_errors_are_rendered_as_the_error_object(
    client: httpx.Client, method: str, path: str, status: int
) -> None:
    response = client.request(method, path)
    assert response.status_code == status
    assert response.headers["Content-Type"].startswith("application/json")
    assert_matches_schema(response.json(), "Error")
