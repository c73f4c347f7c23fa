"""Token scopes as the registry asks for them (distribution docs/spec/auth/scope.md).

``scope := resourcescope [' ' resourcescope]*`` and
``resourcescope := type['(' class ')'] ':' name ':' action[',' action]*``. The name may hold a
``host:port/`` prefix, so the type is read from the left and the actions after the **last**
colon. The granted entry carries the plain type (``repository``, never ``repository(plugin)``):
registry 2.8 compares it literally.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable
from dataclasses import dataclass

__all__ = ["MAX_SCOPES", "Scope", "ScopeError", "parse_scopes"]

# A registry asks for at most a handful (a cross-repository mount asks for two); anything near
# this is hostile or broken.
MAX_SCOPES = 64
MAX_SCOPE_LENGTH = 1024

_TYPE = re.compile(r"([a-z0-9]+)(?:\(([a-z0-9]+)\))?")
_ACTION = re.compile(r"[a-z]+|\*")


class ScopeError(ValueError):
    """A scope that does not follow the grammar; the message quotes it."""


@dataclass(frozen=True, slots=True)
class Scope:
    type: str
    name: str
    actions: frozenset[str]
    resource_class: str | None = None


def parse_scopes(values: Iterable[str]) -> list[Scope]:
    """Every scope in the ``scope`` parameters (each may hold several, space-separated).

    Scopes asking for the same resource are merged, so the token has one entry per resource.
    """
    merged: dict[tuple[str, str], Scope] = {}
    count = 0
    for value in values:
        for text in value.split(" "):
            if not text:
                continue
            count += 1
            if count > MAX_SCOPES:
                raise ScopeError(f"too many scopes (at most {MAX_SCOPES})")
            scope = _parse_one(text)
            key = (scope.type, scope.name)
            if key in merged:
                scope = Scope(scope.type, scope.name, merged[key].actions | scope.actions,
                              merged[key].resource_class or scope.resource_class)
            merged[key] = scope
    return list(merged.values())


# Clients ask for the same few scopes over and over; a Scope is immutable, so parse once.
@functools.lru_cache(maxsize=4096)
def _parse_one(text: str) -> Scope:
    if len(text) > MAX_SCOPE_LENGTH:
        raise ScopeError(f"scope longer than {MAX_SCOPE_LENGTH} characters")
    resource_type, sep, rest = text.partition(":")
    name, sep2, actions = rest.rpartition(":")
    if not sep or not sep2 or not name:
        raise ScopeError(f"scope {text!r} is not TYPE:NAME:ACTIONS")
    matched = _TYPE.fullmatch(resource_type)
    if matched is None:
        raise ScopeError(f"scope {text!r} has an invalid resource type")
    parsed = frozenset(a for a in actions.split(",") if a)
    if not parsed or not all(_ACTION.fullmatch(a) for a in parsed):
        raise ScopeError(f"scope {text!r} has invalid actions")
    if not name.isprintable() or not name.isascii():
        raise ScopeError(f"scope {text!r} has an invalid resource name")
    return Scope(matched.group(1), name, parsed, matched.group(2))
