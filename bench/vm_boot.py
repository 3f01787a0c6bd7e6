#!/usr/bin/env python3
"""Boot time and memory overhead of our microVM monitor vs QEMU.

Run on the build host (as root, after ./run setup):

    .venv/bin/python bench/vm_boot.py [--runs N]

It builds the nested test host (tests/vmm/testhost.py: QEMU TCG `-cpu max`
-> kvm_amd) with QEMU and this script inside, boots it, and there boots
Debian's kernel + the tiny marker initramfs N times each with

  ours-lib   appliance.vmm.Machine in the benchmark's own process
  ours-cli   `python3 -m appliance vm run` as a child process
  microvm    qemu-system-x86_64 -M microvm -accel kvm
  pc         qemu-system-x86_64 -M pc -accel kvm

measuring wall time from start to the guest's userspace marker on the
console, and (child processes) peak RSS beyond the guest-RAM mapping.
Prints the medians, the ratios against QEMU microvm, and one JSON line.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

MEMORY_MIB = 256
RUN_TIMEOUT = 120  # seconds per boot
INSIDE_KERNEL = "/l2/vmlinuz"
INSIDE_INITRD = "/l2/initrd.cpio"


# --- inside the nested test host ---------------------------------------------


def _rss_kib(pid: int, guest_mib: int) -> tuple[int, int] | None:
    """(total RSS, RSS of the guest-RAM mapping) of a process, in KiB."""
    total = guest = 0
    size = 0
    try:
        with open(f"/proc/{pid}/smaps") as f:
            for line in f:
                if line.startswith("Size:"):
                    size = int(line.split()[1])
                elif line.startswith("Rss:"):
                    rss = int(line.split()[1])
                    total += rss
                    if size == guest_mib * 1024:
                        guest += rss
    except OSError:
        return None
    return total, guest


class _RssSampler(threading.Thread):
    def __init__(self, pid: int, guest_mib: int) -> None:
        super().__init__(daemon=True)
        self.pid, self.guest_mib = pid, guest_mib
        self.peak_overhead_kib = 0
        self.peak_total_kib = 0
        self.last_overhead_kib = 0  # steady state: the last sample before exit
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.wait(0.05):
            sample = _rss_kib(self.pid, self.guest_mib)
            if sample is None:
                return
            total, guest = sample
            if total == 0 or guest == 0:
                continue  # exiting, or the guest has not touched its RAM yet
            self.peak_total_kib = max(self.peak_total_kib, total)
            self.peak_overhead_kib = max(self.peak_overhead_kib, total - guest)
            self.last_overhead_kib = total - guest


def _child_to_marker(cmd: list[str], marker: bytes, timeout: float) -> dict[str, float]:
    t0 = time.monotonic()
    proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE)
    sampler = _RssSampler(proc.pid, MEMORY_MIB)
    sampler.start()
    seen = b""
    t_marker = None
    assert proc.stdout is not None
    deadline = t0 + timeout
    while time.monotonic() < deadline:
        chunk = proc.stdout.read1(4096)
        if not chunk:
            break
        seen = (seen + chunk)[-4096:]
        if marker in seen:
            t_marker = time.monotonic() - t0
            break
    # keep sampling until the process ends (it powers off right after the marker)
    try:
        proc.stdout.read()
        proc.wait(timeout=max(1.0, deadline - time.monotonic()))
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
    sampler.stop.set()
    sampler.join()
    if t_marker is None:
        raise RuntimeError(f"no marker from {cmd[0]} within {timeout} s: {seen[-500:]!r}")
    return {
        "to_marker_s": t_marker,
        "rss_overhead_mib": sampler.peak_overhead_kib / 1024,
        "rss_overhead_last_mib": sampler.last_overhead_kib / 1024,
        "rss_total_mib": sampler.peak_total_kib / 1024,
    }


def _ours_lib(cmdline: str, marker: bytes, cpus: int) -> dict[str, float]:
    from appliance.vmm import Machine, MachineConfig

    t0 = time.monotonic()
    found: list[float] = []
    tail = bytearray()

    def sink(data: bytes) -> None:
        tail.extend(data)
        del tail[:-4096]
        if not found and marker in tail:
            found.append(time.monotonic() - t0)

    with Machine(MachineConfig(memory_mib=MEMORY_MIB, cpus=cpus)) as vm:
        vm.load_linux(INSIDE_KERNEL, initrd=INSIDE_INITRD, cmdline=cmdline)
        result = vm.run(timeout=RUN_TIMEOUT, sink=sink)
    if not found:
        raise RuntimeError(f"no marker from our monitor: {result.detail}: {bytes(tail)!r}")
    return {"to_marker_s": found[0], "boot_done_s": result.boot_done_s or -1.0}


def _interpreter_baseline_mib() -> float:
    """RSS of a Python that imported what `appliance vm run` imports, idle
    (the floor of ours-cli: the rest is the monitor's own overhead)."""
    imports = "import appliance.cli, appliance.vmm.launcher, argparse, json, time"
    proc = subprocess.Popen([sys.executable, "-c", f"{imports}; time.sleep(3)"])
    time.sleep(2.5)
    sample = _rss_kib(proc.pid, MEMORY_MIB)
    proc.wait()
    return (sample[0] if sample else 0) / 1024


def inside(runs: int, cmdline: str, marker: str, cpus: int) -> dict[str, object]:
    m = marker.encode()
    qemu_common = [
        "qemu-system-x86_64", "-accel", "kvm", "-cpu", "host", "-m", str(MEMORY_MIB),
        "-smp", str(cpus), "-nodefaults", "-no-user-config", "-display", "none",
        "-serial", "stdio", "-no-reboot", "-kernel", INSIDE_KERNEL, "-initrd", INSIDE_INITRD,
        "-append", cmdline, "-device", "isa-debug-exit,iobase=0x501,iosize=1",
    ]  # fmt: skip
    ours_cli = [
        sys.executable, "-m", "appliance", "vm", "run", "--kernel", INSIDE_KERNEL,
        "--initrd", INSIDE_INITRD, "--cmdline", cmdline, "--memory", str(MEMORY_MIB),
        "--cpus", str(cpus), "--timeout", str(RUN_TIMEOUT),
    ]  # fmt: skip
    microvm = ["qemu-system-x86_64", "-M", "microvm", *qemu_common[1:]]
    pc = ["qemu-system-x86_64", "-M", "pc", *qemu_common[1:]]
    configs = {
        "ours-lib": lambda: _ours_lib(cmdline, m, cpus),
        "ours-cli": lambda: _child_to_marker(ours_cli, m, RUN_TIMEOUT),
        "microvm": lambda: _child_to_marker(microvm, m, RUN_TIMEOUT),
        "pc": lambda: _child_to_marker(pc, m, RUN_TIMEOUT),
    }
    samples: dict[str, list[dict[str, float]]] = {k: [] for k in configs}
    for i in range(runs):
        for name, go in configs.items():
            try:
                s = go()
            except (RuntimeError, OSError) as e:
                print(f"BENCH-ERROR {name} run {i}: {e}", flush=True)
                continue
            samples[name].append(s)
            print(f"BENCH-SAMPLE {name} {json.dumps(s)}", flush=True)
    medians = {
        name: {k: statistics.median(s[k] for s in runs_) for k in runs_[0]}
        for name, runs_ in samples.items()
        if runs_
    }
    return {"runs": runs, "cpus": cpus, "medians": medians,
            "python_baseline_mib": _interpreter_baseline_mib()}  # fmt: skip


# --- on the build host -----------------------------------------------------------


def outside(runs: int, cpus: int) -> dict[str, object]:
    from _nested import nested_host  # not at the top: this file also runs inside L1, alone

    with nested_host("vm-boot-bench-") as (testhost, kernel, work):
        l2 = testhost.build_l2_initramfs(work)
        script = (
            f"python3 /bench/vm_boot.py --inside --runs {runs} --cpus {cpus} "
            f"--cmdline '{testhost.L2_CMDLINE}' --marker '{testhost.MARKER}'"
        )
        files = {"l2/vmlinuz": kernel, "l2/initrd.cpio": l2, "bench/vm_boot.py": Path(__file__)}
        l1 = testhost.build_l1_initramfs(work, kernel, script, files, with_qemu=True)
        out = testhost.boot_l1(
            kernel, l1, timeout=300 + 4 * RUN_TIMEOUT * runs, memory_mib=3072
        ).output
    for line in out.splitlines():
        if line.startswith(("BENCH-SAMPLE", "BENCH-ERROR")):
            print(line, file=sys.stderr)
        if line.startswith("BENCH-RESULT "):
            return dict(json.loads(line.split(" ", 1)[1]))
    raise SystemExit("the nested host printed no result:\n" + "\n".join(out.splitlines()[-40:]))


def report(result: dict[str, object]) -> None:
    med = result["medians"]
    assert isinstance(med, dict)
    base = med.get("microvm", {}).get("to_marker_s")
    print(f"boot to userspace marker, median of {result['runs']} (nested: TCG -> kvm_amd):")
    for name, m in med.items():
        ratio = f"{m['to_marker_s'] / base:.2f} x microvm" if base else "n/a"
        rss = (
            f", RSS beyond guest RAM: peak {m['rss_overhead_mib']:.1f} MiB, "
            f"at the end {m['rss_overhead_last_mib']:.1f} MiB"
            if "rss_overhead_mib" in m
            else ""
        )
        print(f"  {name:9} {m['to_marker_s']:7.2f} s  ({ratio}){rss}")  # fmt: skip
    ours = med.get("ours-cli", {})
    if "rss_overhead_mib" in ours:
        base_mib = float(result["python_baseline_mib"])  # type: ignore[arg-type]
        print(
            f"  python interpreter baseline {base_mib:.1f} MiB; monitor beyond it: "
            f"peak {ours['rss_overhead_mib'] - base_mib:.1f} MiB (while loading the "
            f"kernel), at the end {ours['rss_overhead_last_mib'] - base_mib:.1f} MiB"
        )
    print("BENCH-JSON " + json.dumps(result))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--cpus", type=int, default=1)
    p.add_argument("--inside", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--cmdline", help=argparse.SUPPRESS)
    p.add_argument("--marker", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.inside:
        res = inside(args.runs, args.cmdline, args.marker, args.cpus)
        print("BENCH-RESULT " + json.dumps(res), flush=True)
    else:
        report(outside(args.runs, args.cpus))


if __name__ == "__main__":
    main()
