"""Shared fixtures. Slow fixtures (real builds) are session-scoped: each
image is built once per test run and inspected by many tests."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DATA = Path(__file__).resolve().parent / "data"


@pytest.fixture(scope="session")
def build_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One step cache for the whole test run (shared by all real builds).
    APPLIANCE_TEST_CACHE=DIR reuses a cache across runs (while developing;
    CI always starts empty)."""
    keep = os.environ.get("APPLIANCE_TEST_CACHE")
    if keep:
        Path(keep).mkdir(parents=True, exist_ok=True)
        return Path(keep)
    return tmp_path_factory.mktemp("cache")


def require_root() -> None:
    if os.geteuid() != 0:
        pytest.fail("real builds need root (CI runs as root)")
