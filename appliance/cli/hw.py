"""`appliance detect`, `device-info`, `device-match` (appliance.hw)."""

from __future__ import annotations

import argparse

from appliance.cli.output import emit, print_json
from appliance.errors import HardwareError


def cmd_detect(args: argparse.Namespace) -> int:
    from appliance.hw import commands

    if args.record:
        print(f"recorded this machine in {commands.record(args.record)}")
        return 0
    report = commands.detect(args.recorded, inventory=not args.no_inventory)
    emit(args, report.to_json, report.to_text)
    return report.exit_code


def cmd_device_info(args: argparse.Namespace) -> int:
    from appliance.hw import commands

    print_json(commands.device_info(args.type, args.recorded))
    return 0


def cmd_device_match(args: argparse.Namespace) -> int:
    from appliance.hw import commands

    result = commands.device_match(
        args.kind, args.filters, args.filter_match, args.recorded, args.udev_json
    )
    emit(args, lambda: result, lambda: "".join(f"{name}\n" for name in result["matched"]))
    return 0 if result["matched"] else 1


def add_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    recorded_help = "read a recorded machine directory instead of this machine (tests, bug reports)"
    p = sub.add_parser(
        "detect",
        help="can this machine host VMs? checks, verdict, disk/NIC inventory",
        description="Check CPU virtualization (CPUID, /proc/cpuinfo, MSRs), /dev/kvm and what "
        "backs it, IOMMU, vhost-net, TUN, namespaces and cgroups; list disks and NICs. "
        "Exit status: 0 hardware-accelerated, 10 software-only, 11 disabled in firmware, "
        "12 no CPU support, 13 KVM not loaded, 14 KVM unusable, "
        f"{HardwareError.exit_code} detection failed.",
    )
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.add_argument("--no-inventory", action="store_true", help="skip the disk/NIC inventory")
    p.add_argument("--recorded", metavar="DIR", help=recorded_help)
    p.add_argument(
        "--record",
        metavar="DIR",
        help="write what detection reads on this machine into DIR, for --recorded",
    )
    p.set_defaults(func=cmd_detect)

    p = sub.add_parser(
        "device-info",
        help="udev properties of disks and NICs (to write answer-file filters)",
        description="Print the udev properties of install-target disks and physical NICs "
        "as JSON, in the shape of Proxmox's run-env-udev.json.",
    )
    p.add_argument("--type", choices=("disk", "network", "all"), default="all")
    p.add_argument("--recorded", metavar="DIR", help=recorded_help)
    p.set_defaults(func=cmd_device_info)

    p = sub.add_parser(
        "device-match",
        help="which disks or NICs a KEY=GLOB filter selects",
        description="Show which devices a filter selects, with the installer's matching: "
        "each KEY=GLOB compares a udev property with a glob (* ? [..] [!..]). "
        "Exit status 1 when nothing matches.",
    )
    p.add_argument("kind", choices=("disk", "network"))
    p.add_argument("filters", nargs="+", metavar="KEY=GLOB")
    p.add_argument(
        "--filter-match",
        choices=("any", "all"),
        default="any",
        help="a device matches when any (default) or all filters match",
    )
    p.add_argument("--json", action="store_true", help="print matched and candidate devices")
    p.add_argument("--recorded", metavar="DIR", help=recorded_help)
    p.add_argument(
        "--udev-json",
        metavar="FILE",
        help="match against a device-info / run-env-udev.json file instead",
    )
    p.set_defaults(func=cmd_device_match)


