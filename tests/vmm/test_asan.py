"""The monitor's unit tests once more, with the C core built under
AddressSanitizer (loaded through APPLIANCE_VMM_NATIVE).

CPython itself is not instrumented, so libasan is preloaded and leak
detection is off (the interpreter's own allocations would drown it); fd and
memory leaks of the C core are covered by test_create_destroy_leaks_nothing.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

from appliance.runner import run

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def asan_build(tmp_path_factory: pytest.TempPathFactory) -> Path:
    spec = importlib.util.spec_from_file_location("vmm_build", ROOT / "native" / "vmm_build.py")
    assert spec is not None and spec.loader is not None
    vmm_build = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(vmm_build)
    asan = ["-fsanitize=address", "-fno-omit-frame-pointer", "-O1"]
    ffi = vmm_build.make_ffibuilder(
        extra_cflags=asan, extra_ldflags=["-fsanitize=address"], absolute_paths=True
    )
    out = tmp_path_factory.mktemp("asan")
    return Path(ffi.compile(tmpdir=str(out)))


def test_unit_tests_pass_with_the_core_under_asan(asan_build: Path) -> None:
    symbols = run(["nm", "-D", asan_build], capture=True).stdout.decode()
    assert "__asan_report_store" in symbols, "the variant is not instrumented"
    libasan = run(["gcc", "-print-file-name=libasan.so"], capture=True).stdout.decode().strip()
    env = dict(
        os.environ,
        LD_PRELOAD=libasan,
        APPLIANCE_VMM_NATIVE=str(asan_build),
        ASAN_OPTIONS="detect_leaks=0:abort_on_error=0:exitcode=99:halt_on_error=1",
    )
    probe = subprocess.run(
        [sys.executable, "-c", "from appliance.vmm import _native; print(_native.NATIVE_PATH)"],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    assert probe.stdout.strip() == str(asan_build)
    tests = ROOT / "tests" / "vmm"
    r = subprocess.run(
        [
            sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
            "-m", "not e2e", f"--ignore={tests / 'test_asan.py'}",
            f"--ignore={tests / 'test_virtq_fuzz.py'}", str(tests),
            "--deselect", "tests/vmm/test_machine_errors.py::test_create_and_close_release_memory",
        ],
        env=env, cwd=ROOT, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    tail = (r.stdout + r.stderr)[-6000:]
    assert "AddressSanitizer" not in r.stderr, tail
    assert r.returncode == 0, tail
    assert " passed" in r.stdout and " failed" not in r.stdout, tail
