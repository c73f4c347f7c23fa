"""Directory links and sync-managed memberships on MongoDB.

Collections ``auth_directory_accounts`` (``_id`` = account name; unique on ``source`` +
``external_id`` for linked accounts — a partial index, since pre-created accounts have no
external id yet) and ``auth_directory_managed`` (one document per user: its teams and roles).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime

from pymongo import ASCENDING, IndexModel
from pymongo.asynchronous.client_session import AsyncClientSession

from services.auth.models import ExternalAccount
from services.auth.policy import Role
from services.core.dump import Dumped
from services.core.mongo import (
    Document,
    DumpedCollection,
    MongoDatabase,
    document_of,
    in_transaction,
    record_of,
)

__all__ = ["MongoDirectoryStore"]

_ACCOUNTS = DumpedCollection("auth_directory_accounts", "name",
                             ("source", "external_id", "suspended", "seen_at"))


def _account(doc: Document) -> ExternalAccount:
    seen = doc.get("seen_at")
    return ExternalAccount(doc["_id"], doc["source"], doc["external_id"],
                           bool(doc.get("suspended", False)),
                           None if seen is None else datetime.fromtimestamp(seen, UTC))


class MongoDirectoryStore:
    def __init__(self, database: MongoDatabase) -> None:
        self.database = database
        self._accounts = database["auth_directory_accounts"]
        self._managed = database["auth_directory_managed"]

    async def open(self) -> None:
        await self._accounts.create_indexes([
            IndexModel([("source", ASCENDING), ("external_id", ASCENDING)], unique=True,
                       partialFilterExpression={"linked": True}),
            IndexModel([("source", ASCENDING), ("_id", ASCENDING)]),
        ])

    async def close(self) -> None:
        """The client belongs to whoever opened the database."""

    async def link(self, account: ExternalAccount) -> None:
        await self._accounts.replace_one({"_id": account.name}, {
            "_id": account.name, "source": account.source, "external_id": account.external_id,
            "suspended": account.suspended, "linked": bool(account.external_id),
            "seen_at": None if account.seen_at is None else account.seen_at.timestamp(),
        }, upsert=True)

    async def account(self, name: str) -> ExternalAccount | None:
        doc = await self._accounts.find_one({"_id": name})
        return None if doc is None else _account(doc)

    async def by_external_id(self, source: str, external_id: str) -> ExternalAccount | None:
        if not external_id:
            return None
        doc = await self._accounts.find_one({"source": source, "external_id": external_id})
        return None if doc is None else _account(doc)

    async def accounts(self, source: str) -> list[ExternalAccount]:
        cursor = self._accounts.find({"source": source}).sort("_id", ASCENDING)
        return [_account(doc) async for doc in cursor]

    async def managed(self, user: str) -> dict[str, Role]:
        doc = await self._managed.find_one({"_id": user})
        return {entry["team"]: entry["role"] for entry in doc["teams"]} if doc else {}

    async def set_managed(self, user: str, memberships: dict[str, Role]) -> None:
        # A list, not a team → role map: team names may contain dots, which field names
        # should not.
        teams = [{"team": team, "role": role} for team, role in sorted(memberships.items())]
        await self._managed.replace_one({"_id": user}, {"_id": user, "teams": teams},
                                        upsert=True)

    # export and import ---------------------------------------------------------------------

    async def dump(self) -> AsyncIterator[Dumped]:
        async for doc in self._accounts.find({}).sort("_id", ASCENDING):
            yield "account", record_of(_ACCOUNTS, doc)
        # set_managed keeps each user's teams sorted, so this is (user, team) order.
        async for doc in self._managed.find({}).sort("_id", ASCENDING):
            for entry in doc["teams"]:
                yield "managed_member", {"user": doc["_id"], "team": entry["team"],
                                         "role": entry["role"]}

    async def is_empty(self) -> bool:
        return (await self._accounts.find_one({}, {"_id": 1}) is None
                and await self._managed.find_one({}, {"_id": 1}) is None)

    async def load(self, records: Sequence[Dumped]) -> None:
        async def insert(session: AsyncClientSession) -> None:
            for kind, fields in records:
                if kind == "account":
                    doc = document_of(_ACCOUNTS, fields)
                    doc["linked"] = bool(doc["external_id"])  # the unique index's filter
                    await self._accounts.insert_one(doc, session=session)
                else:  # kept sorted by team, as set_managed writes it
                    entry = {"team": fields["team"], "role": fields["role"]}
                    await self._managed.update_one(
                        {"_id": fields["user"]},
                        {"$push": {"teams": {"$each": [entry], "$sort": {"team": ASCENDING}}}},
                        upsert=True, session=session)

        await in_transaction(self.database, insert)
