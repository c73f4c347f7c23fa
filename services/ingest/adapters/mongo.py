"""The catalog and the activity log on MongoDB, with the SQLite adapters' semantics.

Collections (prefixed ``catalog_`` / ``activity_`` because the services share one database and
each owns only its own):

- ``catalog_repositories`` (``_id`` = name), ``catalog_manifests`` unique on (repository,
  digest), ``catalog_tags`` unique on (repository, name), ``catalog_applied_events`` (``_id`` =
  event id). An event's operations and its applied id are written in one transaction, so a
  redelivered event is recognised and a crash never leaves half an event.
- ``activity_entries`` (``_id`` = entry id, ``seq`` unique) and ``activity_counters``. ``seq``
  comes from a counter document incremented in the same transaction as the inserts; concurrent
  writers conflict on that document, so entries become visible in ``seq`` order and the live
  stream (``since``) never skips one committed late.

Times are integers in microseconds, as in SQLite, so keyset positions are exact.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from dataclasses import asdict
from datetime import UTC, datetime
from itertools import groupby
from typing import Any

from pymongo import (
    ASCENDING,
    DESCENDING,
    DeleteMany,
    DeleteOne,
    IndexModel,
    ReturnDocument,
    UpdateOne,
)
from pymongo.asynchronous.client_session import AsyncClientSession

from services.core.dump import Dumped
from services.core.mongo import (
    Document,
    DumpedCollection,
    MongoDatabase,
    document_of,
    in_transaction,
    record_of,
)
from services.core.reference import namespace_of
from services.core.times import from_micros, micros, rfc3339
from services.ingest.models import (
    Activity,
    ActivityFilter,
    DeleteManifest,
    DeleteRepository,
    DeleteTag,
    Operation,
    PutManifest,
    PutTag,
    RecordPull,
)
from services.ingest.ports import Row

__all__ = ["MongoActivityStore", "MongoCatalogStore"]


def _iso(value: int | None) -> str | None:
    moment = from_micros(value)
    return None if moment is None else rfc3339(moment)


class MongoCatalogStore:
    def __init__(self, database: MongoDatabase) -> None:
        self.database = database
        self._repositories = database["catalog_repositories"]
        self._manifests = database["catalog_manifests"]
        self._tags = database["catalog_tags"]
        self._applied = database["catalog_applied_events"]

    async def open(self) -> None:
        await self._repositories.create_indexes([
            IndexModel([("namespace", ASCENDING), ("_id", ASCENDING)]),
        ])
        await self._manifests.create_indexes([
            IndexModel([("repository", ASCENDING), ("digest", ASCENDING)], unique=True),
            IndexModel([("repository", ASCENDING), ("subject", ASCENDING)]),
        ])
        await self._tags.create_indexes([
            IndexModel([("repository", ASCENDING), ("name", ASCENDING)], unique=True),
            IndexModel([("repository", ASCENDING), ("digest", ASCENDING)]),
        ])

    async def close(self) -> None:
        """The client belongs to whoever opened the database."""

    async def ping(self) -> None:
        await self.database.command("ping")

    async def apply(self, changes: Sequence[tuple[str, Sequence[Operation]]]) -> int:
        """One transaction per batch, one ordered bulk write per collection.

        Writes to one collection keep their order, and no write reads another collection, so
        grouping them by collection ends in the state applying them one by one would. A pull
        reads the tags, so the writes before it go first.
        """
        if not changes:
            return 0

        async def work(session: AsyncClientSession) -> int:
            ids = [event_id for event_id, _ in changes]
            seen = {doc["_id"] async for doc in self._applied.find(
                {"_id": {"$in": ids}}, {"_id": 1}, session=session)}
            now = datetime.now(UTC).timestamp()
            applied: list[Document] = []
            pending: dict[str, list[Write]] = {}
            for event_id, operations in changes:
                if event_id in seen:
                    continue
                seen.add(event_id)
                applied.append({"_id": event_id, "applied_at": now})
                for operation in operations:
                    if isinstance(operation, RecordPull):
                        await self._flush(pending, session)
                        await self._record_pull(operation, session)
                    else:
                        for collection, write in _writes(operation):
                            pending.setdefault(collection, []).append(write)
            await self._flush(pending, session)
            if applied:
                await self._applied.insert_many(applied, session=session)
            return len(applied)

        return await in_transaction(self.database, work)

    async def _flush(self, pending: dict[str, list[Write]], session: AsyncClientSession) -> None:
        for collection, writes in pending.items():
            await self.database[collection].bulk_write(writes, ordered=True, session=session)
        pending.clear()

    async def _record_pull(self, pull: RecordPull, session: AsyncClientSession) -> None:
        at = micros(pull.at)
        counting = {"$inc": {"pull_count": 1}, "$max": {"last_pulled_at": at}}
        if pull.tag:
            result = await self._tags.update_one(
                {"repository": pull.repository, "name": pull.tag}, counting, session=session)
            counted = result.matched_count > 0
        else:
            # A pull by digest counts for the repository when a tag points at that digest, so
            # the platform manifests fetched after an index are not counted twice.
            counted = await self._tags.find_one(
                {"repository": pull.repository, "digest": pull.digest}, {"_id": 1},
                session=session) is not None
        if counted:
            await self._repositories.update_one({"_id": pull.repository}, counting,
                                                session=session)

    async def repositories(
        self,
        *,
        namespace: str | None,
        after: str | None,
        limit: int,
        visible: frozenset[str] | None = None,
    ) -> list[Row]:
        query: Document = {"_id": {"$gt": after or ""}}
        if namespace is not None or visible is not None:
            query["namespace"] = {}
        if namespace is not None:
            query["namespace"]["$eq"] = namespace
        if visible is not None:
            query["namespace"]["$in"] = sorted(visible)
        docs = await self._repositories.find(query).sort(
            "_id", ASCENDING).limit(limit).to_list()
        return await self._repository_rows(docs)

    async def repository(self, name: str) -> Row | None:
        doc = await self._repositories.find_one({"_id": name})
        return None if doc is None else (await self._repository_rows([doc]))[0]

    async def _repository_rows(self, docs: list[Document]) -> list[Row]:
        names = [doc["_id"] for doc in docs]
        counts: dict[str, int] = {}
        if names:
            cursor = await self._tags.aggregate([
                {"$match": {"repository": {"$in": names}}},
                {"$group": {"_id": "$repository", "count": {"$sum": 1}}},
            ])
            counts = {row["_id"]: row["count"] async for row in cursor}
        return [
            {
                "name": doc["_id"],
                "namespace": doc["namespace"],
                "tag_count": counts.get(doc["_id"], 0),
                "pull_count": doc.get("pull_count", 0),
                "created_at": _iso(doc["created_at"]),
                "updated_at": _iso(doc["updated_at"]),
                "last_pulled_at": _iso(doc.get("last_pulled_at")),
            }
            for doc in docs
        ]

    async def tags(self, repository: str, *, after: str | None, limit: int) -> list[Row]:
        tags = await self._tags.find(
            {"repository": repository, "name": {"$gt": after or ""}}
        ).sort("name", ASCENDING).limit(limit).to_list()
        digests = sorted({tag["digest"] for tag in tags})
        manifests: dict[str, Document] = {}
        referrers: dict[str, list[Row]] = {}
        if digests:
            async for doc in self._manifests.find(
                {"repository": repository, "digest": {"$in": digests}}
            ):
                manifests[doc["digest"]] = doc
            async for doc in self._manifests.find(
                {"repository": repository, "subject": {"$in": digests}}
            ).sort("digest", ASCENDING):
                referrers.setdefault(doc["subject"], []).append(
                    {"digest": doc["digest"], "kind": doc["kind"],
                     "artifact_type": doc.get("artifact_type")}
                )
        return [
            _tag_row(repository, tag, manifests.get(tag["digest"], {}),
                     referrers.get(tag["digest"], []))
            for tag in tags
        ]

    async def tag_digests(self, repository: str) -> dict[str, str]:
        return {doc["name"]: doc["digest"] async for doc in self._tags.find(
            {"repository": repository}, {"name": 1, "digest": 1})}

    async def repository_names(self) -> list[str]:
        return [doc["_id"] async for doc in self._repositories.find(
            {}, {"_id": 1}).sort("_id", ASCENDING)]

    async def dump(self) -> AsyncIterator[Dumped]:
        for kind, collection in _CATALOG_DUMPED.items():
            async for doc in self.database[collection.name].find({}).sort(_order(collection)):
                yield kind, record_of(collection, doc)

    async def is_empty(self) -> bool:
        return (await self._repositories.find_one({}, {"_id": 1}) is None
                and await self._applied.find_one({}, {"_id": 1}) is None)

    async def load(self, records: Sequence[Dumped]) -> None:
        await in_transaction(self.database, lambda session: _insert(
            self.database, _CATALOG_DUMPED, records, session))


Write = UpdateOne | DeleteOne | DeleteMany


def _writes(operation: Operation) -> list[tuple[str, Write]]:
    """The writes of a catalog operation (all but RecordPull), by collection."""
    match operation:
        case PutManifest():
            at = micros(operation.pushed_at)
            return [_touch(operation.repository, at), ("catalog_manifests", UpdateOne(
                {"repository": operation.repository, "digest": operation.digest},
                {
                    "$set": {
                        "media_type": operation.media_type,
                        "kind": operation.kind,
                        "artifact_type": operation.artifact_type,
                        "size": operation.size,
                        "platforms": [asdict(p) for p in operation.platforms],
                        "subject": operation.subject,
                    },
                    "$setOnInsert": {"pushed_by": operation.pushed_by, "pushed_at": at},
                },
                upsert=True,
            ))]
        case PutTag():
            at = micros(operation.pushed_at)
            return [_touch(operation.repository, at), ("catalog_tags", UpdateOne(
                {"repository": operation.repository, "name": operation.tag},
                {
                    "$set": {"digest": operation.digest, "pushed_by": operation.pushed_by,
                             "pushed_at": at},
                    "$setOnInsert": {"pull_count": 0, "last_pulled_at": None},
                },
                upsert=True,
            ))]
        case DeleteManifest():
            where = {"repository": operation.repository, "digest": operation.digest}
            return [("catalog_tags", DeleteMany(where)), ("catalog_manifests", DeleteMany(where))]
        case DeleteTag():
            return [("catalog_tags", DeleteMany(
                {"repository": operation.repository, "name": operation.tag}))]
        case DeleteRepository():
            # What SQLite's ON DELETE CASCADE does for the repository's rows.
            where = {"repository": operation.repository}
            return [("catalog_tags", DeleteMany(where)), ("catalog_manifests", DeleteMany(where)),
                    ("catalog_repositories", DeleteOne({"_id": operation.repository}))]
        case RecordPull():
            raise TypeError("a pull reads the tags; MongoCatalogStore._record_pull applies it")


def _touch(name: str, at: int) -> tuple[str, Write]:
    return "catalog_repositories", UpdateOne(
        {"_id": name},
        {
            "$setOnInsert": {"namespace": namespace_of(name), "created_at": at,
                             "pull_count": 0, "last_pulled_at": None},
            "$max": {"updated_at": at},
        },
        upsert=True,
    )


def _tag_row(repository: str, tag: Document, manifest: Document, referrers: list[Row]) -> Row:
    return {
        "repository": repository,
        "name": tag["name"],
        "digest": tag["digest"],
        "media_type": manifest.get("media_type"),
        "kind": manifest.get("kind"),
        "artifact_type": manifest.get("artifact_type"),
        "size": manifest.get("size"),
        "platforms": manifest.get("platforms", []),
        "subject": manifest.get("subject"),
        "referrers": referrers,
        "pushed_by": tag.get("pushed_by"),
        "pushed_at": _iso(tag["pushed_at"]),
        "pull_count": tag.get("pull_count", 0),
        "last_pulled_at": _iso(tag.get("last_pulled_at")),
    }


class MongoActivityStore:
    def __init__(self, database: MongoDatabase) -> None:
        self.database = database
        self._entries = database["activity_entries"]
        self._counters = database["activity_counters"]

    async def open(self) -> None:
        keyset = [("time_us", DESCENDING), ("seq", DESCENDING)]
        # One index per filter, each ending in the keyset (time_us, seq) the feed pages by.
        await self._entries.create_indexes([
            IndexModel([("seq", ASCENDING)], unique=True),
            IndexModel(keyset),
            *(IndexModel([(column, ASCENDING), *keyset])
              for column in ("repository", "namespace", "actor", "type")),
        ])

    async def close(self) -> None:
        """The client belongs to whoever opened the database."""

    async def ping(self) -> None:
        await self.database.command("ping")

    async def record(self, activities: Sequence[Activity]) -> list[Activity]:
        if not activities:
            return []

        async def work(session: AsyncClientSession) -> list[Activity]:
            ids = [a.id for a in activities]
            seen = {doc["_id"] async for doc in self._entries.find(
                {"_id": {"$in": ids}}, {"_id": 1}, session=session)}
            new = []
            for activity in activities:
                if activity.id not in seen:
                    seen.add(activity.id)
                    new.append(activity)
            if not new:
                return []
            counter = await self._counters.find_one_and_update(
                {"_id": "seq"}, {"$inc": {"value": len(new)}}, upsert=True,
                return_document=ReturnDocument.AFTER, session=session,
            )
            if counter is None:  # an upsert returning the document after it: never
                raise RuntimeError("activity_counters: the sequence counter was not returned")
            first = int(counter["value"]) - len(new) + 1
            await self._entries.insert_many(
                [_document(a, seq) for seq, a in enumerate(new, start=first)], session=session)
            return new

        return await in_transaction(self.database, work)

    async def search(
        self, where: ActivityFilter, *, before: tuple[int, int] | None, limit: int
    ) -> list[tuple[tuple[int, int], Activity]]:
        docs = await self._entries.find(_search_filter(where, before)).sort(
            [("time_us", DESCENDING), ("seq", DESCENDING)]).limit(limit).to_list()
        return [((doc["time_us"], doc["seq"]), _activity(doc)) for doc in docs]

    async def since(self, sequence: int, limit: int) -> list[tuple[int, Activity]]:
        docs = await self._entries.find({"seq": {"$gt": sequence}}).sort(
            "seq", ASCENDING).limit(limit).to_list()
        return [(doc["seq"], _activity(doc)) for doc in docs]

    async def last_sequence(self) -> int:
        doc = await self._entries.find_one({}, {"seq": 1}, sort=[("seq", DESCENDING)])
        return 0 if doc is None else int(doc["seq"])

    async def dump(self) -> AsyncIterator[Dumped]:
        async for doc in self._entries.find({}).sort("seq", ASCENDING):
            yield "activity", record_of(_ACTIVITY_DUMPED["activity"], doc)

    async def is_empty(self) -> bool:
        return await self.last_sequence() == 0

    async def load(self, records: Sequence[Dumped]) -> None:
        if not records:
            return
        highest = max(int(fields["seq"]) for _, fields in records)

        async def work(session: AsyncClientSession) -> None:
            await _insert(self.database, _ACTIVITY_DUMPED, records, session)
            # Entries recorded after the import continue after the imported ones.
            await self._counters.update_one({"_id": "seq"}, {"$max": {"value": highest}},
                                            upsert=True, session=session)

        await in_transaction(self.database, work)


# The dumps, in CATALOG_RECORDS / ACTIVITY_RECORDS order.
_CATALOG_DUMPED = {
    "repository": DumpedCollection("catalog_repositories", "name", (
        "namespace", "created_at", "updated_at", "pull_count", "last_pulled_at")),
    "manifest": DumpedCollection("catalog_manifests", None, (
        "repository", "digest", "media_type", "kind", "artifact_type", "size", "platforms",
        "subject", "pushed_by", "pushed_at")),
    "tag": DumpedCollection("catalog_tags", None, (
        "repository", "name", "digest", "pushed_by", "pushed_at", "pull_count",
        "last_pulled_at")),
    "applied_event": DumpedCollection("catalog_applied_events", "id", ("applied_at",)),
}
_ACTIVITY_DUMPED = {
    "activity": DumpedCollection("activity_entries", "id", (
        "seq", "type", "actor", "repository", "namespace", "tag", "digest", "time_us", "address",
        "user_agent", "synthetic", "subject", "team", "details", "audience")),
}


def _order(collection: DumpedCollection) -> list[tuple[str, int]]:
    """The dump's order: the natural key (the unique index) when ``_id`` is an ObjectId."""
    if collection.key is not None:
        return [("_id", ASCENDING)]
    return [("repository", ASCENDING), (collection.fields[1], ASCENDING)]


