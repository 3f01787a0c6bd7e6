#!/usr/bin/env python3
"""Time `appliance detect` on this machine (target: under 300 ms).

Measures the whole command as a user runs it (a fresh interpreter: imports,
CPUID, /dev/kvm ioctls, udev inventory) and the in-process detect() call.

    .venv/bin/python bench/detect.py [--runs N]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path

TARGET_MS = 300.0
ROOT = Path(__file__).resolve().parents[1]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=10)
    args = parser.parse_args()

    cli: list[float] = []
    for _ in range(args.runs):
        t = time.perf_counter()
        subprocess.run(
            [sys.executable, "-m", "appliance", "detect", "--json"],
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
            check=False,
        )
        cli.append((time.perf_counter() - t) * 1000)

    from appliance.hw import detect

    calls: list[float] = []
    report = None
    for _ in range(args.runs):
        t = time.perf_counter()
        report = detect()
        calls.append((time.perf_counter() - t) * 1000)

    med = statistics.median(cli)
    print(
        f"appliance detect --json (new process): median {med:.1f} ms, "
        f"min {min(cli):.1f} ms, max {max(cli):.1f} ms over {args.runs} runs"
    )
    print(
        f"appliance.hw.detect() (in process):   median {statistics.median(calls):.1f} ms, "
        f"min {min(calls):.1f} ms"
    )
    if report is not None:
        print(f"phases of the last call (ms): {report.timings_ms}")
        print(f"verdict: {report.verdict}")
    print(f"target < {TARGET_MS:.0f} ms: {'met' if med < TARGET_MS else 'MISSED'}")
    return 0 if med < TARGET_MS else 1


if __name__ == "__main__":
    raise SystemExit(main())
