"""Scan states, reports and inventories on MongoDB, with the SQLite adapter's semantics.

``scanner_scans`` (``_id`` = manifest digest), ``scanner_tags`` unique on (repository, name)
and ``scanner_platforms`` (``_id`` = index digest); the services share a database and each
owns only its own collections. Claiming a scan is one ``find_one_and_update`` from
``queued`` to ``scanning``, so two workers never run the same scan; every other change reads
the current state, checks the transition (services/scanner/scans.py) and writes only if the
state is still the one read.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from pymongo import ASCENDING, IndexModel, ReturnDocument
from pymongo.errors import DuplicateKeyError

from services.core.mongo import Document, MongoDatabase
from services.scanner.inventory import inventory_from_json, inventory_to_json
from services.scanner.models import Finding, Inventory, ScanRecord, ScanStatus
from services.scanner.scans import (
    INVENTORY_ONLY,
    check_transition,
    findings_from_json,
    findings_to_json,
)

__all__ = ["MongoScanStore"]


def _record(doc: Document) -> ScanRecord:
    inventory = doc.get("inventory")
    return ScanRecord(
        digest=doc["_id"],
        repository=doc["repository"],
        status=doc["status"],
        reason=doc.get("reason"),
        queued_at=doc["queued_at"],
        updated_at=doc["updated_at"],
        inventory=inventory_from_json(inventory) if inventory else None,
        findings=findings_from_json(doc.get("findings") or []),
    )


class MongoScanStore:
    def __init__(self, database: MongoDatabase) -> None:
        self.database = database
        self._scans = database["scanner_scans"]
        self._tags = database["scanner_tags"]
        self._platforms = database["scanner_platforms"]

    async def open(self) -> None:
        await self._scans.create_indexes([
            IndexModel([("status", ASCENDING), ("queued_at", ASCENDING)]),
        ])
        await self._tags.create_indexes([
            IndexModel([("repository", ASCENDING), ("name", ASCENDING)], unique=True),
            IndexModel([("repository", ASCENDING), ("digest", ASCENDING)]),
            IndexModel([("digest", ASCENDING)]),
        ])
        await self._platforms.create_indexes([IndexModel([("digests", ASCENDING)])])

    async def close(self) -> None:
        """The database client belongs to whoever opened it."""

    async def ping(self) -> None:
        await self.database.command("ping")

    async def queue(self, digest: str, repository: str, *, again: bool = False) -> bool:
        now = time.time()
        current = await self._scans.find_one({"_id": digest})
        if current is None:
            try:
                await self._scans.insert_one({
                    "_id": digest, "repository": repository, "status": "queued",
                    "reason": None, "queued_at": now, "updated_at": now,
                    "inventory": None, "findings": [],
                })
            except DuplicateKeyError:  # queued by someone else meanwhile
                return False
            return True
        if not again or current["status"] in {"queued", "scanning"}:
            return False
        check_transition(current["status"], "queued")
        result = await self._scans.update_one(
            {"_id": digest, "status": current["status"]},
            {"$set": {"status": "queued", "reason": None, "repository": repository,
                      "queued_at": now, "updated_at": now}},
        )
        return result.modified_count == 1

    async def claim(self) -> ScanRecord | None:
        doc = await self._scans.find_one_and_update(
            {"status": "queued"},
            {"$set": {"status": "scanning", "updated_at": time.time()}},
            sort=[("queued_at", ASCENDING)],
            return_document=ReturnDocument.AFTER,
        )
        return None if doc is None else _record(doc)

    async def finish(
        self,
        digest: str,
        status: ScanStatus,
        *,
        reason: str | None = None,
        inventory: Inventory | None = None,
        findings: Sequence[Finding] = (),
    ) -> ScanRecord:
        current = await self._scans.find_one({"_id": digest})
        check_transition(current["status"] if current else None, status)
        changes: dict[str, Any] = {
            "status": status,
            "reason": reason,
            "inventory": inventory_to_json(inventory) if inventory else None,
            "findings": findings_to_json(findings),
            "updated_at": time.time(),
        }
        doc = await self._scans.find_one_and_update(
            {"_id": digest, "status": current["status"] if current else None},
            {"$set": changes},
            return_document=ReturnDocument.AFTER,
        )
        if doc is None:
            raise LookupError(f"the scan of {digest} changed state while finishing")
        return _record(doc)

    async def forget(self, digest: str) -> None:
        await self._scans.delete_one({"_id": digest})

    async def get(self, digest: str) -> ScanRecord | None:
        doc = await self._scans.find_one({"_id": digest})
        return None if doc is None else _record(doc)

    async def requeue_interrupted(self) -> int:
        result = await self._scans.update_many(
            {"status": "scanning"}, {"$set": {"status": "queued", "updated_at": time.time()}})
        return result.modified_count

    async def inventories(self) -> list[tuple[str, Inventory]]:
        cursor = self._scans.find({"status": "done", "inventory": {"$ne": None}},
                                  {"inventory": 1}).sort("_id", ASCENDING)
        return [(doc["_id"], inventory_from_json(doc["inventory"])) async for doc in cursor]

    async def unmatched(self) -> list[tuple[str, Inventory]]:
        cursor = self._scans.find({"status": "done", "reason": INVENTORY_ONLY,
                                   "inventory": {"$ne": None}},
                                  {"inventory": 1}).sort("_id", ASCENDING)
        return [(doc["_id"], inventory_from_json(doc["inventory"])) async for doc in cursor]

    async def affected(self, vulnerability_ids: Sequence[str]) -> list[tuple[str, Finding]]:
        wanted = list(vulnerability_ids)
        cursor = self._scans.find(
            {"status": "done", "$or": [{"findings.vulnerability_id": {"$in": wanted}},
                                       {"findings.aliases": {"$in": wanted}}]},
            {"findings": 1}).sort("_id", ASCENDING)
        ids = frozenset(wanted)
        return [(doc["_id"], finding) async for doc in cursor
                for finding in findings_from_json(doc["findings"])
                if finding.vulnerability_id in ids or ids.intersection(finding.aliases)]

    async def save_findings(self, digest: str, findings: Sequence[Finding]) -> None:
        result = await self._scans.update_one(
            {"_id": digest, "status": "done"},
            {"$set": {"findings": findings_to_json(findings), "reason": None,
                      "updated_at": time.time()}},
        )
        if result.matched_count == 0:
            raise LookupError(f"no finished scan of {digest} to update")

    async def tag(self, repository: str, name: str, digest: str) -> None:
        await self._tags.update_one({"repository": repository, "name": name},
                                    {"$set": {"digest": digest}}, upsert=True)

    async def untag(self, repository: str, *, name: str | None = None,
                    digest: str | None = None) -> list[str]:
        where: dict[str, str] = {"repository": repository}
        if name is not None:
            where["name"] = name
        elif digest is not None:
            where["digest"] = digest
        named = {str(doc["digest"]) async for doc in self._tags.find(where, {"digest": 1})}
        await self._tags.delete_many(where)
        return sorted(named)

    async def tagged(self, repository: str, name: str) -> str | None:
        doc = await self._tags.find_one({"repository": repository, "name": name})
        return None if doc is None else str(doc["digest"])

    async def tags_of(self, digests: Sequence[str]) -> list[tuple[str, str, str, str]]:
        wanted = list(digests)
        platform_digests = frozenset(wanted)
        found = {(doc["repository"], doc["name"], doc["digest"], doc["digest"])
                 async for doc in self._tags.find({"digest": {"$in": wanted}})}
        targets: dict[str, list[str]] = {}
        async for doc in self._platforms.find({"digests": {"$in": wanted}}):
            targets[doc["_id"]] = [d for d, _ in doc["platforms"] if d in platform_digests]
        async for doc in self._tags.find({"digest": {"$in": list(targets)}}):
            found.update((doc["repository"], doc["name"], doc["digest"], target)
                         for target in targets[doc["digest"]])
        return sorted(found, key=lambda row: (row[0], row[1], row[3]))

    async def set_platforms(self, index: str, platforms: Sequence[tuple[str, str]]) -> None:
        # ``digests`` beside the pairs: what tags_of looks platforms up by (an indexed array).
        await self._platforms.replace_one(
            {"_id": index}, {"platforms": [list(pair) for pair in platforms],
                             "digests": [digest for digest, _ in platforms]}, upsert=True)

    async def platforms(self, index: str) -> list[tuple[str, str]]:
        doc = await self._platforms.find_one({"_id": index})
        return [] if doc is None else [(digest, name) for digest, name in doc["platforms"]]
