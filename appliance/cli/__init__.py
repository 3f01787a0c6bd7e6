"""Command line: parses arguments and calls the capability that does the work.

Every ApplianceError is caught here once and turned into a message and an
exit code; user mistakes never show a traceback.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Callable, Sequence
from typing import Any

from appliance import __version__
from appliance.errors import ApplianceError, BootError

Handler = Callable[[argparse.Namespace], int]


def _print_json(data: Any) -> None:
    json.dump(data, sys.stdout, indent=2, sort_keys=False, default=str)
    sys.stdout.write("\n")


# --- build, recipe, cache (the recipe engine) --------------------------------


def _parse_sets(items: Sequence[str]) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ApplianceError(f"--set {item!r}: expected KEY=VALUE")
        out[key.strip()] = value
    return out


def _add_recipe_args(p: argparse.ArgumentParser, optional: bool) -> None:
    p.add_argument(
        "recipe",
        nargs="?" if optional else None,
        help="recipe file, or a name from image_recipes/ (default: the embedded default "
        "recipe, image_recipes/installer.toml: the installer ISO)"
        if optional
        else "recipe file, or a name from image_recipes/",
    )
    p.add_argument(
        "--set",
        dest="sets",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="set a recipe variable (repeatable)",
    )


def cmd_build(args: argparse.Namespace) -> int:
    from appliance.engine import build

    result = build.build(
        recipe=args.recipe,
        outdir=args.output,
        cache_dir=args.cache_dir,
        variables=_parse_sets(args.sets),
        dry_run=args.dry_run,
        use_cache=not args.no_cache,
        formats=args.format or None,
    )
    if args.json:
        _print_json(result.to_json())
    else:
        build.print_summary(result)
    return 0


def cmd_recipe_show(args: argparse.Namespace) -> int:
    from appliance.recipe import loader

    recipe = loader.load(args.recipe, variables=_parse_sets(args.sets))
    if args.json:
        _print_json(recipe.to_dict())
    else:
        sys.stdout.write(recipe.to_toml())
    return 0


def cmd_recipe_steps(args: argparse.Namespace) -> int:
    from appliance.recipe import docs

    if args.json:
        _print_json(docs.reference())
    else:
        sys.stdout.write(docs.reference_text())
    return 0


def cmd_cache_list(args: argparse.Namespace) -> int:
    from appliance.engine import cache

    entries = cache.Cache(args.cache_dir).entries()
    if args.json:
        _print_json([e.to_json() for e in entries])
    else:
        cache.print_entries(entries)
    return 0


def cmd_cache_prune(args: argparse.Namespace) -> int:
    from appliance.engine import cache

    removed, freed = cache.Cache(args.cache_dir).prune(
        keep_days=args.older_than, remove_all=args.all
    )
    if args.json:
        _print_json({"removed": removed, "freed_bytes": freed})
    else:
        print(f"removed {len(removed)} cache entries, freed {freed / 2**20:.1f} MiB")
    return 0


def _add_build_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    from appliance.paths import DEFAULT_CACHE_DIR

    p = sub.add_parser(
        "build",
        help="build a recipe into images",
        description="Build a recipe: run its steps (reusing cached ones) and write its outputs.",
        epilog="examples:\n"
        "  appliance build                       build the default recipe into ./out\n"
        "  appliance build test-minimal --dry-run  validate and show the plan\n"
        "  appliance build host --set hostname=pve1 -o /srv/images\n"
        "The full log of every command goes to OUTDIR/build.log.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _add_recipe_args(p, optional=True)
    p.add_argument("-o", "--output", default="out", help="output directory (default: ./out)")
    p.add_argument(
        "--cache-dir",
        default=str(DEFAULT_CACHE_DIR),
        help=f"step cache directory (default: {DEFAULT_CACHE_DIR})",
    )
    p.add_argument("--dry-run", action="store_true", help="validate and print the plan only")
    p.add_argument("--no-cache", action="store_true", help="ignore and do not fill the cache")
    p.add_argument(
        "--format",
        action="append",
        metavar="FORMAT",
        help="only write this output format (repeatable; default: all the recipe declares)",
    )
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.set_defaults(func=cmd_build)

    r = sub.add_parser("recipe", help="inspect recipes")
    rsub = r.add_subparsers(dest="recipe_cmd", required=True)
    p = rsub.add_parser("show", help="print the fully resolved recipe")
    _add_recipe_args(p, optional=False)
    p.add_argument("--json", action="store_true", help="print JSON instead of TOML")
    p.set_defaults(func=cmd_recipe_show)
    p = rsub.add_parser("steps", help="list step and output types with their options")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=cmd_recipe_steps)

    c = sub.add_parser("cache", help="manage the build cache")
    csub = c.add_subparsers(dest="cache_cmd", required=True)
    for name, func, hlp in (
        ("list", cmd_cache_list, "list cached steps"),
        ("prune", cmd_cache_prune, "remove cached steps"),
    ):
        p = csub.add_parser(name, help=hlp)
        p.add_argument("--cache-dir", default=str(DEFAULT_CACHE_DIR))
        p.add_argument("--json", action="store_true", help="print JSON")
        if name == "prune":
            p.add_argument(
                "--older-than",
                type=float,
                default=7.0,
                metavar="DAYS",
                help="remove entries not used for DAYS days (default: 7)",
            )
            p.add_argument("--all", action="store_true", help="remove every entry")
        p.set_defaults(func=func)


# --- hardware detection (appliance.hw) ----------------------------------------


def cmd_detect(args: argparse.Namespace) -> int:
    from appliance.hw import commands

    if args.record:
        print(f"recorded this machine in {commands.record(args.record)}")
        return 0
    report = commands.detect(args.recorded, inventory=not args.no_inventory)
    sys.stdout.write(report.to_json_text() + "\n" if args.json else report.to_text())
    return report.exit_code


def cmd_device_info(args: argparse.Namespace) -> int:
    from appliance.hw import commands

    _print_json(commands.device_info(args.type, args.recorded))
    return 0


def cmd_device_match(args: argparse.Namespace) -> int:
    from appliance.hw import commands

    result = commands.device_match(
        args.kind, args.filters, args.filter_match, args.recorded, args.udev_json
    )
    if args.json:
        _print_json(result)
    else:
        sys.stdout.write("".join(f"{name}\n" for name in result["matched"]))
    return 0 if result["matched"] else 1


def _add_hw_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    recorded_help = "read a recorded machine directory instead of this machine (tests, bug reports)"
    p = sub.add_parser(
        "detect",
        help="can this machine host VMs? checks, verdict, disk/NIC inventory",
        description="Check CPU virtualization (CPUID, /proc/cpuinfo, MSRs), /dev/kvm and what "
        "backs it, IOMMU, vhost-net, TUN, namespaces and cgroups; list disks and NICs. "
        "Exit status: 0 hardware-accelerated, 10 software-only, 11 disabled in firmware, "
        "12 no CPU support, 13 KVM not loaded, 14 KVM unusable, 5 detection failed.",
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


# --- answer files (appliance.answer) -------------------------------------------


def cmd_answer_validate(args: argparse.Namespace) -> int:
    from appliance.answer import commands

    answer = commands.validate(args.file)
    if args.json:
        _print_json(answer.to_json())
    else:
        sys.stdout.write(commands.answer_text(answer))
    return 0


def cmd_answer_resolve(args: argparse.Namespace) -> int:
    from appliance.answer import commands

    plan = commands.resolve_file(args.file, args.udev_json, args.info_json, args.recorded)
    if args.json:
        _print_json(plan.to_json())
    else:
        sys.stdout.write(commands.plan_text(plan))
    return 0


def cmd_answer_keys(args: argparse.Namespace) -> int:
    from appliance.answer import commands

    if args.json:
        _print_json(commands.keys_json())
    else:
        sys.stdout.write(commands.keys_text())
    return 0


def _add_answer_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
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


# --- vm (the KVM microVM monitor) --------------------------------------------


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
    if args.json:
        _print_json(result.to_json())
    else:
        print(launcher.summary(result), file=sys.stderr)
    return launcher.exit_status(result)


def _add_vm_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
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


# --- guests, tasks, templates (appliance.host) --------------------------------


def _host() -> Any:
    from appliance.host import Host

    return Host()


def cmd_guest_list(args: argparse.Namespace) -> int:
    from appliance.host import commands

    rows = _host().list_guests(args.kind)
    if args.json:
        _print_json([g.to_json() for g in rows])
    else:
        sys.stdout.write(commands.guest_table(rows))
    return 0


def cmd_guest_create(args: argparse.Namespace) -> int:
    from appliance.host import commands

    host = _host()
    task = commands.finished(host, host.create(args.kind, commands.create_request(args,
                                                                                  args.kind)))
    if args.json:
        _print_json(host.guest(task.guest).to_json() if task.guest else {})
    else:
        print(f"created {args.kind} {task.guest}")
    return 0


def cmd_guest_action(args: argparse.Namespace) -> int:
    from appliance.host import commands

    host = _host()
    if host.guest(args.id).config.type != args.kind:
        from appliance.errors import HostError

        raise HostError(f"guest {args.id} is not a {'VM' if args.kind == 'vm' else 'container'}",
                        404)
    task = commands.finished(host, getattr(host, args.action)(args.id))
    if args.json:
        _print_json(task.to_json())
    else:
        print(f"{args.action}: {args.kind} {args.id}: OK")
    return 0


def cmd_guest_console(args: argparse.Namespace) -> int:
    from appliance.host import commands

    return commands.console(_host(), args.id)


def add_guest_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser],
                       kind: str) -> None:
    """`appliance vm|ct list|create|start|shutdown|stop|delete|console`."""
    what = "VM" if kind == "vm" else "container"
    p = sub.add_parser("list", help=f"list {what}s and their status")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=cmd_guest_list, kind=kind)
    p = sub.add_parser("create", help=f"create a {what} from a template")
    p.add_argument("--name", required=True, help="host name of the guest")
    p.add_argument("--template", required=True, help="template name (appliance template list)")
    p.add_argument("--memory", type=int, default=512, metavar="MiB", help="memory (512)")
    p.add_argument("--cpus", type=int, default=1, metavar="N", help="CPUs (1)")
    p.add_argument("--id", type=int, help="guest id (default: the lowest free from 100)")
    p.add_argument("--bridge", help="host bridge for the NIC (default: no NIC)")
    p.add_argument("--description", help="free text")
    if kind == "vm":
        p.add_argument("--cmdline", help="kernel command line (default: the template's)")
        p.add_argument("--disk", type=int, action="append", metavar="MiB",
                       help="add a raw disk of this size (repeatable)")
    else:
        p.add_argument("--password-file", metavar="FILE", help="root password (first line)")
        p.add_argument("--ssh-key-file", action="append", metavar="FILE",
                       help="SSH public keys for root (repeatable)")
    p.add_argument("--json", action="store_true", help="print the new guest as JSON")
    p.set_defaults(func=cmd_guest_create, kind=kind)
    for action, hlp in (("start", "start"), ("shutdown", "stop cleanly"),
                        ("stop", "stop at once (hard)"), ("delete", "delete (when stopped)")):
        p = sub.add_parser(action, help=f"{hlp} a {what}")
        p.add_argument("id", type=int)
        p.add_argument("--json", action="store_true", help="print the task as JSON")
        p.set_defaults(func=cmd_guest_action, kind=kind, action=action)
    p = sub.add_parser("console", help=f"attach this terminal to a {what}'s console")
    p.add_argument("id", type=int)
    p.set_defaults(func=cmd_guest_console, kind=kind)


def cmd_task_list(args: argparse.Namespace) -> int:
    from appliance.host import commands

    rows = _host().tasks.list(limit=args.limit, guest=args.guest)
    if args.json:
        _print_json([t.to_json() for t in rows])
    else:
        sys.stdout.write(commands.task_table(rows))
    return 0


def cmd_task_log(args: argparse.Namespace) -> int:
    sys.stdout.write(_host().tasks.log(args.upid))
    return 0


def cmd_template_list(args: argparse.Namespace) -> int:
    rows = _host().templates()
    if args.json:
        _print_json([t.to_json() for t in rows])
    else:
        for t in rows:
            print(f"{t.kind}  {t.name:30}  {t.size_bytes / 2**20:8.1f} MiB  {t.description}")
    return 0


def cmd_template_add(args: argparse.Namespace) -> int:
    from pathlib import Path

    from appliance.host import templates

    host = _host()
    if args.kind == "ct":
        templates.add_ct_template(host.paths, args.name, Path(args.tarball))
    else:
        templates.add_vm_template(
            host.paths, args.name, Path(args.kernel),
            initrd=Path(args.initrd) if args.initrd else None,
            disk=Path(args.disk) if args.disk else None, cmdline=args.cmdline,
            description=args.description or "",
        )
    print(f"added {args.kind} template {args.name}")
    return 0


def cmd_web_serve(args: argparse.Namespace) -> int:
    from appliance.web import server

    return server.serve(args.listen)


def _add_host_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    c = sub.add_parser("ct", help="manage LXC containers")
    add_guest_commands(c.add_subparsers(dest="ct_cmd", required=True), "ct")

    t = sub.add_parser("task", help="list tasks and show their logs")
    tsub = t.add_subparsers(dest="task_cmd", required=True)
    p = tsub.add_parser("list", help="tasks, newest first")
    p.add_argument("--limit", type=int, default=50)
    p.add_argument("--guest", type=int, help="only this guest's tasks")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=cmd_task_list)
    p = tsub.add_parser("log", help="print a task's log")
    p.add_argument("upid")
    p.set_defaults(func=cmd_task_log)

    t = sub.add_parser("template", help="guest templates")
    tsub = t.add_subparsers(dest="template_cmd", required=True)
    p = tsub.add_parser("list", help="list VM and container templates")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=cmd_template_list)
    p = tsub.add_parser("add-ct", help="add a container template (a .tar.zst root fs)")
    p.add_argument("name")
    p.add_argument("tarball")
    p.set_defaults(func=cmd_template_add, kind="ct")
    p = tsub.add_parser("add-vm", help="add a VM template (kernel, initramfs, disk)")
    p.add_argument("name")
    p.add_argument("--kernel", required=True)
    p.add_argument("--initrd")
    p.add_argument("--disk")
    p.add_argument("--cmdline", default="console=ttyS0")
    p.add_argument("--description")
    p.set_defaults(func=cmd_template_add, kind="vm")

    w = sub.add_parser("web", help="the web UI and REST API")
    wsub = w.add_subparsers(dest="web_cmd", required=True)
    p = wsub.add_parser("serve", help="serve the web UI and API over HTTPS",
                        description="Serve the web UI and REST API over HTTPS. A self-signed "
                        "certificate is made on first start in ETC/web/ (replace "
                        "server.crt and server.key with your own).")
    p.add_argument("--listen", default="127.0.0.1:8006", metavar="HOST:PORT",
                   help="address to listen on (default: 127.0.0.1:8006)")
    p.set_defaults(func=cmd_web_serve)


# --- boot-test (appliance/boot) -----------------------------------------------


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
    if args.json:
        _print_json(result.to_json())
        return 0 if result.ok else BootError.exit_code
    if result.ok:
        print(result.summary())
        print(f"time to marker: {result.seconds:.1f}s")
    harness.check(result)
    return 0


def _add_boot_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "boot-test",
        help="boot an image in QEMU and check that it comes up cleanly",
        description="Boot an ISO, disk image or netboot directory in QEMU (KVM only with "
        "real VT-x/AMD-V, else TCG -cpu max), wait for the boot-check marker on the serial "
        "console (state running, no failed units) and power off. Exit status 5 on a bad "
        "boot, with the reason and the console's last lines. The serial log is kept next "
        "to the image.",
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


# --- install (appliance/installer) -------------------------------------------


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
    if args.json:
        _print_json(plan.to_json())
    else:
        print("install plan:\n" + plan.describe())
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


def _add_install_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
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


# --- parser ------------------------------------------------------------------

# Each capability adds its commands with one function here.
COMMAND_GROUPS: list[Callable[[argparse._SubParsersAction[argparse.ArgumentParser]], None]] = [
    _add_build_commands,
    _add_hw_commands,
    _add_answer_commands,
    _add_vm_commands,
    _add_host_commands,
    _add_boot_commands,
    _add_install_commands,
]


def make_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="appliance",
        description="Build and run a bare-metal hypervisor host distribution.",
    )
    parser.add_argument("--version", action="version", version=f"appliance {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="show debug output")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for add in COMMAND_GROUPS:
        add(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = make_parser()
    args = parser.parse_args(argv)
    console = logging.StreamHandler(sys.stderr)
    console.setLevel(logging.DEBUG if args.verbose else logging.WARNING)
    console.setFormatter(logging.Formatter("%(levelname)s: %(message)s"))
    logging.getLogger().addHandler(console)
    handler: Handler = args.func
    try:
        return handler(args)
    except ApplianceError as e:
        print(f"appliance: error: {e}", file=sys.stderr)
        return e.exit_code
    except BrokenPipeError:  # output piped into `head` and the like
        sys.stderr.close()
        return 0
    except KeyboardInterrupt:
        print("appliance: interrupted", file=sys.stderr)
        return 130
