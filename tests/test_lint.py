"""The code stays ruff-clean and type-checks (mypy --strict on the package)."""

from __future__ import annotations

import subprocess
import sys

from .conftest import ROOT


def test_ruff_is_clean() -> None:
    res = subprocess.run([sys.executable, "-m", "ruff", "check", "appliance", "tests", "bench"],
                         cwd=ROOT, capture_output=True, text=True)
    assert res.returncode == 0, res.stdout + res.stderr


def test_mypy_strict_is_clean() -> None:
    res = subprocess.run([sys.executable, "-m", "mypy", "--strict", "appliance"],
                         cwd=ROOT, capture_output=True, text=True)
    assert res.returncode == 0, res.stdout + res.stderr
