"""The search index contract, run against every backend (fixture ``index``): matching and
ranking tables, changes (moves, deletes, redelivery), permission filtering with full pages,
keyset cursors, stars and the rebuild path."""

from __future__ import annotations

from datetime import timedelta

import pytest

from services.search.models import IndexedRepository, IndexedTag
from services.search.ports import SearchIndex
from services.search.query import parse_query
from tests.search.indexing import EPOCH, Changes, digest_of, names, search_all


@pytest.fixture
async def catalog(index: SearchIndex) -> SearchIndex:
    """A small registry: popularity and recency differ so the ranking has something to do."""
    changes = Changes()
    changes.push("library/nginx", "1.25", minute=1, platforms=[("linux", "amd64")])
    changes.push("library/nginx", "latest", minute=2)
    changes.push("team/nginx-proxy", "v2", minute=3)
    changes.push("acme/engine", "1.0", minute=4)
    changes.push("acme/ngin", "1.0", minute=5)
    changes.push("library/redis", "7", minute=6)
    changes.push("team/app", "nginx-compat", minute=7)
    changes.push("team/charts", "1.0.0", minute=8, kind="helm_chart")
    changes.push("nginx", "old", minute=0)  # global namespace: "nginx" has no slash
    changes.pull("library/nginx", "latest", times=3)
    changes.namespace("library", "Official images")
    changes.namespace("team", "The team")
    changes.namespace("acme")
    await changes.apply(index)
    return index


MATCHING = [
    # query, type, expected results in rank order (name, match)
    ("ngin", None, [("acme/ngin", "exact"), ("library/nginx", "prefix"),
                    ("team/nginx-proxy", "prefix"), ("nginx", "prefix"),
                    ("acme/engine", "substring")]),
    ("nginx", None, [("library/nginx", "exact"), ("nginx", "exact"),
                     ("team/nginx-proxy", "prefix")]),
    ("library/nginx", None, [("library/nginx", "exact")]),
    ("LIBRARY/NGINX", None, [("library/nginx", "exact")]),
    ("brary/ng", None, [("library/nginx", "substring")]),
    ("proxy", None, [("team/nginx-proxy", "substring")]),
    ("ng", None, [("library/nginx", "prefix"), ("acme/ngin", "prefix"),
                  ("team/nginx-proxy", "prefix"), ("nginx", "prefix")]),
    ("gi", None, []),  # two characters: prefixes only, though "gi" is inside "nginx"
    ("li", None, [("library/nginx", "prefix"), ("library/redis", "prefix")]),
    ("zzz", None, []),
    ("acme", "namespace", [("acme", "exact")]),
    ("te", "namespace", [("team", "prefix")]),
    ("eam", "namespace", [("team", "substring")]),
    ("nginx:1.25", None, [("library/nginx:1.25", "exact")]),
    ("nginx:la", None, [("library/nginx:latest", "prefix")]),
    ("ngin:1", None, [("library/nginx:1.25", "prefix"), ("acme/ngin:1.0", "prefix"),
                      ("acme/engine:1.0", "substring")]),
    (":1.0", None, [("acme/ngin:1.0", "exact"), ("acme/engine:1.0", "exact"),
                    ("team/charts:1.0.0", "prefix")]),
    ("latest", "tag", [("library/nginx:latest", "exact")]),
    # Either side decides the class: a repository prefix of two characters with a tag
    # substring is a substring match.
    ("ng:ates", None, [("library/nginx:latest", "substring")]),
    ("compat", "tag", [("team/app:nginx-compat", "substring")]),
    ("redis", "tag", [("library/redis:7", "exact")]),
]


@pytest.mark.parametrize(("text", "type_", "expected"), MATCHING)
async def test_matching_and_ranking(
    catalog: SearchIndex, text: str, type_: str | None, expected: list[tuple[str, str]]
) -> None:
    found = await search_all(catalog, parse_query(text, type_))
    assert [(n, item["match"]) for n, item in zip(names(found), found, strict=True)] == expected


