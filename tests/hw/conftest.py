"""Shared helpers for the hardware-detection tests.

Recorded machines live in tests/data/hw/machines/<name>/ (see the README
there). Their udev side is replayed with `umockdev-run`, which redirects
/sys and /dev for the child process, so the code under test runs unchanged.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

PROJECT = Path(__file__).resolve().parents[2]
MACHINES = PROJECT / "tests/data/hw/machines"
CONFORMANCE = PROJECT / "../shared/conformance/pve-auto-installer"


def machine(name: str) -> Path:
    path = MACHINES / name
    assert path.is_dir(), path
    return path


def appliance_cmd(*args: str, recorded: str | None = None) -> subprocess.CompletedProcess[str]:
    """Run `python -m appliance ARGS`, under umockdev-run for a recorded machine."""
    cmd = [sys.executable, "-m", "appliance", *args]
    if recorded is not None:
        rec = machine(recorded)
        cmd = [*cmd, "--recorded", str(rec)]
        umockdev = rec / "devices.umockdev"
        if umockdev.exists():
            cmd = ["umockdev-run", "-d", str(umockdev), "--", *cmd]
    env = dict(os.environ, PYTHONPATH=str(PROJECT))
    return subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=60)


def appliance_json(*args: str, recorded: str | None = None) -> tuple[int, Any]:
    proc = appliance_cmd(*args, recorded=recorded)
    assert proc.stdout, proc.stderr
    return proc.returncode, json.loads(proc.stdout)


@pytest.fixture(scope="session")
def umockdev() -> None:
    if shutil.which("umockdev-run") is None:
        pytest.fail("umockdev-run missing: ./run setup installs it (deps/apt-packages-hw.txt)")


@pytest.fixture(scope="session")
def conformance() -> Path:
    if not CONFORMANCE.is_dir():
        pytest.skip(f"conformance corpus not found at {CONFORMANCE}")
    return CONFORMANCE.resolve()
