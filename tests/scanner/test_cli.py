"""``dockyard vulndb import|status`` as an operator runs them."""

import io
import json
import logging
import zipfile
from datetime import UTC, datetime, timedelta

import pytest

from services.cli import main
from services.scanner.cli import _progress, describe_age
from tests.scanner.vulndb.conftest import TESTDATA
from tests.support.dockyard import initialised


@pytest.fixture
def config_path(tmp_path):
    initialised(tmp_path / "data", "http://127.0.0.1:1")
    return str(tmp_path / "data" / "dockyard.toml")


def test_import_then_status(config_path, tmp_path, capsys):
    archive = tmp_path / "all.zip"
    with zipfile.ZipFile(archive, "w") as z:
        for path in sorted(TESTDATA.glob("*.json")):
            z.writestr(path.name, path.read_bytes())
        z.writestr("BROKEN.json", json.dumps({"id": "BROKEN"}))
    assert main(["vulndb", "import", str(archive), "--ecosystem", "Debian:12",
                 "--config", config_path]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == ("13 records read: 4 added, 0 updated, 0 unchanged, 8 outside the"
                      " ecosystems asked for, 1 broken (skipped)")
    assert out[2] == "  skipped BROKEN.json: modified: missing or not a string"

    assert main(["vulndb", "import", str(archive), "--config", config_path]) == 0
    assert capsys.readouterr().out.startswith("13 records read: 8 added, 1 updated, 3 unchanged")

    assert main(["vulndb", "status", "--config", config_path]) == 0
    status = capsys.readouterr().out.splitlines()
    assert status[0] == "ecosystem  advisories  newest record  imported"
    assert any(line.startswith("Debian:12  4  2024-09-18T03:28:59Z (") for line in status)
    assert len(status) == 9


def test_status_of_an_empty_database(config_path, capsys):
    assert main(["vulndb", "status", "--config", config_path]) == 0
    assert "no vulnerability data loaded" in capsys.readouterr().out


def test_a_missing_source_is_an_error(config_path, tmp_path, capsys):
    assert main(["vulndb", "import", str(tmp_path / "nope"), "--config", config_path]) == 2
    assert "no such file or directory" in capsys.readouterr().err


@pytest.mark.parametrize(("age", "text"), [
    (timedelta(seconds=5), "just now"),
    (timedelta(minutes=1), "1 minute old"),
    (timedelta(hours=5, minutes=3), "5 hours old"),
    (timedelta(days=40), "40 days old"),
])
def test_describe_age(age, text):
    now = datetime(2026, 1, 1, tzinfo=UTC)
    assert describe_age(now - (now - age)) == text


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_is_a_bar_on_a_terminal_and_log_lines_otherwise(caplog):
    terminal = Terminal()
    show = _progress(terminal)
    for done in (500, 1000):
        show(done, 1000)
    assert terminal.getvalue() == (f"\r[{'#' * 15:<30}] 500/1000 records"
                                   f"\r[{'#' * 30}] 1000/1000 records\n")

    caplog.set_level(logging.INFO, logger="dockyard.scanner.vulndb")
    piped = io.StringIO()
    show = _progress(piped)
    for done in range(500, 10_001, 500):
        show(done, 10_000)
    assert piped.getvalue() == ""
    lines = [r for r in caplog.records if r.getMessage() == "importing OSV records"]
    # The start, then each tenth.
    assert [r.done for r in lines] == [500, 1000, 2000, 3000, 4000, 5000, 6000, 7000, 8000,
                                       9000, 10_000]
