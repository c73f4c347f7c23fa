"""The neutral record shape stores dump and load (``dockyard export`` / ``dockyard import``).

A store's ``dump`` yields ``(kind, fields)`` pairs whose fields are plain JSON values, the same
whichever adapter wrote them (times as the numbers the SQLite schema keeps, hashes as hex), and
its ``load`` takes them back. Each port module declares its kinds and their fields in a
``RecordSpec``, and ``check`` holds every record of an import to it before anything is written.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

__all__ = ["Dumped", "FieldType", "RecordSpec", "check"]

# (kind, fields): one record of a store's dump.
Dumped = tuple[str, dict[str, Any]]
# "str", "int", "num", "bool", "list", "dict", "hex", a "?" suffix allowing null; or the tuple
# of the only values allowed.
FieldType = str | tuple[str, ...]
RecordSpec = Mapping[str, Mapping[str, FieldType]]

_TYPES: dict[str, tuple[type, ...]] = {
    "str": (str,), "int": (int,), "num": (int, float), "bool": (bool,), "list": (list,),
    "dict": (dict,), "hex": (str,),
}


def check(spec: RecordSpec, kind: str, fields: object) -> str | None:
    """What is wrong with the record, or None when it matches ``spec``."""
    expected = spec.get(kind)
    if expected is None:
        return f"unknown record kind {kind!r} (expected one of {', '.join(sorted(spec))})"
    if not isinstance(fields, dict):
        return f"a {kind} record must be an object"
    missing, extra = sorted(expected.keys() - fields.keys()), sorted(fields.keys() - expected)
    if missing or extra:
        return f"a {kind} record has fields {sorted(expected)}; missing {missing}, unknown {extra}"
    for name, field_type in expected.items():
        problem = _check_value(field_type, fields[name])
        if problem:
            return f"{kind}.{name}: {problem}"
    return None


def _check_value(field_type: FieldType, value: object) -> str | None:
    if isinstance(field_type, tuple):
        return None if value in field_type else f"expected one of {list(field_type)}"
    optional = field_type.endswith("?")
    base = field_type.removesuffix("?")
    if value is None:
        return None if optional else "must not be null"
    # bool is an int in Python; a count or a time given as true/false is still wrong.
    if isinstance(value, bool) and base != "bool":
        return f"expected {base}, got a boolean"
    if not isinstance(value, _TYPES[base]):
        return f"expected {base}, got {type(value).__name__}"
    if base == "hex":
        try:
            bytes.fromhex(str(value))
        except ValueError:
            return "expected hexadecimal digits"
    return None
