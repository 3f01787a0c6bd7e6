#!/usr/bin/env python3
"""Install benchmark of the installer ISO (image_recipes/installer.toml).

Both runs boot the same ISO the same way in QEMU (the accelerator boot-test
chooses; TCG here) with the ISO's kernel and initrd given directly, so the
difference is the work after boot:

  baseline:  live boot -> mkfs.ext4 on the whole disk -> plain `unsquashfs`
             of the same squashfs onto it -> power off (systemd.run=)
  ours:      live boot -> `appliance install` with an answer on the ISO
             (GPT, LVM, ext4, copy, configure, initramfs, GRUB BIOS+UEFI)
             -> power off

Prints both times (QEMU start to exit), their ratio (target <= 1.5) and the
ISO size (target <= 650 MB: the host system was 383 MB before it bundled its
two guest templates, a container root file system and a microVM guest, about
210 MB), and writes them as JSON.

    .venv/bin/python bench/install.py [--cache-dir DIR] [--out DIR] [--disk-gib N]
"""

from __future__ import annotations

import argparse
import json
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from appliance.boot import accel, qemu
from appliance.engine import build as engine
from appliance.installer.prepare_iso import prepare

MB = 1000 * 1000
MiB = 1 << 20
LIVE = "boot=live components console=ttyS0,115200n8"
BASELINE = ("/bin/sh -c 'mkfs.ext4 -q -F /dev/vda && mount /dev/vda /mnt && "
            "unsquashfs -f -d /mnt /run/live/medium/live/filesystem.squashfs >/dev/null && "
            "umount /mnt && echo BASELINE-DONE'")

ANSWER = """\
[global]
keyboard = "en-us"
country = "us"
fqdn = "bench.example.test"
mailto = "root@example.test"
timezone = "Etc/UTC"
root-password = "bench-password"
reboot-mode = "power-off"

[network]
source = "from-dhcp"

[disk-setup]
filesystem = "ext4"
disk-list = ["vda"]
"""


def extract(iso: Path, work: Path) -> tuple[Path, Path]:
    subprocess.run(["xorriso", "-osirrox", "on", "-indev", iso, "-extract", "/live/vmlinuz",
                    work / "vmlinuz", "-extract", "/live/initrd.img", work / "initrd.img"],
                   check=True, capture_output=True)
    return work / "vmlinuz", work / "initrd.img"


def timed_boot(iso: Path, kernel: Path, initrd: Path, cmdline: str, disk: Path, accel_name: str,
               log: Path, marker: bytes, timeout: float = 3600) -> float:
    argv = [
        qemu.QEMU, "-nodefaults", "-display", "none", "-no-reboot", "-machine", "q35",
        "-m", "2048", "-smp", "2", "-accel", accel_name,
        "-cpu", "max" if accel_name == "tcg" else "host", "-serial", f"file:{log}",
        "-kernel", str(kernel), "-initrd", str(initrd), "-append", cmdline,
        "-drive", f"if=none,id=cd,media=cdrom,readonly=on,format=raw,file={iso}",
        "-device", "ide-cd,drive=cd",
        "-drive", f"if=none,id=d0,format=raw,file={disk}", "-device", "virtio-blk-pci,drive=d0",
        "-netdev", "user,id=n0,restrict=on", "-device", "virtio-net-pci,netdev=n0",
    ]
    print("  $", shlex.join(argv), file=sys.stderr)
    t0 = time.monotonic()
    subprocess.run(argv, check=True, timeout=timeout, stdout=subprocess.DEVNULL)
    seconds = time.monotonic() - t0
    if marker not in log.read_bytes():
        raise SystemExit(f"no {marker.decode()} in {log}: the run failed; see the log")
    return seconds


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cache-dir", type=Path, default=Path("/var/cache/appliance"))
    ap.add_argument("--out", type=Path, default=Path("out/bench-install"))
    ap.add_argument("--disk-gib", type=int, default=16)
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    result = engine.build("installer", outdir=args.out, cache_dir=args.cache_dir)
    iso = next(p.path for p in result.products if p.path.suffix == ".iso")
    accel_name, why = accel.choose_accelerator()
    print(f"accelerator: {accel_name} ({why})")
    with tempfile.TemporaryDirectory(dir=args.out) as tmp:
        work = Path(tmp)
        kernel, initrd = extract(iso, work)
        answer = work / "answer.toml"
        answer.write_text(ANSWER)
        auto = prepare(iso, work / "auto.iso", "iso", answer)
        disk = work / "disk.img"

        def blank() -> None:
            disk.unlink(missing_ok=True)
            with open(disk, "wb") as f:
                f.truncate(args.disk_gib << 30)

        blank()
        base = timed_boot(auto, kernel, initrd, f"{LIVE} systemd.run=\"{BASELINE}\"", disk,
                          accel_name, args.out / "baseline.serial.log", b"BASELINE-DONE")
        print(f"baseline (boot, mkfs.ext4, unsquashfs, power off): {base:.1f}s")
        blank()
        ours = timed_boot(auto, kernel, initrd,
                          f"{LIVE} appliance.install systemd.mask=serial-getty@ttyS0.service",
                          disk, accel_name, args.out / "install.serial.log",
                          b"APPLIANCE-INSTALL: OK")
        print(f"appliance install (boot, layout, copy, configure, GRUB, power off): {ours:.1f}s")
    size = iso.stat().st_size
    figures = {
        "accelerator": accel_name,
        "iso_bytes": size,
        "baseline_seconds": round(base, 1),
        "install_seconds": round(ours, 1),
        "ratio": round(ours / base, 2),
    }
    print(f"ISO size: {size / MB:.1f} MB ({size / MiB:.1f} MiB) (target <= 650 MB)")
    print(f"install / plain unsquashfs: {figures['ratio']} (target <= 1.5)")
    (args.out / "bench-install.json").write_text(json.dumps(figures, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
