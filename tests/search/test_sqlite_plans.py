"""The SQLite index reads each match class by its candidates or by walking its rank index,
whichever is cheaper, and sorts the candidates after all when a bounded walk falls short; a
caller who sees few namespaces has the matching repositories read namespace by namespace
(services/search/adapters/sqlite_search.py): every plan must give the same pages, for every
query of the contract tables, for every caller."""

from __future__ import annotations

from pathlib import Path

import pytest

from services.search.adapters import sqlite_search
from services.search.adapters.sqlite import SqliteSearchIndex
from services.search.query import parse_query
from tests.search.indexing import Changes, search_all
from tests.search.test_index_contract import MATCHING


@pytest.mark.parametrize("visible", [None, frozenset({"library", "team"}), frozenset()])
async def test_walking_and_reading_candidates_agree(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, visible: frozenset[str] | None
) -> None:
    index = SqliteSearchIndex(tmp_path / "search.db")
    await index.open()
    changes = Changes()
    for i in range(30):
        changes.push(f"{('library', 'team', 'acme')[i % 3]}/nginx-{i}", f"1.{i}", minute=i)
        changes.pull(f"{('library', 'team', 'acme')[i % 3]}/nginx-{i}", f"1.{i}", times=i % 4)
        changes.push(f"team/app-{i}", "latest", minute=i)
    changes.push("library/nginx", "latest", minute=99)
    await changes.apply(index)
    queries = [parse_query(text, type_) for text, type_, _ in MATCHING]
    queries += [parse_query(text, type_) for text, type_ in (
        ("ngin", None), ("nginx", "tag"), ("latest", "tag"), ("1.", "tag"), ("n", None),
        ("nginx:1", None), ("app:lat", None), ("sha256:", None), ("ngi:1.2", None),
        ("ng:.2", None), ("x:1", None), ("nginx:", None))]
    queries += [parse_query(text, type_, namespace="team") for text, type_ in (
        ("ngin", None), ("app", None), ("nginx:1", None), ("1.", "tag"), ("latest", "tag"))]
    try:
        monkeypatch.setattr(sqlite_search, "NARROW_SHARE", 0.0)  # name indexes, when it can
        read = [await search_all(index, q, visible=visible, page=4) for q in queries]
        monkeypatch.setattr(sqlite_search, "NARROW_SHARE", 1.0)  # namespace by namespace
        narrowed = [await search_all(index, q, visible=visible, page=4) for q in queries]
        monkeypatch.setattr(sqlite_search, "REPOSITORY_CAP", 1)
        monkeypatch.setattr(sqlite_search, "TAG_CAP", 1)
        walked = [await search_all(index, q, visible=visible, page=4) for q in queries]
        monkeypatch.setattr(sqlite_search, "WALK", 3)  # too short: the candidates finish
        cut_short = [await search_all(index, q, visible=visible, page=4) for q in queries]
    finally:
        await index.close()
    assert narrowed == read
    assert walked == read
    assert cut_short == read
    assert any(read) == (visible != frozenset())