async def test_digest_prefixes_find_tags(catalog: SearchIndex) -> None:
    digest = digest_of("library/redis:7")
    for text in (digest[:13], digest, digest.upper()):
        found = await search_all(catalog, text)
        assert names(found) == ["library/redis:7"]
        assert found[0]["digest"] == digest
        assert found[0]["match"] == ("exact" if len(text) == len(digest) else "prefix")
    assert await search_all(catalog, "sha256:" + "0" * 12) == []


async def test_results_carry_what_a_page_renders(catalog: SearchIndex) -> None:
    (tag,) = await search_all(catalog, "nginx:1.25")
    assert tag["digest"] == digest_of("library/nginx:1.25")
    assert tag["namespace"] == "library"
    assert tag["kind"] == "image"
    assert tag["pushed_by"] == "alice"
    assert tag["updated"] == "2026-01-01T00:01:00Z"
    assert [(p["os"], p["architecture"]) for p in tag["platforms"]] == [("linux", "amd64")]
    (repository,) = await search_all(catalog, "library/nginx")
    assert (repository["pulls"], repository["stars"]) == (3, 0)
    assert repository["updated"] == "2026-01-01T00:02:00Z"
    (namespace,) = await search_all(catalog, parse_query("library", "namespace"))
    assert namespace["description"] == "Official images"


async def test_filters_by_namespace_and_artifact_type(catalog: SearchIndex) -> None:
    in_team = parse_query("ngin", namespace="team")
    assert names(await search_all(catalog, in_team)) == ["team/nginx-proxy"]
    charts = parse_query("1.0", "tag", artifact_type="helm_chart")
    assert names(await search_all(catalog, charts)) == ["team/charts:1.0.0"]
    repositories = parse_query("team", artifact_type="helm_chart")
    assert names(await search_all(catalog, repositories)) == ["team/charts"]
    images = parse_query("1.0", "tag", artifact_type="image")
    assert "team/charts:1.0.0" not in names(await search_all(catalog, images))


async def test_a_tag_move_is_reflected(index: SearchIndex) -> None:
    changes = Changes()
    changes.push("team/app", "stable", digest=digest_of("one"), minute=1)
    changes.push("team/app", "stable", digest=digest_of("two"), minute=2)
    await changes.apply(index)
    (tag,) = await search_all(index, "app:stable")
    assert tag["digest"] == digest_of("two")
    assert await search_all(index, digest_of("one")) == []


async def test_deletes_are_reflected(index: SearchIndex) -> None:
    changes = Changes()
    first = changes.push("team/app", "1", minute=1)
    changes.push("team/app", "also-1", digest=first, minute=1)
    changes.push("team/app", "2", minute=2)
    changes.push("team/web", "1", minute=3)
    await changes.apply(index)
    changes.delete_manifest("team/app", first)
    await changes.apply(index)
    assert names(await search_all(index, "team/app:")) == ["team/app:2"]
    changes.untag("team/app", "2")
    await changes.apply(index)
    assert await search_all(index, "team/app:") == []
    # A repository without tags is not shown (as with the registry's own tag list).
    assert names(await search_all(index, "team/")) == ["team/web"]
    changes.delete_repository("team/web")
    await changes.apply(index)
    assert await search_all(index, "team/") == []
    assert await search_all(index, parse_query("team", "namespace")) != []


async def test_redelivered_events_change_nothing(index: SearchIndex) -> None:
    changes = Changes()
    changes.push("team/app", "1")
    changes.pull("team/app", "1", times=2)
    events = changes.events
    assert await index.apply(events) == 3
    assert await index.apply(events) == 0
    (repository,) = await search_all(index, "team/app")
    assert repository["pulls"] == 2


async def test_popularity_counts_pulls_and_stars_then_recency(index: SearchIndex) -> None:
    changes = Changes()
    for minute, name in enumerate(("team/api-old", "team/api-new", "team/api-pulled",
                                   "team/api-starred")):
        changes.push(name, "1", minute=minute)
    changes.pull("team/api-pulled", "1", times=1)
    await changes.apply(index)
    assert await index.star("ann", "team/api-starred")
    assert await index.star("bob", "team/api-starred")
    assert names(await search_all(index, "api")) == [
        "team/api-starred", "team/api-pulled", "team/api-new", "team/api-old"]


