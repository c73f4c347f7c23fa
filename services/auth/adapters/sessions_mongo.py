"""Portal sessions on MongoDB: collection ``auth_sessions``, ``_id`` = the id's SHA-256.

Times are stored as BSON dates so a TTL index (``expireAfterSeconds: 0`` on ``expires_at``)
lets the server drop expired sessions by itself; ``prune`` still deletes them on demand, as the
TTL monitor runs only once a minute (and not at all on some MongoDB-compatible servers).
"""

from __future__ import annotations

from datetime import UTC, datetime

from pymongo import ASCENDING, IndexModel

from services.auth.sessions import Session
from services.core.mongo import Document, MongoDatabase

__all__ = ["MongoSessionStore"]


def _utc(moment: datetime) -> datetime:
    # BSON dates carry milliseconds and no zone; PyMongo returns them naive unless told.
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment


def _session(doc: Document) -> Session:
    return Session(doc["user"], doc["method"], doc["csrf_token"], _utc(doc["created_at"]),
                   _utc(doc["last_seen_at"]), _utc(doc["expires_at"]),
                   doc.get("credential_epoch", 0))


class MongoSessionStore:
    def __init__(self, database: MongoDatabase) -> None:
        self._sessions = database["auth_sessions"]

    async def open(self) -> None:
        await self._sessions.create_indexes([
            IndexModel([("user", ASCENDING)]),
            IndexModel([("expires_at", ASCENDING)], expireAfterSeconds=0),
        ])

    async def close(self) -> None:
        """The client belongs to whoever opened the database."""

    async def ping(self) -> None:
        await self._sessions.database.command("ping")

    async def create(self, id_hash: bytes, session: Session) -> None:
        await self._sessions.insert_one({
            "_id": id_hash, "user": session.user, "method": session.method,
            "csrf_token": session.csrf_token, "created_at": session.created_at,
            "last_seen_at": session.last_seen_at, "expires_at": session.expires_at,
            "credential_epoch": session.credential_epoch,
        })

    async def get(self, id_hash: bytes) -> Session | None:
        doc = await self._sessions.find_one({"_id": id_hash})
        return None if doc is None else _session(doc)

    async def touch(self, id_hash: bytes, *, last_seen_at: datetime,
                    expires_at: datetime) -> None:
        await self._sessions.update_one(
            {"_id": id_hash},
            {"$set": {"last_seen_at": last_seen_at, "expires_at": expires_at}})

    async def delete(self, id_hash: bytes) -> bool:
        return (await self._sessions.delete_one({"_id": id_hash})).deleted_count > 0

    async def delete_user(self, user: str) -> int:
        return (await self._sessions.delete_many({"user": user})).deleted_count

    async def prune(self, now: datetime) -> int:
        return (await self._sessions.delete_many({"expires_at": {"$lte": now}})).deleted_count

    async def set_stash(self, id_hash: bytes, stash: bytes) -> None:
        await self._sessions.update_one({"_id": id_hash}, {"$set": {"stash": stash}})

    async def take_stash(self, id_hash: bytes) -> bytes | None:
        # find_one_and_update returns the document as it was: read and removed in one step.
        doc = await self._sessions.find_one_and_update(
            {"_id": id_hash, "stash": {"$exists": True}}, {"$unset": {"stash": ""}})
        return None if doc is None else bytes(doc["stash"])
