"""The search index on MongoDB, without ``$text``: an n-gram index serves substring search.

Every searchable name is stored with ``grams``, the set of its three-character substrings, under
a multikey index. A text of three characters or more can only be inside a name holding all of
its trigrams, so ``{grams: {$all: trigrams(text)}}`` finds every candidate through the index;
the candidates are then checked for the text itself (trigrams may occur apart) and ranked with
services.search.query's rules, the same ones the SQLite backend writes in SQL. Shorter texts
match by prefix only, through range scans on the name fields. The caller's namespaces are a
term of the candidate query, so nothing they may not see is read or ranked.

Collections are prefixed ``search_``; the services share one database and each owns its own.
Row ids in positions (the ranking's last tie-breaker) are 63-bit hashes of the natural keys.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

from pymongo import ASCENDING, IndexModel
from pymongo.asynchronous.client_session import AsyncClientSession

from services.core.mongo import Document, MongoDatabase, in_transaction
from services.core.reference import namespace_of
from services.core.times import from_micros, micros, rfc3339
from services.ingest.models import (
    DeleteManifest,
    DeleteRepository,
    DeleteTag,
    PutManifest,
    PutTag,
    RecordPull,
)
from services.search.models import (
    IndexChange,
    IndexedRepository,
    Position,
    PutFindings,
    PutNamespace,
    Query,
    platform_fields,
)
from services.search.ports import Hit
from services.search.query import (
    MATCHES,
    MIN_SUBSTRING,
    classify,
    classify_tag,
    last_component,
)

__all__ = ["MongoSearchIndex", "trigrams"]

_TOP = "\U0010ffff"
_KIND_FILTER = {"image": ["image", "index"]}
Session = AsyncClientSession | None


def trigrams(text: str) -> list[str]:
    """The distinct three-character substrings of ``text`` (lower case), in order."""
    text = text.lower()
    return list(dict.fromkeys(text[i:i + 3] for i in range(len(text) - 2)))


def _row_id(key: str) -> int:
    return int.from_bytes(hashlib.blake2b(key.encode(), digest_size=8).digest()) >> 1


def _iso(value: int | None) -> str | None:
    moment = from_micros(value)
    return None if moment is None else rfc3339(moment)


def _name_filter(fields: Sequence[str], text: str) -> Document:
    """Candidates for ``text``: all its trigrams in ``grams``, or a prefix of a field."""
    if len(text) >= MIN_SUBSTRING:
        return {"grams": {"$all": trigrams(text)}}
    return {"$or": [{field: {"$gte": text, "$lt": text + _TOP}} for field in fields]}


class MongoSearchIndex:
    def __init__(self, database: MongoDatabase) -> None:
        self.database = database
        self._namespaces = database["search_namespaces"]
        self._repositories = database["search_repositories"]
        self._manifests = database["search_manifests"]
        self._tags = database["search_tags"]
        self._stars = database["search_stars"]
        self._applied = database["search_applied_events"]
        # By manifest digest: scan findings, and the image manifests an index holds.
        self._findings = database["search_findings"]
        self._children = database["search_children"]

    async def open(self) -> None:
        await self._namespaces.create_indexes([IndexModel([("grams", ASCENDING)])])
        await self._repositories.create_indexes([
            IndexModel([("grams", ASCENDING)]),
            IndexModel([("short", ASCENDING)]),
            IndexModel([("namespace", ASCENDING)]),
        ])
        await self._tags.create_indexes([
            IndexModel([("grams", ASCENDING)]),
            IndexModel([("repository", ASCENDING), ("name", ASCENDING)], unique=True),
            IndexModel([("lname", ASCENDING)]),
            IndexModel([("digest", ASCENDING)]),
        ])
        await self._manifests.create_indexes([
            IndexModel([("repository", ASCENDING), ("digest", ASCENDING)], unique=True),
        ])
        await self._findings.create_indexes([IndexModel([("vulnerabilities", ASCENDING)])])
        await self._children.create_indexes([
            IndexModel([("parent", ASCENDING), ("child", ASCENDING)], unique=True),
            IndexModel([("child", ASCENDING)]),
        ])
        await self._stars.create_indexes([
            IndexModel([("user", ASCENDING), ("repository", ASCENDING)], unique=True),
            IndexModel([("repository", ASCENDING)]),
        ])

    async def close(self) -> None:
        """The client belongs to whoever opened the database."""

    async def ping(self) -> None:
        await self.database.command("ping")

    # writing -------------------------------------------------------------------------------

    async def apply(self, changes: Sequence[tuple[str, Sequence[IndexChange]]]) -> int:
        if not changes:
            return 0

        async def work(session: AsyncClientSession) -> int:
            ids = [event_id for event_id, _ in changes]
            seen = {doc["_id"] async for doc in self._applied.find(
                {"_id": {"$in": ids}}, {"_id": 1}, session=session)}
            now = datetime.now(UTC).timestamp()
            new = 0
            for event_id, operations in changes:
                if event_id in seen:
                    continue
                seen.add(event_id)
                new += 1
                await self._applied.insert_one({"_id": event_id, "applied_at": now},
                                               session=session)
                for operation in operations:
                    await self._apply(operation, session)
            return new

        return await in_transaction(self.database, work)

    async def _apply(self, change: IndexChange, session: Session) -> None:
        match change:
            case PutNamespace():
                await self._put_namespace(change.name, change.description, micros(change.at),
                                          session)
            case PutFindings():
                await self._findings.replace_one(
                    {"_id": change.digest},
                    {"summary": change.summary, "vulnerabilities": list(change.vulnerabilities)},
                    upsert=True, session=session)
            case PutManifest():
                await self._touch_repository(change.repository, micros(change.pushed_at),
                                             session)
                await self._add_children(change.digest, [p.digest for p in change.platforms],
                                         session)
                await self._manifests.replace_one(
                    {"repository": change.repository, "digest": change.digest},
                    {"repository": change.repository, "digest": change.digest,
                     "kind": change.kind, "artifact_type": change.artifact_type,
                     "platforms": platform_fields(change.platforms)},
                    upsert=True, session=session)
            case PutTag():
                await self._put_tag(change, session)
            case DeleteTag():
                await self._delete_tags({"repository": change.repository, "name": change.tag},
                                        session)
            case DeleteManifest():
                await self._delete_tags(
                    {"repository": change.repository, "digest": change.digest}, session)
                await self._manifests.delete_one(
                    {"repository": change.repository, "digest": change.digest}, session=session)
            case DeleteRepository():
                await self._drop_repository(change.repository, session)
                await self._stars.delete_many({"repository": change.repository},
                                              session=session)
            case RecordPull():
                await self._record_pull(change, session)

    async def _add_children(self, parent: str, children: list[str], session: Session) -> None:
        for child in children:
            await self._children.update_one({"parent": parent, "child": child},
                                            {"$setOnInsert": {}}, upsert=True, session=session)

    async def _put_namespace(self, name: str, description: str, at: int,
                             session: Session) -> None:
        await self._namespaces.update_one(
            {"_id": name},
            {"$set": {"description": description}, "$max": {"updated_at": at},
             "$setOnInsert": {"grams": trigrams(name), "row": _row_id(name)}},
            upsert=True, session=session)

    async def _ensure_namespace(self, name: str, at: int, session: Session) -> None:
        if name:
            await self._namespaces.update_one(
                {"_id": name},
                {"$setOnInsert": {"description": "", "updated_at": at, "grams": trigrams(name),
                                  "row": _row_id(name)}},
                upsert=True, session=session)

    async def _touch_repository(self, name: str, at: int, session: Session) -> None:
        await self._ensure_namespace(namespace_of(name), at, session)
        stars = await self._stars.count_documents({"repository": name}, session=session)
        await self._repositories.update_one(
            {"_id": name},
            {"$max": {"updated_at": at},
             "$setOnInsert": {"namespace": namespace_of(name), "short": last_component(name),
                              "grams": trigrams(name), "row": _row_id(name), "tag_count": 0,
                              "pulls": 0, "stars": stars, "created_at": at}},
            upsert=True, session=session)

    async def _put_tag(self, tag: PutTag, session: Session) -> None:
        at = micros(tag.pushed_at)
        await self._touch_repository(tag.repository, at, session)
        manifest = await self._manifests.find_one(
            {"repository": tag.repository, "digest": tag.digest}, session=session) or {}
        result = await self._tags.update_one(
            {"repository": tag.repository, "name": tag.tag},
            {"$set": {"digest": tag.digest, "kind": manifest.get("kind"),
                      "artifact_type": manifest.get("artifact_type"),
                      "platforms": manifest.get("platforms", []), "pushed_by": tag.pushed_by,
                      "pushed_at": at},
             "$setOnInsert": {"namespace": namespace_of(tag.repository),
                              "lname": tag.tag.lower(), "grams": trigrams(tag.tag),
                              "row": _row_id(f"{tag.repository}:{tag.tag}"), "pulls": 0}},
            upsert=True, session=session)
        if result.upserted_id is not None:
            await self._repositories.update_one({"_id": tag.repository},
                                                {"$inc": {"tag_count": 1}}, session=session)

    async def _delete_tags(self, where: Document, session: Session) -> None:
        removed = (await self._tags.delete_many(where, session=session)).deleted_count
        if removed:
            await self._repositories.update_one({"_id": where["repository"]},
                                                {"$inc": {"tag_count": -removed}},
                                                session=session)

    async def _drop_repository(self, name: str, session: Session) -> None:
        await self._tags.delete_many({"repository": name}, session=session)
        await self._manifests.delete_many({"repository": name}, session=session)
        await self._repositories.delete_one({"_id": name}, session=session)

    async def _record_pull(self, pull: RecordPull, session: Session) -> None:
        if pull.tag:
            counted = (await self._tags.update_one(
                {"repository": pull.repository, "name": pull.tag}, {"$inc": {"pulls": 1}},
                session=session)).matched_count
        else:
            counted = await self._tags.count_documents(
                {"repository": pull.repository, "digest": pull.digest}, limit=1,
                session=session)
        if counted:
            await self._repositories.update_one({"_id": pull.repository},
                                                {"$inc": {"pulls": 1}}, session=session)

    async def clear(self) -> None:
        # Findings and stars do not come from the catalog: they stay.
        for collection in (self._tags, self._manifests, self._repositories, self._namespaces,
                           self._children):
            await collection.delete_many({})

    async def load(self, repositories: Sequence[IndexedRepository]) -> None:
        for repository in repositories:
            await self._drop_repository(repository.name, None)
        names = [r.name for r in repositories]
        stars: dict[str, int] = {}
        async for doc in await self._stars.aggregate([
            {"$match": {"repository": {"$in": names}}},
            {"$group": {"_id": "$repository", "count": {"$sum": 1}}},
        ]):
            stars[doc["_id"]] = doc["count"]
        repository_docs, tag_docs, manifest_docs = [], [], {}
        for repository in repositories:
            namespace = namespace_of(repository.name)
            await self._ensure_namespace(namespace, micros(repository.created_at), None)
            repository_docs.append({
                "_id": repository.name, "namespace": namespace,
                "short": last_component(repository.name), "grams": trigrams(repository.name),
                "row": _row_id(repository.name), "tag_count": len(repository.tags),
                "pulls": repository.pulls, "stars": stars.get(repository.name, 0),
                "created_at": micros(repository.created_at),
                "updated_at": micros(repository.updated_at)})
            for tag in repository.tags:
                platforms = platform_fields(tag.platforms)
                tag_docs.append({
                    "repository": repository.name, "name": tag.name, "namespace": namespace,
                    "lname": tag.name.lower(), "grams": trigrams(tag.name),
                    "row": _row_id(f"{repository.name}:{tag.name}"), "digest": tag.digest,
                    "kind": tag.kind, "artifact_type": tag.artifact_type,
                    "platforms": platforms, "pushed_by": tag.pushed_by,
                    "pushed_at": micros(tag.pushed_at), "pulls": tag.pulls})
                manifest_docs[repository.name, tag.digest] = {
                    "repository": repository.name, "digest": tag.digest,
                    "kind": tag.kind or "other", "artifact_type": tag.artifact_type,
                    "platforms": platforms}
        if repository_docs:
            await self._repositories.insert_many(repository_docs)
        if tag_docs:
            await self._tags.insert_many(tag_docs)
        if manifest_docs:
            await self._manifests.insert_many(list(manifest_docs.values()))
        for repository in repositories:
            for tag in repository.tags:
                await self._add_children(tag.digest, [p.digest for p in tag.platforms], None)

    async def add_namespaces(self, names: dict[str, str]) -> None:
        now = micros(datetime.now(UTC))
        for name, description in names.items():
            await self._put_namespace(name, description, now, None)

    # stars ---------------------------------------------------------------------------------

    async def star(self, user: str, repository: str) -> bool:
        async def work(session: AsyncClientSession) -> bool:
            if await self._repositories.count_documents({"_id": repository}, limit=1,
                                                        session=session) == 0:
                return False
            result = await self._stars.update_one(
                {"user": user, "repository": repository},
                {"$setOnInsert": {"starred_at": micros(datetime.now(UTC))}},
                upsert=True, session=session)
            if result.upserted_id is not None:
                await self._repositories.update_one({"_id": repository}, {"$inc": {"stars": 1}},
                                                    session=session)
            return True

        return await in_transaction(self.database, work)

    async def unstar(self, user: str, repository: str) -> None:
        async def work(session: AsyncClientSession) -> None:
            removed = await self._stars.delete_one({"user": user, "repository": repository},
                                                   session=session)
            if removed.deleted_count:
                await self._repositories.update_one({"_id": repository},
                                                    {"$inc": {"stars": -1}}, session=session)

        await in_transaction(self.database, work)

    async def starred(
        self, user: str, *, visible: frozenset[str] | None, after: str | None, limit: int
    ) -> list[dict[str, Any]]:
        stars = {doc["repository"]: doc["starred_at"] async for doc in self._stars.find(
            {"user": user, "repository": {"$gt": after or ""}})}
        where: Document = {"_id": {"$in": sorted(stars)}}
        if visible is not None:
            where["namespace"] = {"$in": sorted(visible)}
        return [
            {"repository": doc["_id"], "namespace": doc["namespace"], "pulls": doc["pulls"],
             "stars": doc["stars"], "updated": _iso(doc["updated_at"]),
             "starred_at": _iso(stars[doc["_id"]])}
            async for doc in self._repositories.find(where).sort("_id", ASCENDING).limit(limit)
        ]

    async def size_bytes(self) -> int:
        total = 0
        for name in ("search_namespaces", "search_repositories", "search_manifests",
                     "search_tags", "search_stars"):
            stats = await self.database.command("collStats", name)
            total += int(stats.get("storageSize", 0)) + int(stats.get("totalIndexSize", 0))
        return total

    # searching -----------------------------------------------------------------------------

    async def search(
        self,
        query: Query,
        *,
        visible: frozenset[str] | None,
        after: Position | None,
        limit: int,
    ) -> list[Hit]:
        scope: Document = {}
        if visible is not None:
            scope["namespace"] = {"$in": sorted(visible)}
        if query.namespace is not None:
            scope.setdefault("$and", []).append({"namespace": query.namespace})
        if query.type == "repository":
            hits = await self._search_repositories(query, scope)
        elif query.type == "namespace":
            hits = await self._search_namespaces(query, scope)
        elif query.type == "tag":
            hits = await self._search_tags(query, scope)
        else:
            hits = await self._search_vulnerabilities(query, scope)
        hits.sort(key=lambda hit: hit[0])
        if after is not None:
            hits = [hit for hit in hits if hit[0] > after]
        page = hits[:limit]
        if query.type in {"tag", "vulnerability"}:
            await self._add_findings([item for _, item in page],
                                     query.text if query.type == "vulnerability" else None)
        return page

    async def _parts(self, digests: list[str]) -> dict[str, set[str]]:
        """Each digest with the image manifests it holds (itself, for an image)."""
        parts: dict[str, set[str]] = {digest: {digest} for digest in digests}
        async for doc in self._children.find({"parent": {"$in": digests}}):
            parts[doc["parent"]].add(doc["child"])
        return parts

    async def _add_findings(self, items: list[dict[str, Any]], matching: str | None) -> None:
        """As the SQLite adapter: ``vulnerability_summary`` and, when searching ids, the ids."""
        parts = await self._parts(sorted({item["digest"] for item in items}))
        everything = sorted(set().union(*parts.values()))
        found = {doc["_id"]: doc async for doc in self._findings.find({"_id": {"$in": everything}})}
        for item in items:
            known = [found[d] for d in sorted(parts[item["digest"]]) if d in found]
            summaries = [doc["summary"] for doc in known if doc["summary"] is not None]
            item["vulnerability_summary"] = (
                {label: sum(s.get(label, 0) for s in summaries) for label in summaries[0]}
                if summaries else None)
            if matching is not None:
                item["vulnerabilities"] = sorted({
                    v for doc in known for v in doc["vulnerabilities"] if v.startswith(matching)})

    async def _search_vulnerabilities(self, query: Query, scope: Document) -> list[Hit]:
        text = query.text
        affected = {doc["_id"]: doc["vulnerabilities"] async for doc in self._findings.find(
            {"vulnerabilities": {"$gte": text, "$lt": text + _TOP}})}
        parents: dict[str, set[str]] = {}
        async for doc in self._children.find({"child": {"$in": sorted(affected)}}):
            parents.setdefault(doc["parent"], set()).add(doc["child"])
        digests = sorted(set(affected) | set(parents))
        tags = replace(query, type="tag", text=text.lower(), digest=None)
        hits = []
        for position, item in await self._search_tags(tags, scope, {"$in": digests}):
            ids = {v for d in {item["digest"], *parents.get(item["digest"], ())}
                   for v in affected.get(d, ())}
            match = 0 if text in ids else 1
            hits.append(((match, *position[1:]), {**item, "type": "vulnerability",
                                                  "match": MATCHES[match]}))
        return hits

    async def _matching_repositories(self, text: str, scope: Document) -> list[Document]:
        where = {**scope, **_name_filter(("_id", "short"), text), "tag_count": {"$gt": 0}}
        return [doc async for doc in self._repositories.find(where)
                if classify((doc["_id"], doc["short"]), text) is not None]

    async def _search_repositories(self, query: Query, scope: Document) -> list[Hit]:
        found = await self._matching_repositories(query.text, scope)
        if query.artifact_type is not None:
            kinds = _KIND_FILTER.get(query.artifact_type, [query.artifact_type])
            having = set(await self._tags.distinct("repository", {
                "repository": {"$in": [doc["_id"] for doc in found]}, "kind": {"$in": kinds}}))
            found = [doc for doc in found if doc["_id"] in having]
        hits = []
        for doc in found:
            match = classify((doc["_id"], doc["short"]), query.text)
            if match is None:
                continue
            position = (match, -(doc["pulls"] + doc["stars"]), -doc["updated_at"], doc["row"])
            hits.append((position, {
                "type": "repository", "match": MATCHES[match], "repository": doc["_id"],
                "namespace": doc["namespace"], "tag": None, "digest": None,
                "pulls": doc["pulls"], "stars": doc["stars"],
                "updated": _iso(doc["updated_at"])}))
        return hits

    async def _search_namespaces(self, query: Query, scope: Document) -> list[Hit]:
        where: Document = {**_name_filter(("_id",), query.text)}
        if "namespace" in scope:
            where["_id"] = scope["namespace"]
        if query.namespace is not None:
            where.setdefault("$and", []).append({"_id": query.namespace})
        hits = []
        async for doc in self._namespaces.find(where):
            match = classify((doc["_id"],), query.text)
            if match is None:
                continue
            hits.append(((match, 0, -doc["updated_at"], doc["row"]), {
                "type": "namespace", "match": MATCHES[match], "namespace": doc["_id"],
                "repository": None, "tag": None, "digest": None,
                "description": doc["description"], "updated": _iso(doc["updated_at"])}))
        return hits

    async def _tag_candidates(self, query: Query, scope: Document,
                              digests: Document | None) -> list[Document]:
        where: Document = dict(scope)
        if query.artifact_type is not None:
            where["kind"] = {"$in": _KIND_FILTER.get(query.artifact_type, [query.artifact_type])}
        if digests is not None:
            where["digest"] = digests
        elif query.digest is not None:
            where["digest"] = {"$gte": query.digest, "$lt": query.digest + _TOP}
        elif query.repository is not None and query.tag is not None:
            if query.repository:
                repositories = await self._matching_repositories(query.repository, scope)
                where["repository"] = {"$in": [doc["_id"] for doc in repositories]}
            if query.tag:
                where.update(_name_filter(("lname",), query.tag))
        else:
            repositories = await self._matching_repositories(query.text, scope)
            by_repository = {**where, "repository": {"$in": [d["_id"] for d in repositories]}}
            by_name = {**where, **_name_filter(("lname",), query.text)}
            where = {"$or": [by_repository, by_name]}
        return [doc async for doc in self._tags.find(where)]

    async def _search_tags(self, query: Query, scope: Document,
                           digests: Document | None = None) -> list[Hit]:
        candidates = await self._tag_candidates(query, scope, digests)
        popularity = {doc["_id"]: doc async for doc in self._repositories.find(
            {"_id": {"$in": sorted({doc["repository"] for doc in candidates})}},
            {"pulls": 1, "stars": 1})}
        hits = []
        for doc in candidates:
            if digests is not None:
                match: int | None = 0  # the caller ranks by the vulnerability id
            elif query.digest is not None:
                match = 0 if doc["digest"] == query.digest else 1
            else:
                match = classify_tag(doc["repository"], doc["name"], query)
            owner = popularity.get(doc["repository"])
            if match is None or owner is None:
                continue
            position = (match, -(owner["pulls"] + owner["stars"]), -doc["pushed_at"], doc["row"])
            hits.append((position, {
                "type": "tag", "match": MATCHES[match], "repository": doc["repository"],
                "namespace": doc["namespace"], "tag": doc["name"], "digest": doc["digest"],
                "kind": doc["kind"], "artifact_type": doc["artifact_type"],
                "platforms": doc["platforms"], "pushed_by": doc["pushed_by"],
                "pulls": doc["pulls"], "stars": owner["stars"],
                "updated": _iso(doc["pushed_at"])}))
        return hits
