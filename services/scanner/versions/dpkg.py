"""dpkg version ordering as a sort key, so matching compares tuples instead of calling Python.

The order is dpkg's (lib/dpkg/version.c ``verrevcmp``; Debian Policy 5.6.12): compare the epoch
as a number, then the upstream version, then the revision. Each part is compared as alternating
runs: a run of non-digits character by character, where ``~`` sorts before everything, even the
end of the string, letters sort before other characters, and the end of a run sorts as ``0``;
then a run of digits as a number. The shorter string is padded with that same ``0``.

python-debian's ``Version`` parses and validates the string (so what it refuses, we refuse),
but comparing two of them in pure Python costs ~17 µs, too slow to check 2,000 packages against
their advisories in 100 ms. The key below orders exactly as that comparison does (the tests check
it against python-debian on generated versions), and tuples compare in C.

Encoding: a part becomes the flat sequence of its character orders, a ``0`` ending each
non-digit run, and each digit run's value; padding is an endless run of ``0``. Two such
sequences differ first at the first non-zero element after a common prefix, so each run of
zeros and the non-zero value that ends it become one token, ordered so that an earlier negative
(``~``) sorts lower and an earlier positive sorts higher, and ``_END`` (only zeros from here on)
sits between the two kinds.
"""

from __future__ import annotations

import re

from debian.debian_support import Version

__all__ = ["DpkgKey", "dpkg_key"]

Token = tuple[float, ...]
DpkgKey = tuple[int, tuple[Token, ...], tuple[Token, ...]]

_END: Token = (0.5,)
_DIGITS = re.compile(r"(\d+)")


def _order(char: str) -> int:
    # dpkg's order(): '~' first, then the end of a run (0), then letters, then anything else.
    if char == "~":
        return -1
    if char.isalpha():
        return ord(char)
    return ord(char) + 256


def _part_key(text: str) -> tuple[Token, ...]:
    tokens: list[Token] = []
    zeros = 0
    for index, piece in enumerate(_DIGITS.split(text)):
        values = [int(piece)] if index % 2 else [*map(_order, piece), 0]
        for value in values:
            if value == 0:
                zeros += 1
            elif value < 0:
                tokens.append((0, zeros, value))
                zeros = 0
            else:
                tokens.append((1, -zeros, value))
                zeros = 0
    tokens.append(_END)
    return tuple(tokens)


def dpkg_key(version: str) -> DpkgKey:
    """A key ordering like dpkg; ``ValueError`` for what python-debian refuses to parse."""
    parsed = Version(version)
    return (
        int(parsed.epoch or "0"),
        _part_key(parsed.upstream_version or "0"),
        _part_key(parsed.debian_revision or "0"),
    )
