"""Fixtures shared by every test directory; helpers live in tests/support."""

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.registry import RegistryProcess, require_registry_tools


@pytest.fixture
def registry(tmp_path: Path) -> Iterator[RegistryProcess]:
    """A fresh registry of its own: no auth, no notifications, storage under tmp_path."""
    require_registry_tools()
    with RegistryProcess(tmp_path / "registry") as process:
        yield process
