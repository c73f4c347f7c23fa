"""Severities: the distribution's rating, then CVSS (cvss library), then GitHub's label."""

import pytest

from services.scanner.models import Severity
from services.scanner.severity import from_cvss, from_label, severity_of

CRITICAL_V3 = "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H"  # 9.8


@pytest.mark.parametrize(("kind", "vector", "expected"), [
    ("CVSS_V3", CRITICAL_V3, Severity.CRITICAL),
    ("CVSS_V3", "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:N/I:N/A:H", Severity.HIGH),  # 7.5
    ("CVSS_V3", "CVSS:3.1/AV:L/AC:H/PR:H/UI:R/S:U/C:H/I:H/A:N", Severity.MEDIUM),  # 5.6
    ("CVSS_V3", "CVSS:3.1/AV:P/AC:H/PR:H/UI:R/S:U/C:L/I:N/A:N", Severity.LOW),  # 1.6
    ("CVSS_V3", "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:N/I:N/A:N", Severity.NEGLIGIBLE),  # 0.0
    ("CVSS_V2", "AV:N/AC:L/Au:N/C:C/I:C/A:C", Severity.CRITICAL),  # 10.0
    ("CVSS_V2", "AV:N/AC:L/Au:N/C:P/I:P/A:P", Severity.HIGH),  # 7.5
    ("CVSS_V4", "CVSS:4.0/AV:N/AC:L/AT:N/PR:N/UI:N/VC:H/VI:H/VA:H/SC:N/SI:N/SA:N",
     Severity.CRITICAL),  # 9.3
    ("CVSS_V3", "CVSS:3.1/AV:X/garbage", None),
    ("CVSS_V9", CRITICAL_V3, None),
])
def test_from_cvss(kind, vector, expected):
    assert from_cvss(kind, vector) is expected


@pytest.mark.parametrize(("label", "expected"), [
    ("unimportant", Severity.NEGLIGIBLE),
    ("low**", Severity.LOW),
    ("MODERATE", Severity.MEDIUM),
    ("High", Severity.HIGH),
    ("critical", Severity.CRITICAL),
    ("not yet assigned", None),
    ("untriaged", None),
])
def test_from_label(label, expected):
    assert from_label(label) is expected


@pytest.mark.parametrize(("record", "affected", "expected"), [
    ({}, {}, Severity.UNKNOWN),
    ({"severity": [{"type": "CVSS_V3", "score": CRITICAL_V3}]},
     {"ecosystem_specific": {"urgency": "low"}}, Severity.LOW),
    ({"severity": [{"type": "CVSS_V3", "score": CRITICAL_V3}]},
     {"ecosystem_specific": {"urgency": "not yet assigned"}}, Severity.CRITICAL),
    ({"severity": [{"type": "CVSS_V3", "score": CRITICAL_V3}, {"type": "Ubuntu", "score": "low"}]},
     {}, Severity.LOW),
    ({"severity": [{"type": "CVSS_V2", "score": "AV:N/AC:L/Au:N/C:P/I:P/A:P"},
                   {"type": "CVSS_V3", "score": CRITICAL_V3}]}, {}, Severity.CRITICAL),
    ({"database_specific": {"severity": "MODERATE"}}, {}, Severity.MEDIUM),
    ({"severity": "not a list", "database_specific": {"severity": 3}}, {}, Severity.UNKNOWN),
])
def test_severity_of(record, affected, expected):
    assert severity_of(record, affected) is expected
