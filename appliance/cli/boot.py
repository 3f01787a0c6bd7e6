"""`appliance boot-test` (appliance.boot)."""

from __future__ import annotations

import argparse
import sys

from appliance.cli.output import emit
from appliance.errors import BootError


def cmd_boot_test(args: argparse.Namespace) -> int:
    from pathlib import Path

    from appliance.boot import accel, harness

    chosen = accel.choose_accelerator()
    if not args.json:
        print(f"accelerator: {chosen[0]} ({chosen[1]})", file=sys.stderr)
    result = harness.boot_test(
        Path(args.image), firmware=args.firmware, medium=args.medium, timeout=args.timeout,
        memory_mib=args.memory, accelerator=chosen,
    )
    emit(args, result.to_json,
         lambda: f"{result.summary()}\ntime to marker: {result.seconds:.1f}s\n" if result.ok
         else None)
    if args.json:
        return 0 if result.ok else BootError.exit_code
    harness.check(result)
    return 0


def add_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "boot-test",
        help="boot an image in QEMU and check that it comes up cleanly",
        description="Boot an ISO, disk image or netboot directory in QEMU (KVM only with "
        "real VT-x/AMD-V, else TCG -cpu max), wait for the boot-check marker on the serial "
        "console (state running, no failed units) and power off. Exit status "
        f"{BootError.exit_code} on a bad boot, with the reason and the console's last lines. "
        "The serial log is kept next to the image.",
    )
    p.add_argument("image", help="an .iso, a disk image (.img/.raw/.qcow2) or a .netboot/ "
                   "directory")
    p.add_argument("--firmware", choices=("bios", "uefi"), default="bios",
                   help="SeaBIOS or OVMF (default: bios)")
    p.add_argument("--as", dest="medium", choices=("cdrom", "disk", "usb", "pxe"),
                   default=None,
                   help="attach the image as CD-ROM, virtio disk or USB stick (default: "
                   "cdrom for an ISO, disk for a disk image); a netboot directory boots "
                   "with -kernel/-initrd, or with --as pxe through the firmware's iPXE")
    p.add_argument("--timeout", type=float, default=300.0, metavar="S",
                   help="seconds to wait for the boot-check marker (default: 300)")
    p.add_argument("--memory", type=int, default=2048, metavar="MIB",
                   help="guest memory in MiB (default: 2048)")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.set_defaults(func=cmd_boot_test)


