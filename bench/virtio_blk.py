#!/usr/bin/env python3
"""virtio-blk sequential read throughput: our monitor vs QEMU, same image,
same guest, same nested host.

Run on the build host (as root, after ./run setup):

    .venv/bin/python bench/virtio_blk.py [--runs N] [--size-mib M]

It builds the nested test host (tests/vmm/testhost.py: QEMU TCG `-cpu max`
-> kvm_amd) with QEMU inside; there a raw image of M MiB is written to tmpfs
(so both monitors read it from the L1 page cache), and an L2 guest (Debian's
kernel + a busybox initramfs with virtio_pci/virtio_blk) is booted N times
with each of

  ours   python3 -m appliance vm run --disk IMAGE,ro
  qemu   qemu-system-x86_64 -M pc -accel kvm -device virtio-blk-pci (readonly)

The guest reads /dev/vda once, sequentially, 1 MiB blocks with O_DIRECT
(dd iflag=direct; no guest page cache), timing it itself.  Prints MB/s per
run, the medians and the ratio ours / QEMU (target >= 1.0), and one JSON line.
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import sys

MEMORY_MIB = 256
CMDLINE = "console=ttyS0 reboot=k panic=-1 acpi=off pci=conf1 i8042.noaux i8042.nomux quiet"
L2_SCRIPT = r"""
i=0; while [ ! -b /dev/vda ] && [ $i -lt 100 ]; do sleep 0.1; i=$((i+1)); done
t0=$(cat /proc/uptime | cut -d' ' -f1)
dd if=/dev/vda of=/dev/null bs=1M iflag=direct 2>/tmp/dd
t1=$(cat /proc/uptime | cut -d' ' -f1)
echo "BENCH-READ bytes=$(cat /sys/block/vda/size)x512 t0=$t0 t1=$t1 dd=$(tr '\n' ' ' </tmp/dd)"
printf '\000' | dd of=/dev/port bs=1 seek=1281 count=1 2>/dev/null
"""


def l1_script(runs: int, size_mib: int) -> str:
    ours = (
        "python3 -m appliance vm run --kernel /l2/vmlinuz --initrd /l2/initrd.cpio "
        f"--disk /tmp/disk.img,ro --memory {MEMORY_MIB} --timeout 300 "
        f'--cmdline "{CMDLINE}" </dev/null'
    )
    qemu = (
        "qemu-system-x86_64 -M pc -accel kvm -cpu host "
        f"-m {MEMORY_MIB} -nodefaults -no-user-config -display none -serial stdio "
        "-no-reboot -kernel /l2/vmlinuz -initrd /l2/initrd.cpio "
        f'-append "{CMDLINE}" -device isa-debug-exit,iobase=0x501,iosize=1 '
        "-drive file=/tmp/disk.img,if=none,id=d0,format=raw,readonly=on "
        "-device virtio-blk-pci,drive=d0 </dev/null"
    )
    body = "\n".join(
        f'echo "=== {name} {i}"\n{cmd}\necho "=== end"'
        for i in range(runs)
        for name, cmd in (("ours", ours), ("qemu", qemu))
    )
    return f"dd if=/dev/zero of=/tmp/disk.img bs=1M count={size_mib} 2>/dev/null\n{body}\n"


def parse(out: str) -> dict[str, list[float]]:
    samples: dict[str, list[float]] = {"ours": [], "qemu": []}
    for m in re.finditer(r"=== (ours|qemu) \d+\n(.*?)=== end", out, re.S):
        r = re.search(r"BENCH-READ bytes=(\d+)x512 t0=([\d.]+) t1=([\d.]+) dd=(.*)", m.group(2))
        if not r:
            print(f"BENCH-ERROR {m.group(1)}: {m.group(2)[-800:]}", file=sys.stderr)
            continue
        nbytes = int(r.group(1)) * 512
        seconds = float(r.group(3)) - float(r.group(2))
        mbs = nbytes / 1e6 / max(seconds, 0.01)
        samples[m.group(1)].append(mbs)
        print(f"  {m.group(1):4} {nbytes >> 20} MiB in {seconds:.2f} s: {mbs:8.1f} MB/s"
              f"  (guest dd: {r.group(4).strip()})")  # fmt: skip
    return samples


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--size-mib", type=int, default=256)
    args = p.parse_args()
    from _nested import nested_host

    with nested_host("virtio-blk-bench-") as (testhost, kernel, work):
        l2 = testhost.build_l2_busybox_initramfs(
            work, kernel, ("virtio_pci", "virtio_blk"), L2_SCRIPT, "l2-bench"
        )
        l1 = testhost.build_l1_initramfs(
            work, kernel, l1_script(args.runs, args.size_mib),
            {"l2/vmlinuz": kernel, "l2/initrd.cpio": l2}, with_qemu=True,
        )  # fmt: skip
        run = testhost.boot_l1(
            kernel, l1, timeout=300 + 240 * args.runs, memory_mib=1024 + args.size_mib
        )
    print(f"virtio-blk sequential read, {args.size_mib} MiB, nested (TCG -> kvm_amd), "
          f"L1 run {run.seconds:.0f} s:")  # fmt: skip
    samples = parse(run.output)
    if not samples["ours"] or not samples["qemu"]:
        print("\n".join(run.output.splitlines()[-40:]), file=sys.stderr)
        raise SystemExit("missing samples")
    ours, qemu = statistics.median(samples["ours"]), statistics.median(samples["qemu"])
    print(f"median: ours {ours:.1f} MB/s, QEMU {qemu:.1f} MB/s, ours / QEMU = {ours / qemu:.2f}")
    result = {"size_mib": args.size_mib, "runs": args.runs, "samples": samples,
              "ours_mbs": ours, "qemu_mbs": qemu, "ratio": round(ours / qemu, 3)}  # fmt: skip
    print("BENCH-JSON " + json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
