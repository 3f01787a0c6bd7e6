"""Fuzzing of the virtqueue parser and virtio-blk request handling under
AddressSanitizer, with a fixed budget of executions and gcov coverage.

The harness (native/virtq_fuzz.c) is built with -fsanitize=address and
--coverage; the driver (virtq_fuzz_driver.py, Hypothesis) runs in its own
process with libasan preloaded, so any out-of-bounds access, use after
free or overflow aborts it with an ASan report.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from appliance.runner import run

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = int(os.environ.get("VIRTQ_FUZZ_EXAMPLES", "3000"))


@pytest.fixture(scope="module")
def fuzz_build(tmp_path_factory: pytest.TempPathFactory) -> Path:
    spec = importlib.util.spec_from_file_location(
        "virtq_fuzz_build", ROOT / "native" / "virtq_fuzz_build.py"
    )
    assert spec is not None and spec.loader is not None
    build = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(build)
    flags = ["-fsanitize=address", "-fno-omit-frame-pointer", "--coverage"]
    ffi = build.make_ffibuilder(flags, ["-fsanitize=address", "--coverage"])
    out = tmp_path_factory.mktemp("virtq-fuzz")
    return Path(ffi.compile(tmpdir=str(out)))


def line_coverage(build_dir: Path, source: str) -> tuple[float, int]:
    gcda = next(build_dir.rglob(f"{Path(source).stem}.gcda"))
    out = run(
        ["gcov", "-n", "-o", gcda.parent, ROOT / "native" / source], capture=True, cwd=build_dir
    ).stdout.decode()
    m = re.search(rf"File '[^']*{re.escape(source)}'\nLines executed:([\d.]+)% of (\d+)", out)
    assert m, out
    return float(m.group(1)), int(m.group(2))


def test_virtqueue_fuzzing_finds_no_memory_errors(fuzz_build: Path) -> None:
    symbols = run(["nm", "-D", fuzz_build], capture=True).stdout.decode()
    assert "__asan_report_store" in symbols, "the harness is not instrumented"
    libasan = run(["gcc", "-print-file-name=libasan.so"], capture=True).stdout.decode().strip()
    env = dict(
        os.environ,
        LD_PRELOAD=libasan,
        ASAN_OPTIONS="detect_leaks=0:abort_on_error=0:exitcode=99:halt_on_error=1",
    )
    r = subprocess.run(
        [sys.executable, str(Path(__file__).with_name("virtq_fuzz_driver.py")),
         str(fuzz_build), str(EXAMPLES)],
        env=env, capture_output=True, text=True, timeout=600, cwd=ROOT,
    )  # fmt: skip
    tail = (r.stdout + r.stderr)[-6000:]
    assert "AddressSanitizer" not in r.stderr, tail
    assert r.returncode == 0, tail
    stats = json.loads(r.stdout.strip().splitlines()[-1])
    assert stats["executions"] >= EXAMPLES * 0.9, stats
    # the inputs reach the request handler and the error paths alike
    assert stats["requests"] > 0 and stats["device_errors"] > 0, stats
    assert stats["bytes_read"] > 0 and stats["bytes_written"] > 0, stats
    coverage = {src: line_coverage(fuzz_build.parent, src) for src in
                ("virtq.c", "virtio_blk.c", "virtio_pci.c")}  # fmt: skip
    print(f"\nvirtq fuzz: {stats}; line coverage: "
          + ", ".join(f"{s} {pct:.1f}% of {n}" for s, (pct, n) in coverage.items()))  # fmt: skip
    assert coverage["virtq.c"][0] >= 80, coverage
