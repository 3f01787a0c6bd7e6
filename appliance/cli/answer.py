"""`appliance answer validate|resolve|keys` (appliance.answer)."""

from __future__ import annotations

import argparse

from appliance.cli.output import emit


def cmd_answer_validate(args: argparse.Namespace) -> int:
    from appliance.answer import commands

    answer = commands.validate(args.file)
    emit(args, answer.to_json, lambda: commands.answer_text(answer))
    return 0


def cmd_answer_resolve(args: argparse.Namespace) -> int:
    from appliance.answer import commands

    plan = commands.resolve_file(args.file, args.udev_json, args.info_json, args.recorded)
    emit(args, plan.to_json, lambda: commands.plan_text(plan))
    return 0


def cmd_answer_keys(args: argparse.Namespace) -> int:
    from appliance.answer import commands

    emit(args, commands.keys_json, commands.keys_text)
    return 0


def add_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    from appliance.errors import AnswerError

    a = sub.add_parser(
        "answer",
        help="check installer answer files (Proxmox VE answer.toml dialect)",
        description="Validate an unattended-installation answer file, or resolve it against "
        "a machine to see which disks, NIC, addresses and host name the installer would use. "
        f"Exit status {AnswerError.exit_code} when the answer is wrong or does not fit.",
    )
    asub = a.add_subparsers(dest="answer_cmd", required=True)
    p = asub.add_parser("validate", help="check an answer file offline")
    p.add_argument("file", help="the answer file (TOML)")
    p.add_argument("--json", action="store_true", help="print the parsed answer as JSON")
    p.set_defaults(func=cmd_answer_validate)
    p = asub.add_parser(
        "resolve",
        help="apply an answer file to a machine and print the install plan",
        description="Resolve an answer file against this machine (default), a recorded one "
        "(run under `umockdev-run -d DIR/devices.umockdev` for its disks and NICs), or "
        "Proxmox-style run-env-udev.json / run-env-info.json files.",
    )
    p.add_argument("file", help="the answer file (TOML)")
    p.add_argument("--udev-json", metavar="FILE",
                   help="udev properties of disks and NICs (`appliance device-info` output or "
                   "Proxmox's run-env-udev.json)")
    p.add_argument("--info-json", metavar="FILE",
                   help="Proxmox-style run-env-info.json: disk sizes, NIC addresses, DHCP "
                   "host name and domain, routes, DNS, hvm_supported")
    p.add_argument("--recorded", metavar="DIR",
                   help="a recorded machine directory (appliance detect --record)")
    p.add_argument("--json", action="store_true", help="print the plan as JSON")
    p.set_defaults(func=cmd_answer_resolve)
    p = asub.add_parser("keys", help="list every answer-file key")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=cmd_answer_keys)


