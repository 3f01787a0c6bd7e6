"""`appliance ct ...`, the guest commands `vm` shares, `task`, `template`, `web`
(appliance.host, appliance.web)."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from appliance.cli.output import emit


def _host() -> Any:
    from appliance.host import Host

    return Host()


def cmd_guest_list(args: argparse.Namespace) -> int:
    from appliance.host import commands

    rows = _host().list_guests(args.kind)
    emit(args, lambda: [g.to_json() for g in rows], lambda: commands.guest_table(rows))
    return 0


def cmd_guest_create(args: argparse.Namespace) -> int:
    from appliance.host import commands

    host = _host()
    task = commands.finished(host, host.create(args.kind, commands.create_request(args,
                                                                                  args.kind)))
    emit(args, lambda: host.guest(task.guest).to_json() if task.guest else {},
         lambda: f"created {args.kind} {task.guest}\n")
    return 0


def cmd_guest_action(args: argparse.Namespace) -> int:
    from appliance.host import commands

    host = _host()
    if host.guest(args.id).config.type != args.kind:
        from appliance.errors import HostError

        raise HostError(f"guest {args.id} is not a {'VM' if args.kind == 'vm' else 'container'}",
                        404)
    task = commands.finished(host, getattr(host, args.action)(args.id))
    emit(args, task.to_json, lambda: f"{args.action}: {args.kind} {args.id}: OK\n")
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
        p.add_argument("--pids", type=int, metavar="N",
                       help="most processes and threads inside (default 4096)")
        p.add_argument("--privileged", action="store_true",
                       help="root inside is root on the host (unprivileged = 0); default: "
                       "unprivileged, with its own range of host ids")
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
    emit(args, lambda: [t.to_json() for t in rows], lambda: commands.task_table(rows))
    return 0


def cmd_task_log(args: argparse.Namespace) -> int:
    sys.stdout.write(_host().tasks.log(args.upid))
    return 0


def cmd_template_list(args: argparse.Namespace) -> int:
    rows = _host().templates()
    emit(args, lambda: [t.to_json() for t in rows], lambda: "".join(
        f"{t.kind}  {t.name:30}  {t.size_bytes / 2**20:8.1f} MiB  {t.description}\n"
        for t in rows))
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


def add_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
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