async def _insert(
    database: MongoDatabase,
    collections: dict[str, DumpedCollection],
    records: Sequence[Dumped],
    session: AsyncClientSession,
) -> None:
    """Insert records in order, one insert_many per run of the same kind."""
    for kind, run in groupby(records, key=lambda record: record[0]):
        collection = collections[kind]
        await database[collection.name].insert_many(
            [document_of(collection, fields) for _, fields in run], session=session)


def _search_filter(where: ActivityFilter, before: tuple[int, int] | None) -> Document:
    """The feed's conditions as one flat document, every field's operators together.

    Flat rather than an ``$and`` list: mongod normalises either, but SecantusDB plans an
    ``$and`` as a collection scan. The planner then picks the index of the equality filter
    given; each index ends in the keyset (time_us, seq), which serves the sort.
    """
    query: Document = {}

    def add(field: str, condition: Document) -> None:
        query.setdefault(field, {}).update(condition)

    for field, value in (("repository", where.repository), ("actor", where.actor),
                         ("namespace", where.namespace)):
        if value is not None:
            add(field, {"$eq": value})
    if where.types:
        add("type", {"$in": list(where.types)})
    if where.visible is not None:
        add("audience", {"$eq": "namespace"})
        add("namespace", {"$in": sorted(where.visible)})
    if where.since is not None:
        add("time_us", {"$gte": micros(where.since)})
    if where.until is not None:
        add("time_us", {"$lt": micros(where.until)})
    if before is not None:
        # (time_us, seq) < before, with a plain upper bound on time_us so the index scan
        # starts at the cursor instead of filtering every entry above it.
        time_us, seq = before
        add("time_us", {"$lte": time_us})
        query["$or"] = [{"time_us": {"$lt": time_us}}, {"seq": {"$lt": seq}}]
    return query


def _document(a: Activity, seq: int) -> Document:
    return {
        "_id": a.id, "seq": seq, "type": a.type, "actor": a.actor, "repository": a.repository,
        "namespace": a.namespace, "tag": a.tag, "digest": a.digest, "time_us": micros(a.time),
        "address": a.address, "user_agent": a.user_agent, "synthetic": a.synthetic,
        "subject": a.subject, "team": a.team, "details": a.details, "audience": a.audience,
    }


def _activity(doc: dict[str, Any]) -> Activity:
    return Activity(
        id=doc["_id"], type=doc["type"], actor=doc["actor"], repository=doc["repository"],
        namespace=doc["namespace"], tag=doc["tag"], digest=doc["digest"],
        time=from_micros(doc["time_us"]), address=doc["address"],
        user_agent=doc["user_agent"], synthetic=bool(doc["synthetic"]), subject=doc["subject"],
        team=doc["team"], details=doc["details"], audience=doc["audience"],
    )
