"""Tasks: every long action (create, start, stop, delete) is a task with an
id, a status (running, OK or the error text), a log, kept on disk under
STATE/tasks/ID/ and listed newest first.

The id is Proxmox-style: UPID:NODE:PID:STARTNS:TYPE:GUEST:USER: . A task
whose process went away while it was running (a restart of the web service)
is reported as interrupted, never as running forever.
"""

from __future__ import annotations

import os
import re
import socket
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from appliance.errors import ApplianceError, HostError
from appliance.host.store import HostPaths, alive, process_start_time, read_json, write_json

RUNNING = "running"
OK = "OK"

UPID_RE = re.compile(
    r"^UPID:[A-Za-z0-9.-]{1,63}:[0-9A-F]{8}:[0-9A-F]{16}:[a-z]{1,20}:[0-9]{0,9}:"
    r"[A-Za-z0-9._@!-]{1,64}:$"
)


@dataclass
class Task:
    upid: str
    type: str  # vmcreate, vmstart, ctstop, ...
    guest: int | None
    user: str
    started: float
    ended: float | None
    status: str  # running, OK, or the error text
    pid: int
    pid_start: int

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


class TaskLog:
    """What a task's function writes to: lines, appended to the task's log file."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __call__(self, line: str) -> None:
        stamp = time.strftime("%H:%M:%S")
        with self.path.open("a") as f:
            for part in line.rstrip("\n").splitlines() or [""]:
                f.write(f"{stamp} {part}\n")


TaskFn = Callable[[TaskLog], None]


class TaskStore:
    def __init__(self, paths: HostPaths) -> None:
        self.paths = paths

    def _dir(self, upid: str) -> Path:
        if not UPID_RE.match(upid):
            raise HostError(f"no task {upid!r}", 404)
        return self.paths.tasks / upid

    def run(
        self, kind: str, guest: int | None, user: str, fn: TaskFn, *, background: bool
    ) -> Task:
        """Record a task and run `fn` in it: in this thread (the CLI) or in a
        background thread (the web service). A HostError or other ApplianceError
        ends the task with its message; anything else with the exception."""
        pid = os.getpid()
        task = Task(
            upid=(
                f"UPID:{socket.gethostname()[:63]}:{pid:08X}:{time.time_ns():016X}:"
                f"{kind}:{'' if guest is None else guest}:{user}:"
            ),
            type=kind,
            guest=guest,
            user=user,
            started=time.time(),
            ended=None,
            status=RUNNING,
            pid=pid,
            pid_start=process_start_time(pid) or 0,
        )
        d = self.paths.tasks / task.upid
        d.mkdir(parents=True)
        (d / "log").touch()
        write_json(d / "status.json", task.to_json())
        log = TaskLog(d / "log")

        def body() -> None:
            try:
                fn(log)
                task.status = OK
            except ApplianceError as e:
                task.status = str(e) or type(e).__name__
            except Exception as e:  # a bug: keep the traceback in the task log
                log(traceback.format_exc())
                task.status = f"internal error: {e}"
            log(f"TASK {task.status if task.status == OK else 'ERROR: ' + task.status}")
            task.ended = time.time()
            write_json(d / "status.json", task.to_json())

        if background:
            threading.Thread(target=body, name=f"task-{kind}", daemon=True).start()
        else:
            body()
        return task

    def get(self, upid: str) -> Task:
        d = self._dir(upid)
        try:
            task = Task(**read_json(d / "status.json"))
        except FileNotFoundError:
            raise HostError(f"no task {upid}", 404) from None
        if task.status == RUNNING and not alive(task.pid, task.pid_start):
            task.status = "interrupted: the process running it is gone"
            task.ended = time.time()
            write_json(d / "status.json", task.to_json())
        return task

    def log(self, upid: str) -> str:
        try:
            return (self._dir(upid) / "log").read_text()
        except FileNotFoundError:
            raise HostError(f"no task {upid}", 404) from None

    def list(self, limit: int = 50, guest: int | None = None) -> list[Task]:
        """Newest first."""
        if not self.paths.tasks.is_dir():
            return []
        names = [n for n in os.listdir(self.paths.tasks) if UPID_RE.match(n)]
        names.sort(key=lambda n: n.split(":")[3], reverse=True)
        out: list[Task] = []
        for n in names:
            if guest is not None and n.split(":")[5] != str(guest):
                continue
            try:
                out.append(self.get(n))
            except (HostError, ValueError, TypeError):
                continue
            if len(out) >= limit:
                break
        return out

    def wait(self, upid: str, timeout: float = 60.0) -> Task:
        deadline = time.monotonic() + timeout
        while True:
            task = self.get(upid)
            if task.status != RUNNING or time.monotonic() > deadline:
                return task
            time.sleep(0.05)
