"""Registry notifications, parsed and checked: no transport, no storage.

Wire format: distribution docs/content/about/notifications.md and notifications/event.go. The
registry POSTs ``{"events": [...]}``, several events per envelope from 2.8 (media type
``…events.v1+json``), one from 3.x (``…events.v2+json``). An envelope is accepted whole or
rejected whole: the registry retries a rejected envelope as it is, so accepting part of it
would store that part twice. Rejecting has a price too: the registry sends an endpoint's events
one at a time and retries forever, so a rejected envelope holds back every later one (the spec
asks endpoints not to be picky). The checks are therefore the ones without which an event cannot
be stored or acted on: types of known fields, and names, tags and digests the registry itself
would accept.

Event shapes worth knowing (notifications/bridge.go):

- blob push / pull / mount: target is the blob's descriptor; the registry does not know blob
  media types and sends ``application/octet-stream``; a mount adds ``fromRepository``.
- manifest push / pull: a manifest media type, digest, size and, when done by tag, ``tag``.
- delete by digest: ``{repository, digest}`` only, for a manifest *or* a blob: the event does
  not say which. 2.8 follows a manifest delete with one ``{repository, tag}`` delete per tag.
- repository delete: ``{repository}`` only.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

import orjson

from services.core.reference import is_valid_digest, is_valid_repository, is_valid_tag
from services.core.schemas import SchemaViolation, validator
from services.core.times import rfc3339

__all__ = [
    "ACCEPTED_MEDIA_TYPES",
    "ENVELOPE_SCHEMA",
    "EVENT_SCHEMA",
    "MANIFEST_MEDIA_TYPES",
    "Action",
    "ErrorCode",
    "NotificationError",
    "RegistryEvent",
    "accept_envelope",
    "log_values",
    "parse_envelope",
]

ACCEPTED_MEDIA_TYPES = (
    "application/vnd.docker.distribution.events.v1+json",
    "application/vnd.docker.distribution.events.v2+json",
    "application/json",
)

# Docker image manifest v2 schema 1 (signed and not), schema 2 and manifest list; OCI image
# manifest and image index (distribution docs/content/spec/manifest-v2-*.md, OCI image-spec).
MANIFEST_MEDIA_TYPES = frozenset(
    {
        "application/vnd.docker.distribution.manifest.v1+json",
        "application/vnd.docker.distribution.manifest.v1+prettyjws",
        "application/vnd.docker.distribution.manifest.v2+json",
        "application/vnd.docker.distribution.manifest.list.v2+json",
        "application/vnd.oci.image.manifest.v1+json",
        "application/vnd.oci.image.index.v1+json",
    }
)

ENVELOPE_SCHEMA = "registry-notification.schema.json"
EVENT_SCHEMA = "events/registry-event.schema.json"

Action = Literal["push", "pull", "mount", "delete"]

ErrorCode = Literal[
    "unsupported_media_type",
    "body_too_large",
    "malformed_json",
    "invalid_envelope",
    "invalid_event",
    "invalid_timestamp",
    "invalid_repository",
    "invalid_tag",
    "invalid_digest",
]

_STATUS: dict[ErrorCode, int] = {
    "unsupported_media_type": 415,
    "body_too_large": 413,
    "malformed_json": 400,
    "invalid_envelope": 422,
    "invalid_event": 422,
    "invalid_timestamp": 422,
    "invalid_repository": 422,
    "invalid_tag": 422,
    "invalid_digest": 422,
}

_MESSAGE_MAX = 200


class NotificationError(Exception):
    """A notification body (or a stored event) that cannot be accepted.

    ``status`` is the HTTP status to answer the registry with, ``code`` a stable machine code,
    and the message says what is wrong and where (``events[3].target.tag: …``).
    ``invalid_event`` is the stored-event counterpart of ``invalid_envelope``.
    """

    def __init__(self, code: ErrorCode, message: str) -> None:
        super().__init__(message)
        self.code: ErrorCode = code
        self.status: int = _STATUS[code]
        self.message = message


@dataclass(frozen=True, slots=True, kw_only=True)
class RegistryEvent:
    """One registry event, typed. ``raw`` is the event as received, kept to be stored verbatim.

    Optional strings the registry leaves out or sends empty (``actor.name`` of an anonymous
    pull, an empty user agent) are ``None``. ``size`` falls back to the deprecated ``length``.
    ``received_at`` is set on events read back from the event log, ``synthetic`` on events the
    sync job made.
    """

    id: str
    timestamp: datetime
    action: Action
    repository: str
    media_type: str | None
    digest: str | None
    tag: str | None
    size: int | None
    from_repository: str | None
    references: tuple[str, ...]
    actor: str | None
    request_addr: str | None
    request_useragent: str | None
    request_method: str | None
    source_instance: str | None
    raw: dict[str, Any] = field(hash=False, repr=False)
    received_at: datetime | None = None
    synthetic: bool = False

    @property
    def is_manifest(self) -> bool:
        """The target is a Docker or OCI manifest, manifest list or image index."""
        return self.media_type in MANIFEST_MEDIA_TYPES

    @property
    def is_blob(self) -> bool:
        """The target is a layer, a config or another blob. Deletes carry no media type, so
        a delete by digest is neither a manifest nor a blob here."""
        return self.media_type is not None and self.media_type not in MANIFEST_MEDIA_TYPES

    def to_log_value(self, received_at: datetime) -> bytes:
        """The stored form: the raw event plus ``received_at`` (UTC), compact, keys sorted."""
        return log_values([self.raw], received_at)[0]

    @staticmethod
    def from_log_value(value: bytes) -> RegistryEvent:
        """Parse what ``to_log_value`` (or the sync job) stored; raises ``NotificationError``.

        Every writer of the log (the webhook, sync) validated the event against the schema
        before appending it, so a read checks its shape only as far as building the event
        needs: re-validating took a third of each consumer's time. A record that is not an
        event still fails here, and the consumer moves it to the dead-letter topic.
        """
        stored = _load_json(value, "event")
        if not isinstance(stored, dict):
            raise NotificationError("invalid_event", "event: a stored event must be an object")
        raw = dict(stored)
        received_at = raw.pop("received_at", None)
        try:
            return _build(
                raw,
                _check_event(raw, ""),
                received_at=None if received_at is None
                else _timestamp(received_at, "received_at"),
            )
        except (KeyError, TypeError, AttributeError, ValueError) as error:
            raise NotificationError("invalid_event",
                                    f"event: not a stored registry event ({error!r})") from None


def log_values(events: Sequence[Mapping[str, Any]], received_at: datetime) -> list[bytes]:
    """The stored form of events (as received) received together: ``to_log_value`` of each,
    with the time formatted once."""
    if received_at.tzinfo is None:
        raise ValueError("received_at must be timezone-aware")
    stamp = rfc3339(received_at)
    return [orjson.dumps({**raw, "received_at": stamp}, option=orjson.OPT_SORT_KEYS)
            for raw in events]


def parse_envelope(
    body: bytes, content_type: str | None, *, max_body_bytes: int
) -> list[RegistryEvent]:
    """Parse a notification request body into typed events (``accept_envelope``'s checks)."""
    return [_build(raw, timestamp)
            for raw, timestamp in _checked_envelope(body, content_type, max_body_bytes)]


def accept_envelope(
    body: bytes, content_type: str | None, *, max_body_bytes: int
) -> list[dict[str, Any]]:
    """Check a notification request body whole; its events as received, or raise
    ``NotificationError``. The webhook stores them as they are (``log_values``), so it has no
    use for typed events.

    Checks, in order: media type (parameters such as ``charset`` ignored), size, JSON, the
    envelope schema, then what the schema leaves to code (timestamps, reference grammar).
    """
    return [raw for raw, _ in _checked_envelope(body, content_type, max_body_bytes)]


def _checked_envelope(
    body: bytes, content_type: str | None, max_body_bytes: int
) -> list[tuple[dict[str, Any], datetime]]:
    """``accept_envelope``'s checks; each event with its parsed timestamp."""
    media_type = (content_type or "").partition(";")[0].strip().lower()
    if media_type not in ACCEPTED_MEDIA_TYPES:
        given = f"Content-Type {content_type!r} is" if content_type else "Content-Type is missing,"
        raise NotificationError(
            "unsupported_media_type",
            f"{given} not a registry notification; expected one of "
            f"{', '.join(ACCEPTED_MEDIA_TYPES)}",
        )
    if len(body) > max_body_bytes:
        raise NotificationError(
            "body_too_large",
            f"body is {len(body)} bytes, more than webhook.max_body_bytes ({max_body_bytes})",
        )
    envelope = _load_json(body, "body")
    _check_schema(ENVELOPE_SCHEMA, envelope, root="body", code="invalid_envelope")
    events: list[dict[str, Any]] = envelope["events"]
    return [(raw, _check_event(raw, f"events[{index}]")) for index, raw in enumerate(events)]


# Target fields in the reference grammar, checked in this order.
_REFERENCE_FIELDS = ("repository", "fromRepository", "tag", "digest")


def _check_event(raw: dict[str, Any], where: str) -> datetime:
    """Check in a schema-valid event dict what the schema leaves to code: the reference grammar
    and that the timestamp is a date, which is returned. Every webhook event passes here, so
    the error's location (``events[3].target.tag``) is spelled only for a bad value."""
    target: dict[str, Any] = raw["target"]
    for key in _REFERENCE_FIELDS:
        _check_reference(target, key, where, "target")
    for index, descriptor in enumerate(target.get("references", ())):
        _check_reference(descriptor, "digest", where, f"target.references[{index}]")
    return _timestamp(raw["timestamp"], f"{where}.timestamp" if where else "timestamp")


def _build(
    raw: dict[str, Any], timestamp: datetime, *, received_at: datetime | None = None
) -> RegistryEvent:
    """Type a checked event dict (``timestamp``: what ``_check_event`` parsed)."""
    target: dict[str, Any] = raw["target"]
    references = target.get("references", ())
    size = target.get("size", target.get("length"))
    request: dict[str, Any] = raw.get("request", {})
    return RegistryEvent(
        id=raw["id"],
        timestamp=timestamp,
        action=raw["action"],
        repository=target["repository"],
        media_type=target.get("mediaType") or None,
        digest=target.get("digest"),
        tag=target.get("tag"),
        size=None if size is None else int(size),
        from_repository=target.get("fromRepository"),
        references=tuple(descriptor["digest"] for descriptor in references),
        actor=raw.get("actor", {}).get("name") or None,
        request_addr=request.get("addr") or None,
        request_useragent=request.get("useragent") or None,
        request_method=request.get("method") or None,
        source_instance=raw.get("source", {}).get("instanceID") or None,
        raw=raw,
        received_at=received_at,
        synthetic=raw.get("synthetic", False),
    )


def _load_json(data: bytes, what: str) -> Any:
    # orjson refuses NaN and Infinity (not JSON), integers beyond 64 bits and nesting deeper
    # than 1024, all of which no registry sends.
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError as error:
        raise NotificationError("malformed_json", f"{what} is not valid JSON: {error}") from None


def _check_schema(name: str, document: Any, *, root: str, code: ErrorCode) -> None:
    # The validator reports the first violation it meets, checking events in turn and each
    # one in a fixed order, so the same body always gets the same message: where, then what
    # (quoting the value: '"upload" is not one of ["push", …]').
    try:
        validator(name)(document)
    except SchemaViolation as error:
        raise NotificationError(code, f"{error.where or root}: {_clip(error.message)}") from None


def _clip(text: str) -> str:
    return text if len(text) <= _MESSAGE_MAX else f"{text[: _MESSAGE_MAX - 1]}…"


def _timestamp(value: str, where: str) -> datetime:
    # The schema pattern has already required RFC 3339 shape with an offset; this catches
    # values of the right shape that are not dates (month 13, hour 25). Go marshals
    # nanoseconds, which Python truncates to microseconds.
    # Also refused: times whose UTC form leaves datetime's range (9999-12-31T23:59-23:00), which
    # could not be read back from a store.
    try:
        moment = datetime.fromisoformat(value.upper())
        moment.astimezone(UTC)
    except (ValueError, OverflowError):
        raise NotificationError(
            "invalid_timestamp", f"{where}: {_clip(repr(value))} is not a valid RFC 3339 date-time"
        ) from None
    return moment


_Grammar = tuple[Callable[[str], bool], ErrorCode, str]
_REPOSITORY: _Grammar = (
    is_valid_repository,
    "invalid_repository",
    (
        "repository name: lowercase path components of [a-z0-9] with single '.', '_' or '__' "
        "or runs of '-' inside, joined by '/', at most 255 characters"
    ),
)
_GRAMMAR: dict[str, _Grammar] = {
    "repository": _REPOSITORY,
    "fromRepository": _REPOSITORY,
    "tag": (is_valid_tag, "invalid_tag", "tag: [A-Za-z0-9_] then up to 127 of [A-Za-z0-9_.-]"),
    "digest": (
        is_valid_digest,
        "invalid_digest",
        "digest: sha256:<64 hex>, sha384:<96 hex> or sha512:<128 hex>, lowercase",
    ),
}


def _check_reference(obj: dict[str, Any], key: str, where: str, inside: str) -> None:
    """Raise if ``obj[key]`` is given and breaks the grammar; the error names
    ``where.inside.key`` (``events[3].target.tag``; without ``where``, ``target.tag``)."""
    value = obj.get(key)
    if value is not None:
        valid, code, expected = _GRAMMAR[key]
        if not valid(value):
            at = f"{where}.{inside}" if where else inside
            raise NotificationError(
                code, f"{at}.{key}: {_clip(repr(value))} is not a valid {expected}"
            )