@pytest.fixture
async def many(index: SearchIndex) -> SearchIndex:
    """60 matching repositories in 6 namespaces, private to different teams."""
    changes = Changes()
    for i in range(60):
        changes.push(f"ns{i % 6}/service-{i:02d}", "latest", minute=i)
        changes.pull(f"ns{i % 6}/service-{i:02d}", "latest", times=i % 7)
    await changes.apply(index)
    return index


async def test_only_visible_namespaces_appear_and_pages_are_full(many: SearchIndex) -> None:
    visible = frozenset({"ns1", "ns4"})
    query = parse_query("service")
    everything = await search_all(many, query)
    expected = [item for item in everything if item["namespace"] in visible]
    assert len(expected) == 20
    hits = await many.search(query, visible=visible, after=None, limit=7)
    assert len(hits) == 7  # filtered inside the query: the page is full
    assert [item for _, item in hits] == expected[:7]
    assert await search_all(many, query, visible=visible, page=7) == expected
    assert await search_all(many, query, visible=frozenset()) == []
    tags = await search_all(many, parse_query("latest", "tag"), visible=visible, page=3)
    assert {item["namespace"] for item in tags} == visible
    assert len(tags) == 20


@pytest.mark.parametrize("page", [1, 4, 13, 100])
async def test_cursors_walk_the_ranking_without_gaps_or_repeats(
    many: SearchIndex, page: int
) -> None:
    query = parse_query("ns")  # all prefix matches: ties in class, broken by popularity
    one_page = [item for _, item in await many.search(query, visible=None, after=None,
                                                      limit=500)]
    assert len(one_page) == 60
    assert await search_all(many, query, page=page) == one_page
    pulls = [item["pulls"] for item in one_page]
    assert pulls == sorted(pulls, reverse=True)


async def test_stars(index: SearchIndex) -> None:
    changes = Changes()
    changes.push("team/app", "1")
    changes.push("other/secret", "1")
    await changes.apply(index)
    assert not await index.star("ann", "team/nothing")
    assert await index.star("ann", "team/app")
    assert await index.star("ann", "team/app")  # starring twice counts once
    assert await index.star("ann", "other/secret")
    assert await index.star("bob", "team/app")
    (repository,) = await search_all(index, "team/app")
    assert repository["stars"] == 2
    starred = await index.starred("ann", visible=None, after=None, limit=10)
    assert [row["repository"] for row in starred] == ["other/secret", "team/app"]
    visible = await index.starred("ann", visible=frozenset({"team"}), after=None, limit=10)
    assert [row["repository"] for row in visible] == ["team/app"]
    after = await index.starred("ann", visible=None, after="other/secret", limit=10)
    assert [row["repository"] for row in after] == ["team/app"]
    await index.unstar("ann", "team/app")
    await index.unstar("ann", "team/app")
    (repository,) = await search_all(index, "team/app")
    assert repository["stars"] == 1


