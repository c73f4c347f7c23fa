"""Identity records."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["User"]


@dataclass(frozen=True, slots=True)
class User:
    name: str
    email: str
    admin: bool
    enabled: bool
