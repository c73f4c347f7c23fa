"""Failpoints kill their own process at the armed name's N-th pass, and only there."""

from __future__ import annotations

import signal
import subprocess
import sys

import pytest

from services.core.failpoints import ENVIRONMENT_VARIABLE

PROGRAM = """
from services.core.failpoints import failpoint
for n in range(1, 4):
    failpoint("other")
    print(n, flush=True)
    failpoint("armed")
print("done", flush=True)
"""


def run(spec: str | None) -> subprocess.CompletedProcess[str]:
    env = {} if spec is None else {ENVIRONMENT_VARIABLE: spec}
    return subprocess.run([sys.executable, "-c", PROGRAM], capture_output=True, text=True,
                          env={**env, "PYTHONPATH": "."}, timeout=30, check=False)


@pytest.mark.parametrize(("spec", "printed"), [("armed", "1"), ("armed@1", "1"),
                                              ("armed@2", "1 2")])
def test_the_process_is_sigkilled_at_the_nth_pass(spec: str, printed: str) -> None:
    ran = run(spec)
    assert ran.returncode == -signal.SIGKILL
    assert ran.stdout.split() == printed.split()


@pytest.mark.parametrize("spec", [None, "", "armed@4", "elsewhere"])
def test_an_unarmed_or_unreached_failpoint_changes_nothing(spec: str | None) -> None:
    ran = run(spec)
    assert ran.returncode == 0, ran.stderr
    assert ran.stdout.split() == ["1", "2", "3", "done"]


@pytest.mark.parametrize("spec", ["armed@0", "armed@x", "armed@"])
def test_a_malformed_count_is_refused_by_name(spec: str) -> None:
    ran = run(spec)
    assert ran.returncode == 1
    assert f"{ENVIRONMENT_VARIABLE}={spec!r}" in ran.stderr