async def test_a_rebuild_gives_the_same_answers_and_keeps_stars(catalog: SearchIndex) -> None:
    assert await catalog.star("ann", "library/nginx")
    before = {text: await search_all(catalog, parse_query(text, type_))
              for text, type_, _ in MATCHING}
    await catalog.clear()
    assert await search_all(catalog, "nginx") == []
    at = EPOCH + timedelta(minutes=1)

    def tag(repository: str, name: str, minute: int, kind: str = "image",
            pulls: int = 0) -> IndexedTag:
        return IndexedTag(name, digest_of(f"{repository}:{name}"), kind, None, (), "alice",
                          EPOCH + timedelta(minutes=minute), pulls)

    await catalog.load([
        IndexedRepository("library/nginx", at, EPOCH + timedelta(minutes=2), 3,
                          (tag("library/nginx", "1.25", 1),
                           tag("library/nginx", "latest", 2, pulls=3))),
        IndexedRepository("team/nginx-proxy", at, EPOCH + timedelta(minutes=3), 0,
                          (tag("team/nginx-proxy", "v2", 3),)),
        IndexedRepository("acme/engine", at, EPOCH + timedelta(minutes=4), 0,
                          (tag("acme/engine", "1.0", 4),)),
    ])
    await catalog.load([
        IndexedRepository("acme/ngin", at, EPOCH + timedelta(minutes=5), 0,
                          (tag("acme/ngin", "1.0", 5),)),
        IndexedRepository("library/redis", at, EPOCH + timedelta(minutes=6), 0,
                          (tag("library/redis", "7", 6),)),
        IndexedRepository("team/app", at, EPOCH + timedelta(minutes=7), 0,
                          (tag("team/app", "nginx-compat", 7),)),
        IndexedRepository("team/charts", at, EPOCH + timedelta(minutes=8), 0,
                          (tag("team/charts", "1.0.0", 8, "helm_chart"),)),
        IndexedRepository("nginx", EPOCH, EPOCH, 0, (tag("nginx", "old", 0),)),
    ])
    await catalog.add_namespaces({"library": "Official images", "team": "The team"})
    after = {text: await search_all(catalog, parse_query(text, type_))
             for text, type_, _ in MATCHING}
    strip = ("platforms", "updated")  # the rebuild above gives tags no platforms
    for text, found in before.items():
        assert [{k: v for k, v in item.items() if k not in strip} for item in after[text]] == [
            {k: v for k, v in item.items() if k not in strip} for item in found], text


async def test_vulnerability_ids_find_the_tags_of_affected_images(index: SearchIndex) -> None:
    changes = Changes()
    image = changes.push("team/app", "1", minute=1)
    multi = changes.push("library/multi", "latest", minute=2,
                         platforms=[("linux", "amd64"), ("linux", "arm64")])
    changes.push("secret/app", "1", digest=image, minute=3)
    (amd64, arm64) = (digest_of(f"{multi}linuxamd64"), digest_of(f"{multi}linuxarm64"))
    changes.scanned(image, ["CVE-2024-1111", "DSA-5000-1"], High=1, Low=1)
    changes.scanned(amd64, ["CVE-2024-1111", "CVE-2024-2222"], Critical=2)
    changes.scanned(arm64, [], Critical=0)
    await changes.apply(index)

    exact = await search_all(index, "CVE-2024-1111")
    assert [(names([i])[0], i["type"], i["match"], i["vulnerabilities"]) for i in exact] == [
        ("secret/app:1", "vulnerability", "exact", ["CVE-2024-1111"]),
        ("library/multi:latest", "vulnerability", "exact", ["CVE-2024-1111"]),
        ("team/app:1", "vulnerability", "exact", ["CVE-2024-1111"]),
    ]
    visible = await search_all(index, "cve-2024", visible=frozenset({"library", "team"}))
    assert [(names([i])[0], i["match"], i["vulnerabilities"]) for i in visible] == [
        ("library/multi:latest", "prefix", ["CVE-2024-1111", "CVE-2024-2222"]),
        ("team/app:1", "prefix", ["CVE-2024-1111"]),
    ]
    assert names(await search_all(index, "DSA-5000")) == ["secret/app:1", "team/app:1"]
    assert await search_all(index, "CVE-2023") == []

    (tag,) = await search_all(index, "team/app:1")
    assert tag["vulnerability_summary"] == {"Unknown": 0, "Negligible": 0, "Low": 1,
                                            "Medium": 0, "High": 1, "Critical": 0}
    (both,) = await search_all(index, "multi:latest")  # its platforms added up
    assert both["vulnerability_summary"]["Critical"] == 2

    changes.scanned(image)  # scanned again, and failed: nothing known any more
    await changes.apply(index)
    assert names(await search_all(index, "CVE-2024-1111")) == ["library/multi:latest"]
    (tag,) = await search_all(index, "team/app:1")
    assert tag["vulnerability_summary"] is None
