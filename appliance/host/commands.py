"""What `appliance vm|ct|task|template ...` do (appliance.cli parses and calls these)."""

from __future__ import annotations

import contextlib
import os
import select
import socket
import sys
import termios
import tty
from pathlib import Path
from typing import Any

from appliance.errors import HostError
from appliance.host.manager import GuestStatus, Host
from appliance.host.tasks import OK, Task


def guest_table(rows: list[GuestStatus]) -> str:
    lines = [f"{'ID':>6}  {'TYPE':4}  {'NAME':20}  {'STATUS':8}  {'MEM':>7}  {'CPUS':>4}  "
             "TEMPLATE"]
    for g in rows:
        c = g.config
        lines.append(f"{c.id:>6}  {c.type:4}  {c.name:20}  {g.status:8}  "
                     f"{c.memory_mib:>4}MiB  {c.cpus:>4}  {c.template}")
    return "\n".join(lines) + "\n"


def task_table(rows: list[Task]) -> str:
    import time

    lines = [f"{'STARTED':19}  {'TYPE':10}  {'GUEST':>6}  STATUS"]
    for t in rows:
        when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(t.started))
        lines.append(f"{when:19}  {t.type:10}  {t.guest or '':>6}  {t.status}")
    return "\n".join(lines) + "\n"


def finished(host: Host, task: Task) -> Task:
    """The CLI runs tasks in the foreground: a failed task is an error."""
    done = host.tasks.get(task.upid)
    if done.status != OK:
        raise HostError(f"{done.type} failed: {done.status} (task {done.upid})", 1)
    return done


def create_request(args: Any, kind: str) -> dict[str, Any]:
    req: dict[str, Any] = {"name": args.name, "template": args.template,
                           "memory_mib": args.memory, "cpus": args.cpus}
    if args.id is not None:
        req["id"] = args.id
    if args.bridge:
        req["bridge"] = args.bridge
    if args.description:
        req["description"] = args.description
    if kind == "vm":
        if args.cmdline is not None:
            req["cmdline"] = args.cmdline
        if args.disk:
            req["disks"] = args.disk
    else:
        if args.password_file:
            req["password"] = Path(args.password_file).read_text().rstrip("\n")
        keys: list[str] = []
        for f in args.ssh_key_file or []:
            keys += [ln.strip() for ln in Path(f).read_text().splitlines() if ln.strip()]
        if keys:
            req["ssh_keys"] = keys
        if args.pids is not None:
            req["pids"] = args.pids
        if args.privileged:
            req["unprivileged"] = 0
    return req


def vm_console(path: Path) -> int:
    """Attach this terminal to a VM's console socket (Ctrl-A x quits)."""
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        s.connect(str(path))
    except OSError as e:
        raise HostError(f"console {path}: {e.strerror}", 409) from e
    fd_in, fd_out = sys.stdin.fileno(), sys.stdout.fileno()
    saved = termios.tcgetattr(fd_in) if os.isatty(fd_in) else None
    if saved is not None:
        tty.setraw(fd_in)
        print("console: Ctrl-A x quits\r", file=sys.stderr)
    escape = False
    try:
        while True:
            ready, _, _ = select.select([s, fd_in], [], [])
            if s in ready:
                data = s.recv(4096)
                if not data:
                    return 0
                os.write(fd_out, data)
            if fd_in in ready:
                data = os.read(fd_in, 4096)
                if not data:
                    return 0
                if saved is not None:
                    if escape and data[:1] == b"x":
                        return 0
                    escape = data[-1:] == b"\x01"
                    if escape:
                        data = data[:-1]
                s.sendall(data)
    finally:
        if saved is not None:
            termios.tcsetattr(fd_in, termios.TCSADRAIN, saved)
        with contextlib.suppress(OSError):
            s.close()


def console(host: Host, guest_id: int) -> int:
    kind, target = host.console_target(guest_id)
    if kind == "socket":
        return vm_console(Path(target))
    os.execvp(target[0], target)
