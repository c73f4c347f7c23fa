"""Errors a caller can act on, shared by the API, the CLI and the domain code.

Each carries a stable ``code`` and a message saying what to do; the API renders them as
``{"error": {"code", "message"}}`` with ``status``, the CLI prints the message.
"""

from __future__ import annotations

__all__ = [
    "Conflict",
    "DyError",
    "Forbidden",
    "Invalid",
    "NotFound",
    "TooManyRequests",
    "Unauthorized",
]


class DyError(Exception):
    status = 400

    def __init__(self, code: str, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.headers = headers or {}


class Invalid(DyError):
    status = 400


class Unauthorized(DyError):
    status = 401


class Forbidden(DyError):
    status = 403


class NotFound(DyError):
    status = 404


class Conflict(DyError):
    status = 409


class TooManyRequests(DyError):
    status = 429
