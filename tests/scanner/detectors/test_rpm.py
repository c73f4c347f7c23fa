"""The rpm detector over hostile SQLite databases: each is refused before it can run long or
spill to disk, naming what it tried; a merely broken one is a warning (the golden tests cover
the real rpmdb)."""

from __future__ import annotations

import sqlite3

import pytest

from services.scanner.detectors.base import LayerFile
from services.scanner.detectors.rpm import scanner as rpm
from services.scanner.limits import Refused

PATH = "var/lib/rpm/rpmdb.sqlite"
LAYER = "sha256:" + "1" * 64


def database(*statements: str) -> bytes:
    connection = sqlite3.connect(":memory:")
    for statement in statements:
        connection.execute(statement)
    connection.commit()
    data = connection.serialize()
    connection.close()
    return data


def scan(content: bytes) -> rpm.Detected:
    return rpm.scan([LayerFile(PATH, LAYER, len(content), content)])


RECURSIVE = ("CREATE VIEW Packages AS WITH RECURSIVE c(x) AS"
             " (SELECT 1 UNION ALL SELECT x + 1 FROM c)"
             " SELECT x AS hnum, zeroblob(1000) AS blob FROM c")
GENERATED = ("CREATE TABLE Packages (hnum INTEGER PRIMARY KEY,"
             " blob BLOB GENERATED ALWAYS AS (zeroblob(hnum)) VIRTUAL)")


@pytest.mark.parametrize(("statements", "denied"), [
    ([RECURSIVE], "action"),
    (["CREATE TABLE real (hnum INTEGER PRIMARY KEY, blob BLOB)",
      "CREATE VIEW Packages AS SELECT hnum, blob FROM real"], "via 'Packages'"),
])
def test_a_database_that_is_a_program_is_refused(statements: list[str], denied: str) -> None:
    with pytest.raises(Refused, match=f"rpm: {PATH}: its Packages is not a plain table.*{denied}"):
        scan(database(*statements))


def test_a_generated_column_is_refused() -> None:
    """Computed by the schema, out of the authorizer's sight: 64 MiB made up per row here."""
    with pytest.raises(Refused, match="its Packages computes blob"):
        scan(database(GENERATED, "INSERT INTO Packages (hnum) VALUES (67108864)"))


def test_a_query_over_the_step_budget_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(rpm, "MAX_STEPS", 1000)
    rows = ", ".join(f"({n}, zeroblob(10))" for n in range(2000))
    content = database("CREATE TABLE Packages (hnum, blob)",
                       f"INSERT INTO Packages VALUES {rows}")
    with pytest.raises(Refused, match="more than 1000 SQLite steps"):
        scan(content)


def test_a_broken_database_is_a_warning() -> None:
    found = scan(b"SQLite format 3\0" + b"\xff" * 4080)
    assert found.packages == ()
    assert len(found.warnings) == 1
    assert "is not a readable rpm SQLite database" in found.warnings[0]
