"""`appliance vm run` (the KVM microVM monitor) and `vm list|create|...` (managed VMs)."""

from __future__ import annotations

import argparse
import sys

from appliance.cli.host import add_guest_commands
from appliance.cli.output import emit


def cmd_vm_run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from appliance.vmm import launcher
    from appliance.vmm.net import parse_net

    result = launcher.run_vm(
        launcher.VmRun(
            kernel=Path(args.kernel),
            initrd=Path(args.initrd) if args.initrd else None,
            cmdline=args.cmdline,
            memory_mib=args.memory,
            cpus=args.cpus,
            console_socket=Path(args.console_socket) if args.console_socket else None,
            timeout=args.timeout,
            kvm_path=args.kvm,
            entry_64=args.entry == "64",
            disks=tuple(launcher.parse_disk(d) for d in args.disk),
            nets=tuple(parse_net(n) for n in args.net),
            seccomp=args.seccomp,
            shutdown_grace=args.shutdown_grace,
        )
    )
    emit(args, result.to_json, lambda: launcher.summary(result) + "\n", text_to=sys.stderr)
    return launcher.exit_status(result)


def add_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    from appliance.vmm import launcher

    v = sub.add_parser("vm", help="microVMs on the built-in KVM monitor: run one, or manage VMs")
    vsub = v.add_subparsers(dest="vm_cmd", required=True)
    p = vsub.add_parser(
        "run",
        help="boot a Linux kernel in a microVM in the foreground",
        description="Boot a bzImage in a KVM microVM with its serial console on this "
        "terminal (Ctrl-A x quits) or on a Unix socket. SIGTERM asks the guest to shut "
        "down (Ctrl-Alt-Delete on its keyboard; Linux with reboot=k then resets); a second "
        "SIGTERM, or --shutdown-grace seconds later, stops it. Exit status: the guest's "
        f"power-off code, 0 after a reset or shutdown, {launcher.EXIT_KILLED} when killed "
        f"(timeout, Ctrl-A x), {launcher.EXIT_CRASHED} when the guest crashed.",
    )
    p.add_argument("--kernel", required=True, metavar="BZIMAGE", help="Linux kernel (bzImage)")
    p.add_argument("--initrd", metavar="FILE", help="initramfs")
    p.add_argument(
        "--cmdline",
        metavar="STR",
        help=f"kernel command line (default: {launcher.DEFAULT_CMDLINE!r}; with --disk or "
        f"--net: {launcher.DEVICES_CMDLINE!r})",
    )
    p.add_argument(
        "--disk",
        action="append",
        default=[],
        metavar="PATH[,ro]",
        help="raw image as a virtio-blk disk (repeatable; vda, vdb... in order)",
    )
    p.add_argument(
        "--net",
        action="append",
        default=[],
        metavar="TAP[,mac=XX:XX:XX:XX:XX:XX]",
        help="virtio-net NIC on an existing TAP that is attached to a bridge (repeatable)",
    )
    p.add_argument("--memory", type=int, default=256, metavar="MiB", help="guest RAM (256)")
    p.add_argument("--cpus", type=int, default=1, metavar="N", help="vCPUs (1)")
    p.add_argument(
        "--console-socket",
        metavar="PATH",
        help="serve the console on this Unix socket instead of the terminal",
    )
    p.add_argument(
        "--timeout", type=float, metavar="SECONDS", help="kill the guest after this long"
    )
    p.add_argument(
        "--shutdown-grace",
        type=float,
        default=launcher.DEFAULT_SHUTDOWN_GRACE,
        metavar="SECONDS",
        help="after SIGTERM, stop the guest if it has not shut down within this long "
        f"({launcher.DEFAULT_SHUTDOWN_GRACE:.0f})",
    )
    p.add_argument("--kvm", default="/dev/kvm", metavar="DEVICE", help="KVM device (/dev/kvm)")
    p.add_argument(
        "--seccomp",
        action="store_true",
        help="confine each vCPU thread with a seccomp filter (a disallowed system call "
        "kills the monitor)",
    )
    p.add_argument(
        "--entry",
        choices=("64", "32"),
        default="64",
        help="kernel entry point: 64-bit (default, if the kernel has one) or 32-bit",
    )
    p.add_argument("--json", action="store_true", help="print the run result as JSON")
    p.set_defaults(func=cmd_vm_run)
    add_guest_commands(vsub, "vm")


