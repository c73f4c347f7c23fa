"""The distribution reference grammar: repository names, tags and digests.

Follows distribution/reference regexp.go and reference.go (``NameTotalLengthMax = 255``) and, for
digests, opencontainers/go-digest algorithm.go, which is what the registry validates with:

    name       := component ['/' component]*
    component  := /[a-z0-9]+(?:(?:[._]|__|[-]+)[a-z0-9]+)*/
    tag        := /[\\w][\\w.-]{0,127}/
    digest     := algorithm ':' encoded     sha256: 64, sha384: 96, sha512: 128 lowercase hex

regexp.go writes the separator as ``[-]*``; that accepts the same names as ``[-]+`` but makes a
backtracking engine such as Python's explore every way to split a run of letters, so ``[-]+``
is used here. Names are matched without the optional ``host[:port]/`` prefix the grammar allows
in front of a name: Dockyard's repositories are paths on one registry, and its namespaces are
first path components.
"""

from __future__ import annotations

import re

__all__ = [
    "NAME_TOTAL_LENGTH_MAX",
    "is_valid_digest",
    "is_valid_namespace",
    "is_valid_repository",
    "is_valid_tag",
    "namespace_of",
    "repository_path",
]

NAME_TOTAL_LENGTH_MAX = 255

_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|[-]+)[a-z0-9]+)*"
_NAME = re.compile(rf"{_COMPONENT}(?:/{_COMPONENT})*")
_SINGLE = re.compile(_COMPONENT)
NAMESPACE_LENGTH_MAX = 64
_TAG = re.compile(r"[\w][\w.-]{0,127}", re.ASCII)

# go-digest: "Note that /A-F/ disallowed." Algorithms it cannot compute are unsupported, and the
# registry refuses them, so they are refused here too.
_ENCODED_LENGTH = {"sha256": 64, "sha384": 96, "sha512": 128}
_LOWER_HEX = re.compile(r"[0-9a-f]+")


def is_valid_repository(name: str) -> bool:
    """``library/nginx``, ``team/sub/app``, ``nginx``: lowercase path components, ≤ 255 chars."""
    return len(name) <= NAME_TOTAL_LENGTH_MAX and _NAME.fullmatch(name) is not None


def is_valid_tag(tag: str) -> bool:
    """``latest``, ``1.25.3-alpine``, ``v2_rc1``: a word character, then up to 127 of ``\\w.-``."""
    return _TAG.fullmatch(tag) is not None


def is_valid_digest(digest: str) -> bool:
    """``sha256:<64 lowercase hex>``, ``sha384:<96>`` or ``sha512:<128>``."""
    algorithm, sep, encoded = digest.partition(":")
    return (
        bool(sep)
        and len(encoded) == _ENCODED_LENGTH.get(algorithm, -1)
        and _LOWER_HEX.fullmatch(encoded) is not None
    )


def namespace_of(repository: str) -> str:
    """The namespace a repository belongs to: its first path component.

    ``team/sub/app`` → ``team``; a name without ``/`` (``nginx``) lives in the global
    namespace, ``""``. Expects a valid repository name.
    """
    namespace, sep, _ = repository.partition("/")
    return namespace if sep else ""


def is_valid_namespace(name: str) -> bool:
    """A namespace, account or team name: one lowercase path component, at most 64 chars."""
    return len(name) <= NAMESPACE_LENGTH_MAX and _SINGLE.fullmatch(name) is not None


def repository_path(name: str) -> str | None:
    """The repository path of a scope name that may start with ``host[:port]/``; None if invalid.

    As in distribution/reference normalize.go: the first component is a registry host when it
    holds a ``.`` or a ``:`` or is ``localhost``.
    """
    first, sep, rest = name.partition("/")
    if sep and ("." in first or ":" in first or first == "localhost"):
        name = rest
    return name if is_valid_repository(name) else None
