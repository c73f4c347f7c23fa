"""What the auth service needs from its store."""

from __future__ import annotations

from typing import Protocol

from services.auth.models import User

__all__ = ["UserStore"]


class UserStore(Protocol):
    async def create_user(
        self, user: User, password_hash: str | None, *, replace: bool = False
    ) -> None: ...

    async def get_user(self, name: str) -> tuple[User, str | None] | None:
        """The user and their password hash, or None."""
        ...
