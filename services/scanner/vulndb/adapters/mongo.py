"""The vulnerability database on MongoDB, with the SQLite adapter's semantics.

Collections (prefixed ``vulndb_``: the services share one database, each owns its own):

- ``vulndb_advisories`` (``_id`` = OSV id; ``modified_us``, ``aliases`` with a multikey index).
- ``vulndb_affected``: one document per ``affected`` entry, indexed on (ecosystem, package);
  it repeats the advisory's aliases, summary, ``modified_us`` and ``withdrawn`` so matching
  reads one collection, and they are rewritten together whenever the advisory changes.
- ``vulndb_imports`` (``_id`` = ecosystem) and ``vulndb_changes`` (``_id`` = sequence from a
  counter document incremented in the same transaction, so positions are never reused).

A batch of advisories is written in one transaction, as in SQLite.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

from pymongo import ASCENDING, IndexModel, ReturnDocument
from pymongo.asynchronous.client_session import AsyncClientSession

from services.core.mongo import MongoDatabase, in_transaction
from services.core.times import from_micros, micros
from services.scanner.vulndb.adapters.sqlite import SEVERITIES, stored_ranges
from services.scanner.vulndb.models import (
    Advisory,
    Candidate,
    EcosystemStatus,
    PackageKey,
    UpsertResult,
)

__all__ = ["MongoVulnStore"]


class MongoVulnStore:
    def __init__(self, database: MongoDatabase) -> None:
        self.database = database
        self._advisories = database["vulndb_advisories"]
        self._affected = database["vulndb_affected"]
        self._imports = database["vulndb_imports"]
        self._changes = database["vulndb_changes"]
        self._counters = database["vulndb_counters"]

    async def open(self) -> None:
        await self._advisories.create_indexes([IndexModel([("aliases", ASCENDING)])])
        await self._affected.create_indexes([
            IndexModel([("ecosystem", ASCENDING), ("package", ASCENDING)]),
            IndexModel([("advisory", ASCENDING), ("ecosystem", ASCENDING)]),
        ])

    async def close(self) -> None:
        """The client belongs to whoever opened the database."""

    async def ping(self) -> None:
        await self.database.command("ping")

    async def upsert(self, advisories: Sequence[Advisory], imported_at: datetime) -> UpsertResult:
        async def work(session: AsyncClientSession) -> UpsertResult:
            added = updated = unchanged = 0
            changed: set[PackageKey] = set()
            seen: set[str] = set()
            for advisory in advisories:
                outcome = await self._upsert_one(advisory, changed, session)
                seen |= advisory.ecosystems
                added += outcome == "added"
                updated += outcome == "updated"
                unchanged += outcome == "unchanged"
            await self._log_changes(changed, session)
            stamp = micros(imported_at)
            for ecosystem in seen:
                await self._imports.update_one({"_id": ecosystem},
                                               {"$set": {"imported_at_us": stamp}},
                                               upsert=True, session=session)
            return UpsertResult(added, updated, unchanged, frozenset(changed))

        return await in_transaction(self.database, work)

    async def _upsert_one(
        self, advisory: Advisory, changed: set[PackageKey], session: AsyncClientSession
    ) -> str:
        ecosystems = set(advisory.ecosystems)
        modified = micros(advisory.modified)
        stored = await self._advisories.find_one({"_id": advisory.id}, session=session)
        if stored is not None:
            held = set(await self._affected.distinct(
                "ecosystem", {"advisory": advisory.id}, session=session))
            if stored["modified_us"] > modified or (
                    stored["modified_us"] == modified and ecosystems <= held):
                return "unchanged"
            if stored["modified_us"] == modified:
                ecosystems -= held  # same record, more of it: add only what is missing
        scope = {"advisory": advisory.id, "ecosystem": {"$in": sorted(ecosystems)}}
        changed.update([(doc["ecosystem"], doc["package"]) async for doc in self._affected.find(
            scope, {"ecosystem": 1, "package": 1}, session=session)])
        await self._affected.delete_many(scope, session=session)
        shared = {"aliases": list(advisory.aliases), "summary": advisory.summary,
                  "modified_us": modified, "withdrawn": advisory.withdrawn}
        await self._advisories.replace_one({"_id": advisory.id}, shared, upsert=True,
                                           session=session)
        await self._affected.update_many({"advisory": advisory.id}, {"$set": shared},
                                         session=session)
        fresh = [entry for entry in advisory.affected if entry.ecosystem in ecosystems]
        if fresh:
            await self._affected.insert_many([
                {"advisory": advisory.id, "ecosystem": e.ecosystem, "package": e.name,
                 "ranges": stored_ranges(e), "versions": list(e.versions),
                 "severity": int(e.severity), **shared}
                for e in fresh
            ], session=session)
        changed.update((e.ecosystem, e.name) for e in fresh)
        return "added" if stored is None else "updated"

    async def _log_changes(self, changed: set[PackageKey], session: AsyncClientSession) -> None:
        if not changed:
            return
        counter = await self._counters.find_one_and_update(
            {"_id": "changes"}, {"$inc": {"value": len(changed)}}, upsert=True,
            return_document=ReturnDocument.AFTER, session=session)
        if counter is None:  # upsert=True with ReturnDocument.AFTER always returns one
            raise RuntimeError("the vulndb_counters document could not be created")
        first = counter["value"] - len(changed) + 1
        await self._changes.insert_many([
            {"_id": first + offset, "ecosystem": ecosystem, "package": package}
            for offset, (ecosystem, package) in enumerate(sorted(changed))
        ], session=session)

    async def candidates(self, keys: Iterable[PackageKey]) -> list[Candidate]:
        by_ecosystem: dict[str, list[str]] = {}
        for ecosystem, name in keys:
            by_ecosystem.setdefault(ecosystem, []).append(name)
        found: list[Candidate] = []
        for ecosystem, names in by_ecosystem.items():
            query = {"ecosystem": ecosystem, "package": {"$in": names}, "withdrawn": False}
            found.extend([
                Candidate(doc["advisory"], tuple(doc["aliases"]), doc["summary"], ecosystem,
                          doc["package"], doc["ranges"], doc["versions"],
                          SEVERITIES[doc["severity"]])
                async for doc in self._affected.find(query)
            ])
        return found

    async def status(self) -> list[EcosystemStatus]:
        counts: dict[str, tuple[int, int]] = {}
        async for row in await self._affected.aggregate([
            {"$match": {"withdrawn": False}},
            {"$group": {"_id": "$ecosystem", "advisories": {"$addToSet": "$advisory"},
                        "newest": {"$max": "$modified_us"}}},
        ]):
            counts[row["_id"]] = (len(row["advisories"]), row["newest"])
        found = []
        async for doc in self._imports.find({}).sort("_id", ASCENDING):
            count, newest = counts.get(doc["_id"], (0, None))
            found.append(EcosystemStatus(doc["_id"], count,
                                         None if newest is None else from_micros(newest),
                                         from_micros(doc["imported_at_us"])))
        return found

    async def changed_since(self, position: int) -> tuple[frozenset[PackageKey], int]:
        keys: set[PackageKey] = set()
        last = position
        async for doc in self._changes.find({"_id": {"$gt": position}}).sort("_id", ASCENDING):
            keys.add((doc["ecosystem"], doc["package"]))
            last = doc["_id"]
        return frozenset(keys), last

    async def advisory_ids(self, identifier: str) -> list[str]:
        query: dict[str, Any] = {"$or": [{"_id": identifier}, {"aliases": identifier}]}
        return sorted([doc["_id"] async for doc in self._advisories.find(query, {"_id": 1})])
