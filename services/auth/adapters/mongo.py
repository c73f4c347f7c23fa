"""The auth store on MongoDB, with the SQLite adapter's semantics and errors.

Collections, prefixed ``auth_`` (the services share one database and each owns only its own):
``auth_users``, ``auth_teams``, ``auth_namespaces`` (``_id`` = name), ``auth_members`` unique on
(team, user), ``auth_app_tokens`` (``_id`` = token id, ``secret_hash`` unique, one live label per
user), ``auth_refresh_tokens`` (``_id`` = secret hash). Times are epoch seconds, as in SQLite.

Writes that touch two collections (an account and its personal namespace, a team and its owner)
run in one transaction. The port deletes no account or team, so a check followed by a write
cannot be invalidated by a concurrent delete.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime

from pymongo import ASCENDING, IndexModel, ReturnDocument
from pymongo.asynchronous.client_session import AsyncClientSession
from pymongo.errors import DuplicateKeyError

from services.auth.models import AppToken, LoginState, Member, Namespace, RefreshToken, Team, User
from services.auth.policy import Role, Visibility
from services.auth.ports import NamespaceRecord
from services.core.dump import Dumped
from services.core.errors import Conflict, NotFound
from services.core.mongo import (
    Document,
    DumpedCollection,
    MongoDatabase,
    document_of,
    in_transaction,
    record_of,
)

__all__ = ["MongoAuthStore"]

# The dump, in AUTH_RECORDS order (each kind after those it refers to).
_DUMPED = {
    "user": DumpedCollection("auth_users", "name", (
        "email", "kind", "password_hash", "admin", "enabled", "failed_logins", "locked_until",
        "credential_epoch", "created_at", "owner_team")),
    "team": DumpedCollection("auth_teams", "name", ("description", "created_at")),
    "member": DumpedCollection("auth_members", None, ("team", "user", "role")),
    "namespace": DumpedCollection("auth_namespaces", "name", (
        "kind", "visibility", "description", "team", "owner", "created_at")),
    "app_token": DumpedCollection("auth_app_tokens", "id", (
        "secret_hash", "user", "label", "created_at", "expires_at", "last_used_at",
        "revoked_at"), blobs=frozenset({"secret_hash"})),
    "refresh_token": DumpedCollection("auth_refresh_tokens", "secret_hash", (
        "family", "generation", "user", "client_id", "credential", "credential_epoch",
        "created_at", "expires_at", "last_used_at", "revoked_at"),
        blobs=frozenset({"secret_hash"})),
}

# The global namespace (repositories without "/"), present from the start as in SQLite.
_GLOBAL_NAMESPACE: Document = {
    "kind": "global", "visibility": "protected",
    "description": "Repositories whose names have no namespace", "team": None, "owner": None,
    "created_at": 0.0,
}


def _ts(value: float | None) -> datetime | None:
    return None if value is None else datetime.fromtimestamp(value, UTC)


def _epoch(value: datetime | None) -> float | None:
    return None if value is None else value.timestamp()


def _user(doc: Document) -> User:
    return User(doc["_id"], doc["email"], bool(doc["admin"]), bool(doc["enabled"]), doc["kind"],
                doc.get("failed_logins", 0), _ts(doc.get("locked_until")), doc.get("owner_team"),
                doc.get("credential_epoch", 0))


def _namespace(doc: Document) -> Namespace:
    return Namespace(doc["_id"], doc["kind"], doc["visibility"], doc["description"],
                     doc.get("team"), doc.get("owner"))


def _token(doc: Document) -> AppToken:
    return AppToken(doc["_id"], doc["user"], doc["label"],
                    datetime.fromtimestamp(doc["created_at"], UTC), _ts(doc.get("expires_at")),
                    _ts(doc.get("last_used_at")), doc.get("revoked_at") is not None)


def _refresh_token(doc: Document) -> RefreshToken:
    return RefreshToken(doc["family"], doc["generation"], doc["user"], doc["client_id"],
                        doc["credential"], doc["credential_epoch"],
                        datetime.fromtimestamp(doc["created_at"], UTC),
                        datetime.fromtimestamp(doc["expires_at"], UTC),
                        _ts(doc.get("last_used_at")), doc.get("revoked_at") is not None)


def _refresh_document(token: RefreshToken, secret_hash: bytes) -> Document:
    return {
        "_id": secret_hash, "family": token.family, "generation": token.generation,
        "user": token.user, "client_id": token.client_id, "credential": token.credential,
        "credential_epoch": token.credential_epoch, "created_at": token.created_at.timestamp(),
        "expires_at": token.expires_at.timestamp(), "last_used_at": _epoch(token.last_used_at),
        "revoked_at": time.time() if token.revoked else None,
    }


class MongoAuthStore:
    def __init__(self, database: MongoDatabase) -> None:
        self.database = database
        self._users = database["auth_users"]
        self._teams = database["auth_teams"]
        self._members = database["auth_members"]
        self._namespaces = database["auth_namespaces"]
        self._app_tokens = database["auth_app_tokens"]
        self._refresh_tokens = database["auth_refresh_tokens"]

    async def open(self) -> None:
        await self._members.create_indexes([
            IndexModel([("team", ASCENDING), ("user", ASCENDING)], unique=True),
            IndexModel([("user", ASCENDING), ("team", ASCENDING)]),
        ])
        await self._namespaces.create_indexes([IndexModel([("team", ASCENDING)])])
        await self._app_tokens.create_indexes([
            IndexModel([("secret_hash", ASCENDING)], unique=True),
            # A label names one live token of a user; revoked ones keep their label for the
            # record. (A partial filter cannot say "revoked_at is null", hence ``live``.)
            IndexModel([("user", ASCENDING), ("label", ASCENDING)], unique=True,
                       partialFilterExpression={"live": True}, name="live_label"),
            IndexModel([("user", ASCENDING), ("created_at", ASCENDING)]),
        ])
        await self._refresh_tokens.create_indexes([
            IndexModel([("family", ASCENDING)]),
            IndexModel([("user", ASCENDING), ("credential", ASCENDING)]),
        ])
        # Refresh tokens from before families were bound to nothing: they end (as in SQLite).
        await self._refresh_tokens.delete_many({"family": {"$exists": False}})
        # Accounts written before credential epochs existed are in epoch 0 (as in SQLite).
        await self._users.update_many({"credential_epoch": {"$exists": False}},
                                      {"$set": {"credential_epoch": 0}})
        await self._namespaces.update_one(
            {"_id": ""}, {"$setOnInsert": _GLOBAL_NAMESPACE}, upsert=True)

    async def close(self) -> None:
        """The client belongs to whoever opened the database."""

    async def ping(self) -> None:
        await self.database.command("ping")

    # accounts ------------------------------------------------------------------------------

    async def create_user(self, user: User, password_hash: str | None) -> None:
        async def insert(session: AsyncClientSession) -> None:
            if await self._namespaces.find_one({"_id": user.name}, {"_id": 1}, session=session):
                raise Conflict("name_taken", f"a namespace is already called {user.name!r}")
            if user.owner_team is not None:
                await self._require_team(user.owner_team, session)
            now = time.time()
            try:
                await self._users.insert_one({
                    "_id": user.name, "email": user.email, "kind": user.kind,
                    "password_hash": password_hash, "admin": user.admin, "enabled": user.enabled,
                    "failed_logins": 0, "locked_until": None, "credential_epoch": 0,
                    "created_at": now, "owner_team": user.owner_team,
                }, session=session)
            except DuplicateKeyError:
                raise Conflict("name_taken", f"an account is already called {user.name!r}") \
                    from None
            if user.kind == "user":
                await self._namespaces.insert_one({
                    "_id": user.name, "kind": "personal", "visibility": "private",
                    "description": "", "team": None, "owner": user.name, "created_at": now,
                }, session=session)

        await in_transaction(self.database, insert)

    async def get_user(self, name: str) -> tuple[User, str | None] | None:
        doc = await self._users.find_one({"_id": name})
        return None if doc is None else (_user(doc), doc.get("password_hash"))

    async def list_users(self, *, after: str | None, limit: int) -> list[User]:
        docs = self._users.find({"_id": {"$gt": after or ""}}).sort("_id", ASCENDING).limit(limit)
        return [_user(doc) async for doc in docs]

    async def update_user(
        self,
        name: str,
        *,
        email: str | None = None,
        admin: bool | None = None,
        enabled: bool | None = None,
        password_hash: str | None = None,
        bump_epoch: bool = False,
    ) -> User:
        changes: Document = {k: v for k, v in (("email", email), ("admin", admin),
                                               ("enabled", enabled),
                                               ("password_hash", password_hash))
                             if v is not None}
        update: Document = {"$set": changes} if changes else {}
        if bump_epoch:
            update["$inc"] = {"credential_epoch": 1}
        if update:
            doc = await self._users.find_one_and_update(
                {"_id": name}, update, return_document=ReturnDocument.AFTER)
        else:
            doc = await self._users.find_one({"_id": name})
        if doc is None:
            raise NotFound("user_not_found", f"no account named {name!r}")
        return _user(doc)

    async def set_login_state(
        self, name: str, state: LoginState, *, expected: LoginState | None
    ) -> bool:
        query: Document = {"_id": name}
        if expected is not None:
            # None matches a missing field too, as _user reads one (0 failures, no lock).
            query["failed_logins"] = expected.failures or {"$in": [0, None]}
            query["locked_until"] = _epoch(expected.locked_until)
        result = await self._users.update_one(query, {"$set": {
            "failed_logins": state.failures, "locked_until": _epoch(state.locked_until)}})
        return result.matched_count == 1

    # teams ---------------------------------------------------------------------------------

    async def create_team(self, team: Team, owner: str) -> None:
        async def insert(session: AsyncClientSession) -> None:
            await self._require_user(owner, session)
            try:
                await self._teams.insert_one({"_id": team.name, "description": team.description,
                                              "created_at": time.time()}, session=session)
            except DuplicateKeyError:
                raise Conflict("team_exists", f"a team is already called {team.name!r}") \
                    from None
            await self._members.insert_one({"team": team.name, "user": owner, "role": "owner"},
                                           session=session)

        await in_transaction(self.database, insert)

    async def get_team(self, name: str) -> Team | None:
        doc = await self._teams.find_one({"_id": name})
        return None if doc is None else Team(doc["_id"], doc["description"])

    async def list_teams(self, *, member: str | None) -> list[Team]:
        where: Document = {}
        if member is not None:
            where = {"_id": {"$in": [doc["team"] async for doc in self._members.find(
                {"user": member}, {"team": 1})]}}
        return [Team(doc["_id"], doc["description"])
                async for doc in self._teams.find(where).sort("_id", ASCENDING)]

    async def members(self, team: str) -> list[Member]:
        return [Member(doc["team"], doc["user"], doc["role"])
                async for doc in self._members.find({"team": team}).sort("user", ASCENDING)]

    async def set_member(self, team: str, user: str, role: Role) -> Role | None:
        await self._require_team(team)
        await self._require_user(user)
        before = await self._members.find_one_and_update(
            {"team": team, "user": user}, {"$set": {"role": role}}, upsert=True,
            return_document=ReturnDocument.BEFORE)
        return None if before is None else before["role"]

    async def remove_member(self, team: str, user: str) -> Role | None:
        await self._require_team(team)
        removed = await self._members.find_one_and_delete({"team": team, "user": user})
        return None if removed is None else removed["role"]

    async def roles_of(self, user: str) -> dict[str, Role]:
        return {doc["team"]: doc["role"] async for doc in self._members.find({"user": user})}

    # namespaces ----------------------------------------------------------------------------

    async def create_namespace(self, namespace: Namespace) -> None:
        if namespace.team is not None:
            await self._require_team(namespace.team)
        if await self._users.find_one({"_id": namespace.name}, {"_id": 1}):
            raise Conflict("name_taken", f"an account is already called {namespace.name!r}")
        try:
            await self._namespaces.insert_one({
                "_id": namespace.name, "kind": namespace.kind,
                "visibility": namespace.visibility, "description": namespace.description,
                "team": namespace.team, "owner": namespace.owner, "created_at": time.time(),
            })
        except DuplicateKeyError:
            raise Conflict("namespace_exists",
                           f"a namespace is already called {namespace.name!r}") from None

    async def update_namespace(
        self,
        name: str,
        *,
        visibility: Visibility | None = None,
        description: str | None = None,
        team: str | None = None,
    ) -> Namespace:
        changes = {k: v for k, v in (("visibility", visibility), ("description", description),
                                     ("team", team)) if v is not None}
        if team is not None:
            await self._require_team(team)
        if changes:
            doc = await self._namespaces.find_one_and_update(
                {"_id": name}, {"$set": changes}, return_document=ReturnDocument.AFTER)
        else:
            doc = await self._namespaces.find_one({"_id": name})
        if doc is None:
            raise NotFound("namespace_not_found", f"no namespace named {name!r}")
        return _namespace(doc)

    async def namespaces(
        self, account: str | None, names: Sequence[str] | None = None
    ) -> list[NamespaceRecord]:
        where: Document = {} if names is None else {"_id": {"$in": list(names)}}
        docs = await self._namespaces.find(where).sort("_id", ASCENDING).to_list()
        teams = sorted({doc["team"] for doc in docs if doc.get("team") is not None})
        roles: dict[str, Role] = {}
        if teams:
            roles = {m["team"]: m["role"] async for m in self._members.find(
                {"user": account or "", "team": {"$in": teams}})}
        return [(_namespace(doc), roles.get(doc["team"]) if doc.get("team") else None)
                for doc in docs]

    # tokens --------------------------------------------------------------------------------

    async def create_app_token(self, token: AppToken, secret_hash: bytes) -> None:
        await self._require_user(token.user)
        try:
            await self._app_tokens.insert_one({
                "_id": token.id, "secret_hash": secret_hash, "user": token.user,
                "label": token.label, "created_at": token.created_at.timestamp(),
                "expires_at": _epoch(token.expires_at), "last_used_at": None,
                "revoked_at": None, "live": True,
            })
        except DuplicateKeyError:
            raise Conflict("token_exists", f"{token.user} already has a token labelled "
                           f"{token.label!r}; revoke it or choose another label") from None

    async def find_app_token(self, secret_hash: bytes) -> tuple[AppToken, User] | None:
        cursor = await self._app_tokens.aggregate([
            {"$match": {"secret_hash": secret_hash}},
            {"$limit": 1},
            {"$lookup": {"from": self._users.name, "localField": "user",
                         "foreignField": "_id", "as": "account"}},
        ])
        for doc in await cursor.to_list():
            if doc["account"]:
                return _token(doc), _user(doc["account"][0])
        return None

    async def touch_app_token(self, token_id: str, at: datetime) -> None:
        await self._app_tokens.update_one({"_id": token_id},
                                          {"$set": {"last_used_at": at.timestamp()}})

    async def list_app_tokens(self, user: str) -> list[AppToken]:
        return [_token(doc) async for doc in self._app_tokens.find({"user": user}).sort(
            [("created_at", ASCENDING), ("_id", ASCENDING)])]

    async def revoke_app_token(self, user: str, label: str) -> AppToken | None:
        doc = await self._app_tokens.find_one_and_update(
            {"user": user, "label": label, "live": True},
            {"$set": {"revoked_at": time.time(), "live": False}},
            return_document=ReturnDocument.AFTER)
        return None if doc is None else _token(doc)

    async def create_refresh_token(self, token: RefreshToken, secret_hash: bytes) -> None:
        await self._refresh_tokens.insert_one(_refresh_document(token, secret_hash))

    async def find_refresh_token(self, secret_hash: bytes) -> tuple[RefreshToken, User] | None:
        doc = await self._refresh_tokens.find_one({"_id": secret_hash})
        if doc is None:
            return None
        account = await self._users.find_one({"_id": doc["user"]})
        return None if account is None else (_refresh_token(doc), _user(account))

    async def rotate_refresh_token(
        self, presented: bytes, successor: RefreshToken, successor_hash: bytes, at: datetime
    ) -> bool:
        # Three single-document steps, not a transaction (FerretDB has none): two rotations
        # of one token at the same moment may leave both successors live.
        used = await self._refresh_tokens.find_one_and_update(
            {"_id": presented, "revoked_at": None}, {"$set": {"last_used_at": at.timestamp()}},
            {"family": 1})
        if used is None:
            return False
        await self._refresh_tokens.update_many(
            {"family": used["family"], "_id": {"$ne": presented}, "revoked_at": None},
            {"$set": {"revoked_at": at.timestamp()}})
        await self._refresh_tokens.insert_one(_refresh_document(successor, successor_hash))
        return True

    async def revoke_refresh_family(self, family: str) -> int:
        result = await self._refresh_tokens.update_many(
            {"family": family, "revoked_at": None}, {"$set": {"revoked_at": time.time()}})
        return result.modified_count

    async def revoke_refresh_tokens(self, user: str, credential: str) -> int:
        result = await self._refresh_tokens.update_many(
            {"user": user, "credential": credential, "revoked_at": None},
            {"$set": {"revoked_at": time.time()}})
        return result.modified_count

    # export and import ---------------------------------------------------------------------

    async def dump(self) -> AsyncIterator[Dumped]:
        for kind, collection in _DUMPED.items():
            order = [("_id", ASCENDING)] if collection.key else [("team", ASCENDING),
                                                                  ("user", ASCENDING)]
            async for doc in self.database[collection.name].find({}).sort(order):
                yield kind, record_of(collection, doc)

    async def is_empty(self) -> bool:
        for collection in (self._users, self._teams, self._app_tokens, self._refresh_tokens):
            if await collection.find_one({}, {"_id": 1}) is not None:
                return False
        return await self._namespaces.find_one({"kind": {"$ne": "global"}}, {"_id": 1}) is None

    async def load(self, records: Sequence[Dumped]) -> None:
        async def insert(session: AsyncClientSession) -> None:
            for kind, fields in records:
                doc = document_of(_DUMPED[kind], fields)
                if kind == "app_token":
                    doc["live"] = doc["revoked_at"] is None
                if kind == "namespace" and doc["kind"] == "global":
                    await self._namespaces.replace_one({"_id": doc["_id"]}, doc, upsert=True,
                                                       session=session)
                else:
                    await self.database[_DUMPED[kind].name].insert_one(doc, session=session)

        await in_transaction(self.database, insert)

    # ---------------------------------------------------------------------------------------

    async def _require_user(self, name: str, session: AsyncClientSession | None = None) -> None:
        if await self._users.find_one({"_id": name}, {"_id": 1}, session=session) is None:
            raise NotFound("user_not_found", f"no account named {name!r}")

    async def _require_team(self, name: str, session: AsyncClientSession | None = None) -> None:
        if await self._teams.find_one({"_id": name}, {"_id": 1}, session=session) is None:
            raise NotFound("team_not_found", f"no team named {name!r}")
