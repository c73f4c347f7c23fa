"""One severity per advisory and package, on Clair's normalized scale.

Sources, best first:
1. The distribution's own rating of its package, when the record carries one: Ubuntu's priority
   (``severity[].type == "Ubuntu"``, docs/schema.md "severity field") and Debian's urgency
   (``ecosystem_specific``/``database_specific`` ``urgency``, as in Debian's OSV records). A
   distribution rates the issue for the way it builds the package, so it beats a generic score.
2. CVSS vectors (``CVSS_V4`` > ``CVSS_V3`` > ``CVSS_V2``), scored with the ``cvss`` library and
   mapped with CVSS v3.1's qualitative rating scale (spec section 5): 0.0 None, 0.1-3.9 Low,
   4.0-6.9 Medium, 7.0-8.9 High, 9.0-10.0 Critical. "None" becomes Negligible.
3. GitHub's advisory rating (``database_specific.severity``: LOW, MODERATE, HIGH, CRITICAL).
Nothing usable: Unknown.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from decimal import Decimal
from typing import Any

from cvss import CVSS2, CVSS3, CVSS4, CVSSError

from services.scanner.models import Severity

__all__ = ["from_cvss", "from_label", "severity_of"]

_LABELS = {
    "unimportant": Severity.NEGLIGIBLE,  # Debian
    "negligible": Severity.NEGLIGIBLE,  # Ubuntu
    "low": Severity.LOW,
    "medium": Severity.MEDIUM,
    "moderate": Severity.MEDIUM,  # GitHub
    "high": Severity.HIGH,
    "important": Severity.HIGH,  # Red Hat
    "critical": Severity.CRITICAL,
}

_CVSS = {"CVSS_V4": CVSS4, "CVSS_V3": CVSS3, "CVSS_V2": CVSS2}
# CVSS v3.1 specification, section 5 (qualitative severity rating scale), highest first.
_RATINGS = (
    (Decimal("9.0"), Severity.CRITICAL),
    (Decimal("7.0"), Severity.HIGH),
    (Decimal("4.0"), Severity.MEDIUM),
    (Decimal("0.1"), Severity.LOW),
    (Decimal(0), Severity.NEGLIGIBLE),
)


def from_label(label: str) -> Severity | None:
    """A distribution's or database's word for it; None for "not yet assigned", "untriaged"…

    Debian marks ratings it has not reviewed with a trailing ``*`` or ``**`` (``low**``).
    """
    return _LABELS.get(label.strip().rstrip("*").lower())


def from_cvss(kind: str, vector: str) -> Severity | None:
    """The CVSS v3.1 rating of the vector's base score; None if the vector is not valid."""
    scorer = _CVSS.get(kind)
    if scorer is None:
        return None
    try:
        score = Decimal(scorer(vector).base_score)
    except (CVSSError, ValueError, KeyError, IndexError):
        return None
    return next(rating for floor, rating in _RATINGS if score >= floor)


def severity_of(record: Mapping[str, Any], affected: Mapping[str, Any]) -> Severity:
    """The severity of one ``affected`` entry of an OSV record (see the module docstring)."""
    scores = [*_items(affected.get("severity")), *_items(record.get("severity"))]
    urgencies = [extra.get("urgency") for extra in (affected.get("ecosystem_specific"),
                                                      affected.get("database_specific"))
                 if isinstance(extra, Mapping)]
    priorities = [item.get("score") for item in scores if item.get("type") == "Ubuntu"]
    for label in (*urgencies, *priorities):
        rated = from_label(label) if isinstance(label, str) else None
        if rated is not None:
            return rated
    for kind in _CVSS:
        for item in scores:
            vector = item.get("score")
            rated = from_cvss(kind, vector) if item.get("type") == kind and isinstance(
                vector, str) else None
            if rated is not None:
                return rated
    extra = record.get("database_specific")
    label = extra.get("severity") if isinstance(extra, Mapping) else None
    return (from_label(label) if isinstance(label, str) else None) or Severity.UNKNOWN


def _items(value: object) -> list[Mapping[str, Any]]:
    if not isinstance(value, Sequence) or isinstance(value, str):
        return []
    return [item for item in value if isinstance(item, Mapping)]
