"""The one entry point of host management: the CLI and the web UI call Host.

Checks that can fail on bad input (validation, missing template, duplicate
id, guest in the wrong state) happen before a task starts and raise
HostError with an HTTP status; the long part runs as a task.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from appliance import procfs
from appliance.errors import HostError
from appliance.host import ct, guests, templates, vm
from appliance.host.guests import GuestConfig, GuestType
from appliance.host.store import HostPaths, locked
from appliance.host.tasks import Task, TaskLog, TaskStore


@dataclass
class GuestStatus:
    config: GuestConfig
    status: str  # running, stopped
    last_run: dict[str, Any] | None = None  # a VM's last run: how and when it ended

    def to_json(self) -> dict[str, Any]:
        data = {**self.config.to_json(), "status": self.status}
        if self.last_run is not None:
            data["last_run"] = self.last_run
        return data


class Host:
    def __init__(self, paths: HostPaths | None = None, background: bool = False) -> None:
        self.paths = paths or HostPaths.from_env()
        try:
            self.paths.ensure()
        except PermissionError as e:
            raise HostError(f"{e.filename}: permission denied (host management runs as root)",
                            500) from None
        self.tasks = TaskStore(self.paths)
        self.background = background  # run tasks in threads (the web service)

    # -- reading -------------------------------------------------------------

    def _status(self, cfg: GuestConfig) -> str:
        if cfg.type == "vm":
            return vm.status(self.paths, cfg.id)
        return ct.status(self.paths, cfg.id)

    def guest(self, guest_id: int) -> GuestStatus:
        """One guest, with (for a stopped VM) how its last run ended."""
        cfg = guests.load(self.paths, guest_id)
        status = self._status(cfg)
        last = None
        if cfg.type == "vm" and status == "stopped":
            last = vm.last_result(self.paths, guest_id)
        return GuestStatus(cfg, status, last)

    def list_guests(self, kind: GuestType | None = None) -> list[GuestStatus]:
        # A guest is running only while its pid record (RUN/vm-ID.json,
        # RUN/ct-ID.json) exists: one listing of RUN spares a failed open per
        # stopped guest (the web UI lists guests often; see bench/api.py).
        try:
            records = set(os.listdir(self.paths.run))
        except FileNotFoundError:
            records = set()
        out = []
        for gid in guests.ids(self.paths):
            try:
                cfg = guests.load(self.paths, gid)
            except HostError:
                continue  # removed meanwhile, or unreadable (guest(ID) says why)
            if kind is None or cfg.type == kind:
                running = f"{cfg.type}-{gid}.json" in records
                out.append(GuestStatus(cfg, self._status(cfg) if running else "stopped"))
        return out

    def templates(self) -> list[templates.TemplateInfo]:
        return templates.list_templates(self.paths)

    def storage(self) -> dict[str, Any]:
        st = os.statvfs(self.paths.state)
        total, free = st.f_blocks * st.f_frsize, st.f_bavail * st.f_frsize

        def du(path: Any) -> int:
            n = 0
            for root, _, files in os.walk(path):
                for f in files:
                    with contextlib.suppress(OSError):
                        n += os.lstat(os.path.join(root, f)).st_blocks * 512
            return n

        return {
            "path": str(self.paths.state),
            "total_bytes": total,
            "used_bytes": total - free,
            "free_bytes": free,
            "images_bytes": du(self.paths.images),
            "containers_bytes": du(self.paths.lxc),
            "templates_bytes": du(self.paths.state / "templates"),
        }

    # -- changing ------------------------------------------------------------

    def _task(self, type: str, guest: int | None, user: str,
              fn: Any) -> Task:
        return self.tasks.run(type, guest, user, fn, background=self.background)

    def create(self, kind: GuestType, request: Mapping[str, Any], user: str = "root@pam") -> Task:
        req = guests.parse_request(kind, request)
        cmdline = ""
        if kind == "vm":
            cmdline = templates.vm_template(self.paths, req["template"]).cmdline
        else:
            templates.ct_template(self.paths, req["template"])
        if req.get("bridge") and not ct.bridge_exists(req["bridge"]):
            raise HostError(f"bridge: no bridge {req['bridge']!r} on this host", 400)
        password = req.pop("password", None)
        with locked(self.paths.lock_file):
            gid = req.get("id") or guests.free_id(self.paths)
            path = guests.config_path(self.paths, gid)
            if path.exists():
                raise HostError(f"id: guest {gid} exists already", 409)
            cfg = guests.new_config(kind, gid, req, cmdline)
            # claim the id at once; the task completes (or removes) the config
            guests.save(self.paths, cfg)

        def body(log: TaskLog) -> None:
            try:
                if kind == "vm":
                    vm.create(self.paths, cfg, log)
                else:
                    ct.create(self.paths, cfg, password, log)
            except BaseException:
                guests.config_path(self.paths, gid).unlink(missing_ok=True)
                raise
            guests.save(self.paths, cfg)
            log(f"{'VM' if kind == 'vm' else 'container'} {gid} ({cfg.name}) created")

        return self._task(f"{kind}create", gid, user, body)

    def _action(self, guest_id: int, action: str, user: str) -> Task:
        g = self.guest(guest_id)
        cfg = g.config
        backend: Any = vm if cfg.type == "vm" else ct
        running = g.status == "running"
        if action == "start" and running:
            raise HostError(f"guest {guest_id} is already running", 409)
        if action in ("shutdown", "stop") and not running:
            raise HostError(f"guest {guest_id} is not running", 409)
        if action == "delete" and running:
            raise HostError(f"guest {guest_id} is running; stop it first", 409)
        if action == "start" and cfg.type == "vm":
            templates.vm_template(self.paths, cfg.template)

        def body(log: TaskLog) -> None:
            with locked(self.paths.run / f"{guest_id}.lock"):
                if action == "delete":
                    backend.delete(self.paths, cfg, log)
                    guests.config_path(self.paths, guest_id).unlink(missing_ok=True)
                    log(f"guest {guest_id} deleted")
                else:
                    getattr(backend, action)(self.paths, cfg, log)

        return self._task(f"{cfg.type}{action}", guest_id, user, body)

    def start(self, guest_id: int, user: str = "root@pam") -> Task:
        return self._action(guest_id, "start", user)

    def shutdown(self, guest_id: int, user: str = "root@pam") -> Task:
        return self._action(guest_id, "shutdown", user)

    def stop(self, guest_id: int, user: str = "root@pam") -> Task:
        return self._action(guest_id, "stop", user)

    def delete(self, guest_id: int, user: str = "root@pam") -> Task:
        return self._action(guest_id, "delete", user)

    def console_target(self, guest_id: int) -> tuple[str, Any]:
        """("socket", path) for a VM, ("command", argv) for a container."""
        g = self.guest(guest_id)
        if g.status != "running":
            raise HostError(f"guest {guest_id} is not running", 409)
        if g.config.type == "vm":
            return "socket", vm.console_path(self.paths, guest_id)
        if shutil.which("lxc-console") is None:
            raise HostError("lxc-console is missing: install Debian's lxc package", 500)
        return "command", ct.console_command(self.paths, guest_id)


def host_summary(paths: HostPaths) -> dict[str, Any]:
    """CPU, memory, disk and the hardware detection verdict (cached 60 s)."""
    from appliance.hw import detect

    now = time.monotonic()
    cached = _DETECT_CACHE.get("report")
    if cached is None or now - cached[0] > 60:
        cached = (now, detect(inventory=False).to_json())
        _DETECT_CACHE["report"] = cached
    report = cached[1]
    mem = procfs.meminfo()
    st = os.statvfs(paths.state)
    load1, load5, load15 = os.getloadavg()
    return {
        "hostname": os.uname().nodename,
        "kernel": os.uname().release,
        "cpus": os.cpu_count() or 1,
        "loadavg": [load1, load5, load15],
        "memory": {"total_bytes": mem.get("MemTotal", 0),
                   "used_bytes": mem.get("MemTotal", 0) - mem.get("MemAvailable", 0)},
        "disk": {"path": str(paths.state), "total_bytes": st.f_blocks * st.f_frsize,
                 "used_bytes": (st.f_blocks - st.f_bavail) * st.f_frsize},
        "verdict": report.get("verdict"),
        "status": report.get("status"),
        "detection": report,
    }


_DETECT_CACHE: dict[str, tuple[float, dict[str, Any]]] = {}
