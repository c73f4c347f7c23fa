"""The auth store on SQLite (``auth.db`` in the data directory)."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime
from typing import Any

from services.auth.models import AppToken, LoginState, Member, Namespace, RefreshToken, Team, User
from services.auth.policy import Role, Visibility
from services.auth.ports import NamespaceRecord
from services.core.dump import Dumped
from services.core.errors import Conflict, NotFound
from services.core.sqlite import SqliteStore, Table, insert_record, row_record

__all__ = ["SqliteAuthStore"]

MIGRATIONS = (
    """
    CREATE TABLE users (
        name          TEXT PRIMARY KEY,
        email         TEXT NOT NULL,
        kind          TEXT NOT NULL CHECK (kind IN ('user', 'bot')),
        password_hash TEXT,
        admin         INTEGER NOT NULL,
        enabled       INTEGER NOT NULL,
        failed_logins INTEGER NOT NULL DEFAULT 0,
        locked_until  REAL,
        created_at    REAL NOT NULL
    );
    CREATE TABLE teams (
        name        TEXT PRIMARY KEY,
        description TEXT NOT NULL,
        created_at  REAL NOT NULL
    );
    CREATE TABLE members (
        team TEXT NOT NULL REFERENCES teams (name) ON DELETE CASCADE,
        user TEXT NOT NULL REFERENCES users (name) ON DELETE CASCADE,
        role TEXT NOT NULL CHECK (role IN ('viewer', 'contributor', 'owner')),
        PRIMARY KEY (team, user)
    );
    CREATE INDEX members_user ON members (user, team);
    CREATE TABLE namespaces (
        name        TEXT PRIMARY KEY,
        kind        TEXT NOT NULL CHECK (kind IN ('global', 'personal', 'team')),
        visibility  TEXT NOT NULL CHECK (visibility IN ('private', 'protected', 'public')),
        description TEXT NOT NULL,
        team        TEXT REFERENCES teams (name),
        owner       TEXT REFERENCES users (name) ON DELETE CASCADE,
        created_at  REAL NOT NULL
    );
    CREATE INDEX namespaces_team ON namespaces (team);
    INSERT INTO namespaces (name, kind, visibility, description, created_at)
    VALUES ('', 'global', 'protected', 'Repositories whose names have no namespace', 0);
    CREATE TABLE app_tokens (
        id           TEXT PRIMARY KEY,
        secret_hash  BLOB NOT NULL UNIQUE,
        user         TEXT NOT NULL REFERENCES users (name) ON DELETE CASCADE,
        label        TEXT NOT NULL,
        created_at   REAL NOT NULL,
        expires_at   REAL,
        last_used_at REAL,
        revoked_at   REAL
    );
    -- A label names one live token of a user; revoked ones keep their label for the record.
    CREATE UNIQUE INDEX app_tokens_label ON app_tokens (user, label) WHERE revoked_at IS NULL;
    CREATE TABLE refresh_tokens (
        secret_hash BLOB PRIMARY KEY,
        user        TEXT NOT NULL REFERENCES users (name) ON DELETE CASCADE,
        client_id   TEXT NOT NULL,
        created_at  REAL NOT NULL,
        revoked_at  REAL
    );
    CREATE INDEX refresh_tokens_user ON refresh_tokens (user);
    """,
    # The team that owns a bot (NULL: the administrators, as for every bot made before).
    # Deferred: an import loads accounts before the teams they point to, in one transaction.
    """
    ALTER TABLE users ADD COLUMN owner_team TEXT
        REFERENCES teams (name) DEFERRABLE INITIALLY DEFERRED;
    """,
    # Sessions, refresh tokens and verified passwords count only in the epoch they were made in.
    "ALTER TABLE users ADD COLUMN credential_epoch INTEGER NOT NULL DEFAULT 0;",
    # Refresh tokens bound to their client, credential and epoch, expiring, in rotation
    # families. Those from before were bound to nothing (whether a password or an application
    # token minted them is unknown): the upgrade ends them, and their clients sign in again.
    """
    DROP TABLE refresh_tokens;
    CREATE TABLE refresh_tokens (
        secret_hash      BLOB PRIMARY KEY,
        family           TEXT NOT NULL,
        generation       INTEGER NOT NULL,
        user             TEXT NOT NULL REFERENCES users (name) ON DELETE CASCADE,
        client_id        TEXT NOT NULL,
        credential       TEXT NOT NULL,
        credential_epoch INTEGER NOT NULL,
        created_at       REAL NOT NULL,
        expires_at       REAL NOT NULL,
        last_used_at     REAL,
        revoked_at       REAL
    );
    CREATE INDEX refresh_tokens_family ON refresh_tokens (family) WHERE revoked_at IS NULL;
    CREATE INDEX refresh_tokens_credential ON refresh_tokens (user, credential)
        WHERE revoked_at IS NULL;
    """,
)

_USER_COLUMNS = ("name, email, admin, enabled, kind, failed_logins, locked_until, owner_team,"
                 " credential_epoch")
_NAMESPACE_COLUMNS = "n.name, n.kind, n.visibility, n.description, n.team, n.owner"
_TOKEN_COLUMNS = "id, user, label, created_at, expires_at, last_used_at, revoked_at"  # noqa: S105
_REFRESH_COLUMNS = ("family", "generation", "user", "client_id", "credential",
                    "credential_epoch", "created_at", "expires_at", "last_used_at", "revoked_at")


def _ts(value: float | None) -> datetime | None:
    return None if value is None else datetime.fromtimestamp(value, UTC)


def _epoch(value: datetime | None) -> float | None:
    return None if value is None else value.timestamp()


def _user(row: sqlite3.Row) -> User:
    return User(row["name"], row["email"], bool(row["admin"]), bool(row["enabled"]), row["kind"],
                row["failed_logins"], _ts(row["locked_until"]), row["owner_team"],
                row["credential_epoch"])


def _namespace(row: sqlite3.Row) -> Namespace:
    return Namespace(row["name"], row["kind"], row["visibility"], row["description"],
                     row["team"], row["owner"])


def _token(row: sqlite3.Row) -> AppToken:
    return AppToken(row["id"], row["user"], row["label"],
                    datetime.fromtimestamp(row["created_at"], UTC), _ts(row["expires_at"]),
                    _ts(row["last_used_at"]), row["revoked_at"] is not None)


def _refresh_token(row: sqlite3.Row) -> RefreshToken:
    """From columns named ``t_<column>`` (apart from the account's, which a join brings)."""
    return RefreshToken(row["t_family"], row["t_generation"], row["t_user"], row["t_client_id"],
                        row["t_credential"], row["t_credential_epoch"],
                        datetime.fromtimestamp(row["t_created_at"], UTC),
                        datetime.fromtimestamp(row["t_expires_at"], UTC),
                        _ts(row["t_last_used_at"]), row["t_revoked_at"] is not None)


def _insert_refresh_token(conn: sqlite3.Connection, token: RefreshToken,
                          secret_hash: bytes) -> None:
    conn.execute(
        f"INSERT INTO refresh_tokens (secret_hash, {', '.join(_REFRESH_COLUMNS)})"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (secret_hash, token.family, token.generation, token.user, token.client_id,
         token.credential, token.credential_epoch, token.created_at.timestamp(),
         token.expires_at.timestamp(), _epoch(token.last_used_at),
         time.time() if token.revoked else None))


class SqliteAuthStore(SqliteStore):
    migrations = MIGRATIONS

    # accounts ------------------------------------------------------------------------------

    async def create_user(self, user: User, password_hash: str | None) -> None:
        def insert(conn: sqlite3.Connection) -> None:
            if conn.execute("SELECT 1 FROM namespaces WHERE name = ?", (user.name,)).fetchone():
                raise Conflict("name_taken", f"a namespace is already called {user.name!r}")
            if user.owner_team is not None:
                _require_team(conn, user.owner_team)
            try:
                conn.execute(
                    f"INSERT INTO users ({_USER_COLUMNS}, password_hash, created_at)"
                    " VALUES (?, ?, ?, ?, ?, 0, NULL, ?, 0, ?, ?)",
                    (user.name, user.email, user.admin, user.enabled, user.kind, user.owner_team,
                     password_hash, time.time()),
                )
            except sqlite3.IntegrityError:
                raise Conflict("name_taken", f"an account is already called {user.name!r}") \
                    from None
            if user.kind == "user":
                conn.execute(
                    "INSERT INTO namespaces (name, kind, visibility, description, owner,"
                    " created_at) VALUES (?, 'personal', 'private', '', ?, ?)",
                    (user.name, user.name, time.time()),
                )

        await self.db.write(insert)

    async def get_user(self, name: str) -> tuple[User, str | None] | None:
        row = await self.db.read(lambda conn: conn.execute(
            f"SELECT {_USER_COLUMNS}, password_hash FROM users WHERE name = ?", (name,)
        ).fetchone())
        return None if row is None else (_user(row), row["password_hash"])

    async def list_users(self, *, after: str | None, limit: int) -> list[User]:
        rows = await self.db.read(lambda conn: conn.execute(
            f"SELECT {_USER_COLUMNS} FROM users WHERE name > ? ORDER BY name LIMIT ?",
            (after or "", limit),
        ).fetchall())
        return [_user(row) for row in rows]

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
        changes = {k: v for k, v in (("email", email), ("admin", admin), ("enabled", enabled),
                                     ("password_hash", password_hash)) if v is not None}

        def update(conn: sqlite3.Connection) -> User:
            if changes or bump_epoch:
                assignments = ", ".join([*(f"{column} = ?" for column in changes),
                                         *(["credential_epoch = credential_epoch + 1"]
                                           if bump_epoch else [])])
                conn.execute(f"UPDATE users SET {assignments} WHERE name = ?",
                             (*changes.values(), name))
            row = conn.execute(f"SELECT {_USER_COLUMNS} FROM users WHERE name = ?",
                               (name,)).fetchone()
            if row is None:
                raise NotFound("user_not_found", f"no account named {name!r}")
            return _user(row)

        return await self.db.write(update)

    async def set_login_state(
        self, name: str, state: LoginState, *, expected: LoginState | None
    ) -> bool:
        sql = "UPDATE users SET failed_logins = ?, locked_until = ? WHERE name = ?"
        params: tuple[Any, ...] = (state.failures, _epoch(state.locked_until), name)
        if expected is not None:
            # IS: equal, NULL included.
            sql += " AND failed_logins = ? AND locked_until IS ?"
            params += (expected.failures, _epoch(expected.locked_until))
        changed: int = await self.db.write(lambda conn: conn.execute(sql, params).rowcount)
        return changed == 1

    # teams ---------------------------------------------------------------------------------

    async def create_team(self, team: Team, owner: str) -> None:
        def insert(conn: sqlite3.Connection) -> None:
            _require_user(conn, owner)
            try:
                conn.execute("INSERT INTO teams (name, description, created_at) VALUES (?, ?, ?)",
                             (team.name, team.description, time.time()))
            except sqlite3.IntegrityError:
                raise Conflict("team_exists", f"a team is already called {team.name!r}") \
                    from None
            conn.execute("INSERT INTO members (team, user, role) VALUES (?, ?, 'owner')",
                         (team.name, owner))

        await self.db.write(insert)

    async def get_team(self, name: str) -> Team | None:
        row = await self.db.read(lambda conn: conn.execute(
            "SELECT name, description FROM teams WHERE name = ?", (name,)).fetchone())
        return None if row is None else Team(row["name"], row["description"])

    async def list_teams(self, *, member: str | None) -> list[Team]:
        def query(conn: sqlite3.Connection) -> list[Any]:
            if member is None:
                return conn.execute("SELECT name, description FROM teams ORDER BY name").fetchall()
            return conn.execute(
                "SELECT t.name, t.description FROM teams t JOIN members m ON m.team = t.name"
                " WHERE m.user = ? ORDER BY t.name", (member,)).fetchall()

        return [Team(row["name"], row["description"]) for row in await self.db.read(query)]

    async def members(self, team: str) -> list[Member]:
        rows = await self.db.read(lambda conn: conn.execute(
            "SELECT team, user, role FROM members WHERE team = ? ORDER BY user", (team,)
        ).fetchall())
        return [Member(row["team"], row["user"], row["role"]) for row in rows]

    async def set_member(self, team: str, user: str, role: Role) -> Role | None:
        def upsert(conn: sqlite3.Connection) -> Role | None:
            _require_team(conn, team)
            _require_user(conn, user)
            before = conn.execute("SELECT role FROM members WHERE team = ? AND user = ?",
                                  (team, user)).fetchone()
            conn.execute(
                "INSERT INTO members (team, user, role) VALUES (?, ?, ?)"
                " ON CONFLICT (team, user) DO UPDATE SET role = excluded.role",
                (team, user, role),
            )
            return None if before is None else before["role"]

        return await self.db.write(upsert)

    async def remove_member(self, team: str, user: str) -> Role | None:
        def delete(conn: sqlite3.Connection) -> Role | None:
            _require_team(conn, team)
            row = conn.execute("DELETE FROM members WHERE team = ? AND user = ? RETURNING role",
                               (team, user)).fetchone()
            return None if row is None else row["role"]

        return await self.db.write(delete)

    async def roles_of(self, user: str) -> dict[str, Role]:
        rows = await self.db.read(lambda conn: conn.execute(
            "SELECT team, role FROM members WHERE user = ?", (user,)).fetchall())
        return {row["team"]: row["role"] for row in rows}

    # namespaces ----------------------------------------------------------------------------

    async def create_namespace(self, namespace: Namespace) -> None:
        def insert(conn: sqlite3.Connection) -> None:
            if namespace.team is not None:
                _require_team(conn, namespace.team)
            if conn.execute("SELECT 1 FROM users WHERE name = ?", (namespace.name,)).fetchone():
                raise Conflict("name_taken", f"an account is already called {namespace.name!r}")
            try:
                conn.execute(
                    "INSERT INTO namespaces (name, kind, visibility, description, team, owner,"
                    " created_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (namespace.name, namespace.kind, namespace.visibility, namespace.description,
                     namespace.team, namespace.owner, time.time()),
                )
            except sqlite3.IntegrityError:
                raise Conflict("namespace_exists",
                               f"a namespace is already called {namespace.name!r}") from None

        await self.db.write(insert)

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

        def update(conn: sqlite3.Connection) -> Namespace:
            if team is not None:
                _require_team(conn, team)
            if changes:
                assignments = ", ".join(f"{column} = ?" for column in changes)
                conn.execute(f"UPDATE namespaces SET {assignments} WHERE name = ?",
                             (*changes.values(), name))
            row = conn.execute(f"SELECT {_NAMESPACE_COLUMNS} FROM namespaces n WHERE name = ?",
                               (name,)).fetchone()
            if row is None:
                raise NotFound("namespace_not_found", f"no namespace named {name!r}")
            return _namespace(row)

        return await self.db.write(update)

    async def namespaces(
        self, account: str | None, names: Sequence[str] | None = None
    ) -> list[NamespaceRecord]:
        sql = (f"SELECT {_NAMESPACE_COLUMNS}, m.role FROM namespaces n"
               " LEFT JOIN members m ON m.team = n.team AND m.user = ?")
        args: list[Any] = [account or ""]
        if names is not None:
            sql += f" WHERE n.name IN ({','.join('?' * len(names))})"
            args.extend(names)
        rows = await self.db.read(lambda conn: conn.execute(sql + " ORDER BY n.name",
                                                            args).fetchall())
        return [(_namespace(row), row["role"]) for row in rows]

    # tokens --------------------------------------------------------------------------------

    async def create_app_token(self, token: AppToken, secret_hash: bytes) -> None:
        def insert(conn: sqlite3.Connection) -> None:
            _require_user(conn, token.user)
            try:
                conn.execute(
                    "INSERT INTO app_tokens (id, secret_hash, user, label, created_at, expires_at)"
                    " VALUES (?, ?, ?, ?, ?, ?)",
                    (token.id, secret_hash, token.user, token.label, token.created_at.timestamp(),
                     _epoch(token.expires_at)),
                )
            except sqlite3.IntegrityError:
                raise Conflict("token_exists", f"{token.user} already has a token labelled "
                               f"{token.label!r}; revoke it or choose another label") from None

        await self.db.write(insert)

    async def find_app_token(self, secret_hash: bytes) -> tuple[AppToken, User] | None:
        token_columns = ", ".join(f"t.{c}" for c in _TOKEN_COLUMNS.split(", "))
        user_columns = ", ".join(f"u.{c}" for c in _USER_COLUMNS.split(", "))
        row = await self.db.read(lambda conn: conn.execute(
            f"SELECT {token_columns}, {user_columns} FROM app_tokens t"
            " JOIN users u ON u.name = t.user WHERE t.secret_hash = ?", (secret_hash,)
        ).fetchone())
        return None if row is None else (_token(row), _user(row))

    async def touch_app_token(self, token_id: str, at: datetime) -> None:
        await self.db.write(lambda conn: conn.execute(
            "UPDATE app_tokens SET last_used_at = ? WHERE id = ?", (at.timestamp(), token_id)))

    async def list_app_tokens(self, user: str) -> list[AppToken]:
        rows = await self.db.read(lambda conn: conn.execute(
            f"SELECT {_TOKEN_COLUMNS} FROM app_tokens WHERE user = ? ORDER BY created_at",
            (user,)).fetchall())
        return [_token(row) for row in rows]

    async def revoke_app_token(self, user: str, label: str) -> AppToken | None:
        def revoke(conn: sqlite3.Connection) -> AppToken | None:
            row = conn.execute(
                f"UPDATE app_tokens SET revoked_at = ? WHERE user = ? AND label = ?"
                f" AND revoked_at IS NULL RETURNING {_TOKEN_COLUMNS}",
                (time.time(), user, label)).fetchone()
            return None if row is None else _token(row)

        return await self.db.write(revoke)

    async def create_refresh_token(self, token: RefreshToken, secret_hash: bytes) -> None:
        await self.db.write(lambda conn: _insert_refresh_token(conn, token, secret_hash))

    async def find_refresh_token(self, secret_hash: bytes) -> tuple[RefreshToken, User] | None:
        token_columns = ", ".join(f"t.{c} AS t_{c}" for c in _REFRESH_COLUMNS)
        user_columns = ", ".join(f"u.{c}" for c in _USER_COLUMNS.split(", "))
        row = await self.db.read(lambda conn: conn.execute(
            f"SELECT {token_columns}, {user_columns} FROM refresh_tokens t"
            " JOIN users u ON u.name = t.user WHERE t.secret_hash = ?", (secret_hash,)
        ).fetchone())
        return None if row is None else (_refresh_token(row), _user(row))

    async def rotate_refresh_token(
        self, presented: bytes, successor: RefreshToken, successor_hash: bytes, at: datetime
    ) -> bool:
        def rotate(conn: sqlite3.Connection) -> bool:
            row = conn.execute(
                "UPDATE refresh_tokens SET last_used_at = ? WHERE secret_hash = ?"
                " AND revoked_at IS NULL RETURNING family",
                (at.timestamp(), presented)).fetchone()
            if row is None:
                return False
            conn.execute("UPDATE refresh_tokens SET revoked_at = ? WHERE family = ?"
                         " AND secret_hash != ? AND revoked_at IS NULL",
                         (at.timestamp(), row["family"], presented))
            _insert_refresh_token(conn, successor, successor_hash)
            return True

        return await self.db.write(rotate)

    async def revoke_refresh_family(self, family: str) -> int:
        cursor = await self.db.write(lambda conn: conn.execute(
            "UPDATE refresh_tokens SET revoked_at = ? WHERE family = ? AND revoked_at IS NULL",
            (time.time(), family)))
        return cursor.rowcount

    async def revoke_refresh_tokens(self, user: str, credential: str) -> int:
        cursor = await self.db.write(lambda conn: conn.execute(
            "UPDATE refresh_tokens SET revoked_at = ? WHERE user = ? AND credential = ?"
            " AND revoked_at IS NULL", (time.time(), user, credential)))
        return cursor.rowcount

    # export and import ---------------------------------------------------------------------

    async def dump(self) -> AsyncIterator[Dumped]:
        for kind, table in _DUMPED.items():
            async for rows in self.db.scan(table.name, ", ".join(table.columns)):
                for row in rows:
                    yield kind, row_record(table, row)

    async def is_empty(self) -> bool:
        row = await self.db.read(lambda conn: conn.execute(
            "SELECT (SELECT count(*) FROM users) + (SELECT count(*) FROM teams)"
            " + (SELECT count(*) FROM namespaces WHERE kind != 'global')"
            " + (SELECT count(*) FROM app_tokens) + (SELECT count(*) FROM refresh_tokens)"
        ).fetchone())
        return int(row[0]) == 0

    async def load(self, records: Sequence[Dumped]) -> None:
        def insert(conn: sqlite3.Connection) -> None:
            for kind, fields in records:
                insert_record(conn, _DUMPED[kind], fields)

        await self.db.write(insert)


