"""What a search asks and how a name matches it: pure functions, shared by every backend.

Ranking is ``exact > prefix > substring``, then popularity (pulls + stars), then recency. A name
matches *exactly* when the whole repository name or its last path component equals the text
(``nginx`` and ``library/nginx`` both find ``library/nginx`` exactly), by *prefix* when either
starts with it (``ngin``), by *substring* anywhere else. Substrings need three characters: the
trigram index cannot look up shorter ones, and one or two characters inside names match
nearly everything, so shorter queries match by exact name and prefix only.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import replace
from typing import get_args

from services.core.errors import Invalid
from services.core.reference import is_valid_namespace
from services.ingest.manifests import ArtifactKind
from services.search.models import Match, Query, SearchType

__all__ = [
    "MATCHES",
    "MAX_QUERY_LENGTH",
    "MIN_SUBSTRING",
    "classify",
    "classify_tag",
    "last_component",
    "parse_query",
]

MAX_QUERY_LENGTH = 128
MIN_SUBSTRING = 3
MATCHES: tuple[Match, ...] = ("exact", "prefix", "substring")
SEARCH_TYPES: tuple[SearchType, ...] = get_args(SearchType)
_SEARCH_TYPES: dict[str, SearchType] = {name: name for name in SEARCH_TYPES}
ARTIFACT_TYPES = tuple(kind.value for kind in ArtifactKind)

# Digest prefixes: ``algorithm:hex`` (OCI image-spec descriptor.md), typed in part.
_DIGEST = re.compile(r"(sha256|sha512):([0-9a-f]{0,128})")
# Advisory ids as OSV lists them (ossf/osv-schema docs/schema.md, "id"): CVE-2024-1234,
# GHSA-xxxx-xxxx-xxxx and the ecosystem databases' own (PYSEC-, RUSTSEC-, GO-, DSA-, DLA-, USN-,
# ALSA- …), typed in part (``CVE-2024``). A digit after the dash keeps ``go-app`` a name.
_ADVISORY = re.compile(
    r"(?:CVE|GO|PYSEC|RUSTSEC|OSV|DSA|DLA|DTSA|USN|ALSA|ALBA|RHSA|RLSA|ELSA|MAL|BIT|UVI|GSD|CGA)"
    r"-[0-9][0-9A-Z.:_-]*|GHSA(?:-[0-9A-Z]{1,4}){1,3}",
    re.IGNORECASE,
)


def parse_query(
    text: str | None,
    type_: str | None = None,
    *,
    namespace: str | None = None,
    artifact_type: str | None = None,
) -> Query:
    """The query a request asks for; Invalid (a 400) names the parameter that is wrong."""
    q = _checked_text(text)
    search_type = _SEARCH_TYPES.get(type_) if type_ is not None else None
    if type_ is not None and search_type is None:
        raise Invalid("invalid_type", f"type must be one of {', '.join(SEARCH_TYPES)}")
    if namespace is not None and namespace != "" and not is_valid_namespace(namespace):
        raise Invalid("invalid_namespace", f"no valid namespace name: {namespace!r}")
    if artifact_type is not None and artifact_type not in ARTIFACT_TYPES:
        raise Invalid("invalid_artifact_type",
                      f"artifact_type must be one of {', '.join(ARTIFACT_TYPES)}")
    lowered = q.lower()
    base = Query(search_type or "repository", lowered, namespace=namespace,
                 artifact_type=artifact_type)
    if _DIGEST.fullmatch(lowered) is not None:
        _require(search_type, "tag", "digests are searched among tags")
        return replace(base, type="tag", digest=lowered)
    if search_type == "vulnerability" or (search_type is None and _ADVISORY.fullmatch(q)):
        return replace(base, type="vulnerability", text=q.upper())
    if ":" in lowered:
        _require(search_type, "tag", "repository:tag queries find tags")
        repository, _, tag = lowered.partition(":")
        if not repository and not tag:
            raise Invalid("invalid_query", "give a repository, a tag or both around ':'")
        return replace(base, type="tag", repository=repository, tag=tag)
    return base


def _checked_text(text: str | None) -> str:
    q = (text or "").strip()
    if not q:
        raise Invalid("invalid_query", "give ?q= with the text to search for")
    if len(q) > MAX_QUERY_LENGTH:
        raise Invalid("invalid_query", f"q is limited to {MAX_QUERY_LENGTH} characters")
    if not q.isprintable():
        raise Invalid("invalid_query", "q may hold printable characters only")
    return q


def _require(given: str | None, wanted: SearchType, why: str) -> None:
    if given is not None and given != wanted:
        raise Invalid("invalid_type", f"{why}: leave type out or give type={wanted}")


def last_component(name: str) -> str:
    return name.rpartition("/")[2]


def classify(names: Sequence[str], text: str) -> int | None:
    """0 exact, 1 prefix, 2 substring, None: no match. ``names[0]`` is the full name; every
    name counts for exact and prefix matches, substrings are looked for in the full name."""
    if not text:
        return 0
    if text in names:
        return 0
    if any(name.startswith(text) for name in names):
        return 1
    if len(text) >= MIN_SUBSTRING and text in names[0]:
        return 2
    return None


def classify_tag(repository: str, tag: str, query: Query) -> int | None:
    """How a tag (``repository:tag``) matches a tag query, by the same rules."""
    repository, tag = repository.lower(), tag.lower()
    if query.digest is not None:
        raise ValueError("digest queries are matched on digests, not names")
    if query.repository is not None and query.tag is not None:
        on_repository = classify((repository, last_component(repository)), query.repository)
        on_tag = classify((tag,), query.tag)
        if on_repository is None or on_tag is None:
            return None
        return max(on_repository, on_tag)
    return classify((f"{repository}:{tag}", repository, last_component(repository), tag),
                    query.text)
