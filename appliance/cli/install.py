"""`appliance install`, `prepare-iso` (appliance.installer)."""

from __future__ import annotations

import argparse
import sys

from appliance.cli.output import emit
from appliance.errors import ApplianceError


def cmd_install(args: argparse.Namespace) -> int:
    from pathlib import Path

    from appliance.installer import main as installer
    from appliance.installer.run import Console

    if args.boot:
        return installer.boot()
    if not args.answer:
        raise ApplianceError("give --answer FILE (or --boot on the installer ISO)")
    console = Console(sys.stderr if args.json else sys.stdout)
    plan = installer.plan_from_answer(Path(args.answer), console, args.answer, args.recorded)
    emit(args, plan.to_json, lambda: "install plan:\n" + plan.describe() + "\n")
    if args.dry_run:
        return 0
    if not args.yes:
        raise ApplianceError(f"this erases {plan.disk}: add --yes to install (or --dry-run "
                             "to only show the plan)")
    from appliance.installer.run import install

    install(plan, console)
    console.say("installed")
    return 0


def cmd_prepare_iso(args: argparse.Namespace) -> int:
    from pathlib import Path

    from appliance.installer.prepare_iso import prepare

    out = prepare(Path(args.iso), Path(args.output), args.fetch_from,
                  Path(args.answer) if args.answer else None, args.url, args.cert_fingerprint,
                  Path(args.on_first_boot) if args.on_first_boot else None,
                  allow_insecure=args.allow_insecure)
    print(f"unattended installer ISO: {out}")
    return 0


def add_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "install",
        help="install the host system onto a disk (runs on the installer ISO)",
        description="Install the live system onto the disk an answer file selects: GPT, LVM "
        "(swap, root, thin pool for guests), GRUB for BIOS and UEFI. Only the selected disk "
        "is written. On the installer ISO, appliance-installer.service runs `install --boot` "
        "(answer from the kernel command line, the ISO, an APPLIANCE-AIS partition or HTTP; "
        "interactive without one).",
    )
    p.add_argument("--answer", metavar="FILE", help="answer file (Proxmox answer.toml dialect)")
    p.add_argument("--dry-run", action="store_true", help="only resolve and print the plan")
    p.add_argument("--yes", action="store_true", help="really erase the selected disk")
    p.add_argument("--json", action="store_true", help="print the plan as JSON")
    p.add_argument("--recorded", metavar="DIR",
                   help="resolve against a recorded machine (with --dry-run)")
    p.add_argument("--boot", action="store_true", help=argparse.SUPPRESS)
    p.set_defaults(func=cmd_install)

    p = sub.add_parser(
        "prepare-iso",
        help="make an installer ISO unattended (embed the answer or where to fetch it)",
        description="Re-pack an installer ISO with xorriso (no rebuild) so it installs "
        "unattended: the answer on the ISO (--fetch-from iso --answer FILE), on a partition "
        "labelled APPLIANCE-AIS (--fetch-from partition), or from a URL (--fetch-from http "
        "--url URL [--cert-fingerprint SHA256]; without --url, from DHCP option 250).",
    )
    p.add_argument("iso", help="the installer ISO (appliance build installer)")
    p.add_argument("-o", "--output", required=True, help="the new ISO")
    p.add_argument("--fetch-from", choices=("iso", "partition", "http"), default="iso")
    p.add_argument("--answer", metavar="FILE", help="answer file (validated; embedded for iso)")
    p.add_argument("--url", help="answer URL for --fetch-from http")
    p.add_argument("--cert-fingerprint", metavar="SHA256",
                   help="pin the HTTPS server's certificate (SHA-256, hex)")
    p.add_argument("--on-first-boot", metavar="FILE",
                   help="script for the answer's [first-boot] source = \"from-iso\"")
    p.add_argument("--allow-insecure", action="store_true",
                   help="let the installer fetch the answer, first-boot hook and webhook over "
                   "plain http:// (default: HTTPS only, pinned or CA-signed)")
    p.set_defaults(func=cmd_prepare_iso)