# The dump, in AUTH_RECORDS order (each kind after those it refers to).
_DUMPED = {
    "user": Table("users", ("name", "email", "kind", "password_hash", "admin", "enabled",
                            "failed_logins", "locked_until", "credential_epoch", "created_at",
                            "owner_team"),
                  booleans=frozenset({"admin", "enabled"})),
    "team": Table("teams", ("name", "description", "created_at")),
    "member": Table("members", ("team", "user", "role")),
    # The global namespace exists in every store: an import updates it.
    "namespace": Table("namespaces", ("name", "kind", "visibility", "description", "team",
                                      "owner", "created_at"),
                       upsert="ON CONFLICT (name) DO UPDATE SET visibility = excluded.visibility,"
                              " description = excluded.description"),
    "app_token": Table("app_tokens", ("id", "secret_hash", "user", "label", "created_at",
                                      "expires_at", "last_used_at", "revoked_at"),
                       blobs=frozenset({"secret_hash"})),
    "refresh_token": Table("refresh_tokens", ("secret_hash", *_REFRESH_COLUMNS),
                           blobs=frozenset({"secret_hash"})),
}


def _require_user(conn: sqlite3.Connection, name: str) -> None:
    if conn.execute("SELECT 1 FROM users WHERE name = ?", (name,)).fetchone() is None:
        raise NotFound("user_not_found", f"no account named {name!r}")


def _require_team(conn: sqlite3.Connection, name: str) -> None:
    if conn.execute("SELECT 1 FROM teams WHERE name = ?", (name,)).fetchone() is None:
        raise NotFound("team_not_found", f"no team named {name!r}")
