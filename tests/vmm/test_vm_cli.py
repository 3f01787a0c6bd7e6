"""`appliance vm run` end to end through the console script."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path


def appliance(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "appliance", "vm", "run", *args],
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
        timeout=60,
    )


def test_not_a_bzimage_is_a_clear_error(tmp_path: Path) -> None:
    bogus = tmp_path / "vmlinuz"
    bogus.write_bytes(b"\0" * 4096)
    r = appliance("--kernel", str(bogus))
    assert r.returncode == 5
    assert r.stderr.startswith(f"appliance: error: {bogus}: not a bzImage")
    assert "Traceback" not in r.stderr


def test_missing_kvm_device_is_a_clear_error(debian_kernel: Path, tmp_path: Path) -> None:
    r = appliance("--kernel", str(debian_kernel), "--kvm", str(tmp_path / "kvm"))
    assert r.returncode == 5
    assert "cannot open" in r.stderr and "No such file or directory" in r.stderr


def test_timeout_kills_the_guest_and_reports_json(debian_kernel: Path) -> None:
    r = appliance("--kernel", str(debian_kernel), "--timeout", "1", "--cpus", "2", "--json")
    assert r.returncode == 124, r.stderr
    result = json.loads(r.stdout)
    assert result["status"] == "killed"
    assert result["counters"]["exits_total"] >= 0
    assert 1.0 <= result["run_s"] < 10
