"""Containers on Debian's LXC: one directory per container in STATE/lxc
(the lxc-* commands' -P), named by the guest id.

A container is created by unpacking a template tarball, writing its LXC
config (memory and CPU limits through cgroup2, a veth NIC on a bridge or no
NIC), setting root's password hash and SSH keys inside it. The running test
uses the pid lxc-start writes (-p: its monitor process, alive as long as
the container runs) plus that process's start time.
"""

from __future__ import annotations

import contextlib
import secrets
import shutil
import subprocess
import time
from pathlib import Path

from appliance.errors import HostError
from appliance.host.guests import GuestConfig
from appliance.host.store import (
    HostPaths,
    alive,
    atomic_write,
    process_start_time,
    read_json,
    write_json,
)
from appliance.host.tasks import TaskLog
from appliance.host.templates import ct_template

LXC_COMMON = Path("/usr/share/lxc/config/common.conf")


def _lxc(paths: HostPaths, cmd: str, guest_id: int, *args: str,
         timeout: float = 60.0) -> subprocess.CompletedProcess[str]:
    try:
        return subprocess.run([cmd, "-P", str(paths.lxc), "-n", str(guest_id), *args],
                              capture_output=True, text=True, timeout=timeout,
                              stdin=subprocess.DEVNULL)
    except FileNotFoundError:
        raise HostError(f"{cmd} is missing: install Debian's lxc package", 500) from None


def _record(paths: HostPaths, guest_id: int) -> Path:
    return paths.run / f"ct-{guest_id}.json"


def init_pid(paths: HostPaths, guest_id: int) -> int | None:
    try:
        data = read_json(_record(paths, guest_id))
    except (FileNotFoundError, ValueError):
        return None
    pid, start = int(data.get("pid", 0)), data.get("pid_start")
    return pid if isinstance(start, int) and alive(pid, start) else None


def status(paths: HostPaths, guest_id: int) -> str:
    return "running" if init_pid(paths, guest_id) else "stopped"


def mac_address(guest_id: int) -> str:
    """Derived from the id (locally administered): stable across restarts."""
    return "02:a9:" + ":".join(f"{(guest_id >> s) & 0xFF:02x}" for s in (24, 16, 8, 0))


def cgroup2_controls_memory() -> bool:
    """True on a unified cgroup2 host (Debian 12's default); False where the
    memory controller sits on a cgroup1 hierarchy (some container hosts)."""
    try:
        return "memory" in Path("/sys/fs/cgroup/cgroup.controllers").read_text().split()
    except OSError:
        return False


def limit_lines(cfg: GuestConfig) -> list[str]:
    """Memory and CPU limits for the cgroup version the host runs."""
    if cgroup2_controls_memory():
        return [f"lxc.cgroup2.memory.max = {cfg.memory_mib}M",
                f"lxc.cgroup2.cpu.max = {cfg.cpus * 100000} 100000"]
    return [f"lxc.cgroup.memory.limit_in_bytes = {cfg.memory_mib}M",
            "lxc.cgroup.cpu.cfs_period_us = 100000",
            f"lxc.cgroup.cpu.cfs_quota_us = {cfg.cpus * 100000}"]


def memory_limit_key() -> str:
    return "memory.max" if cgroup2_controls_memory() else "memory.limit_in_bytes"


def lxc_config(paths: HostPaths, cfg: GuestConfig) -> str:
    rootfs = paths.lxc / str(cfg.id) / "rootfs"
    lines = [
        "# written by appliance from " + str(paths.guests / f"{cfg.id}.toml"),
        f"lxc.include = {LXC_COMMON}",
        "lxc.arch = amd64",
        f"lxc.uts.name = {cfg.name}",
        f"lxc.rootfs.path = dir:{rootfs}",
        "lxc.apparmor.profile = unconfined",
        *limit_lines(cfg),
        "lxc.tty.max = 2",
        "lxc.pty.max = 64",
        f"lxc.console.logfile = {paths.logs / f'ct-{cfg.id}-console.log'}",
        "lxc.console.size = 1MB",
    ]
    if cfg.bridge:
        lines += ["lxc.net.0.type = veth", f"lxc.net.0.link = {cfg.bridge}",
                  "lxc.net.0.flags = up", "lxc.net.0.name = eth0",
                  f"lxc.net.0.hwaddr = {mac_address(cfg.id)}"]
    else:
        lines += ["lxc.net.0.type = empty"]
    return "\n".join(lines) + "\n"


def _set_root_login(rootfs: Path, password: str | None, keys: list[str]) -> None:
    if password:
        salt = secrets.token_hex(8)
        hashed = subprocess.run(["openssl", "passwd", "-6", "-salt", salt, "-stdin"],
                                input=password, capture_output=True, text=True,
                                check=True).stdout.strip()
        shadow = rootfs / "etc/shadow"
        lines = shadow.read_text().splitlines()
        for i, line in enumerate(lines):
            f = line.split(":")
            if f[0] == "root":
                f[1] = hashed
                f[2] = str(int(time.time()) // 86400)
                lines[i] = ":".join(f)
        atomic_write(shadow, ("\n".join(lines) + "\n").encode(), 0o640)
        with contextlib.suppress(KeyError, OSError):
            import grp

            shutil.chown(shadow, "root", grp.getgrnam("shadow").gr_name)
    if keys:
        ssh = rootfs / "root/.ssh"
        ssh.mkdir(mode=0o700, parents=True, exist_ok=True)
        atomic_write(ssh / "authorized_keys", ("\n".join(keys) + "\n").encode(), 0o600)


def bridge_exists(name: str) -> bool:
    """Asked over netlink (ip), so it answers for this process's network
    namespace whatever /sys shows."""
    r = subprocess.run(["ip", "-o", "link", "show", "dev", name, "type", "bridge"],
                       capture_output=True, text=True)
    return r.returncode == 0 and name in r.stdout


def create(paths: HostPaths, cfg: GuestConfig, password: str | None, log: TaskLog) -> None:
    if cfg.bridge and not bridge_exists(cfg.bridge):
        raise HostError(f"bridge: no bridge {cfg.bridge!r} on this host", 400)
    tarball = ct_template(paths, cfg.template)
    d = paths.lxc / str(cfg.id)
    if d.exists():
        raise HostError(f"container directory {d} exists already", 409)
    tmp = paths.lxc / f".{cfg.id}.new"
    shutil.rmtree(tmp, ignore_errors=True)
    rootfs = tmp / "rootfs"
    rootfs.mkdir(parents=True)
    log(f"unpacking {tarball} into {rootfs}")
    r = subprocess.run(["tar", "--zstd", "-xpf", str(tarball), "--numeric-owner", "-C",
                        str(rootfs)], capture_output=True, text=True)
    if r.returncode != 0:
        shutil.rmtree(tmp, ignore_errors=True)
        raise HostError(f"unpacking {tarball} failed: {r.stderr.strip()[-500:]}", 500)
    atomic_write(rootfs / "etc/hostname", f"{cfg.name}\n".encode())
    _set_root_login(rootfs, password, cfg.ssh_keys)
    atomic_write(tmp / "config", lxc_config(paths, cfg).encode())
    tmp.rename(d)
    log(f"container {cfg.id} created in {d}")


def start(paths: HostPaths, cfg: GuestConfig, log: TaskLog) -> None:
    if init_pid(paths, cfg.id):
        raise HostError(f"container {cfg.id} is already running", 409)
    paths.run.mkdir(parents=True, exist_ok=True)
    paths.logs.mkdir(parents=True, exist_ok=True)
    # the config follows the guest's config file (limits may have changed)
    atomic_write(paths.lxc / str(cfg.id) / "config", lxc_config(paths, cfg).encode())
    pidfile = paths.run / f"ct-{cfg.id}.pid"
    with contextlib.suppress(FileNotFoundError):
        pidfile.unlink()
    logfile = paths.logs / f"ct-{cfg.id}.log"
    log(f"lxc-start {cfg.id}")
    r = _lxc(paths, "lxc-start", cfg.id, "-p", str(pidfile), "-l", "INFO", "-o", str(logfile))
    if r.returncode != 0:
        tail = logfile.read_text(errors="replace").splitlines()[-8:] if logfile.exists() else []
        raise HostError(f"container {cfg.id} did not start: {r.stderr.strip()}\n"
                        + "\n".join(tail), 500)
    w = _lxc(paths, "lxc-wait", cfg.id, "-s", "RUNNING", "-t", "20")
    if w.returncode != 0 or not pidfile.exists():
        raise HostError(f"container {cfg.id} did not reach RUNNING (see {logfile})", 500)
    pid = int(pidfile.read_text().strip())
    write_json(_record(paths, cfg.id), {"pid": pid, "pid_start": process_start_time(pid),
                                        "started": time.time()})
    log(f"container {cfg.id} running (init pid {pid})")


def _stop(paths: HostPaths, cfg: GuestConfig, log: TaskLog, kill: bool, timeout: int) -> None:
    if not init_pid(paths, cfg.id):
        raise HostError(f"container {cfg.id} is not running", 409)
    args = ["-k"] if kill else ["-t", str(timeout)]
    log(f"lxc-stop {cfg.id} {' '.join(args)}")
    r = _lxc(paths, "lxc-stop", cfg.id, *args, timeout=timeout + 30)
    if r.returncode != 0 and init_pid(paths, cfg.id):
        raise HostError(f"container {cfg.id} did not stop: {r.stderr.strip()}", 500)
    deadline = time.monotonic() + 30
    while init_pid(paths, cfg.id) and time.monotonic() < deadline:
        time.sleep(0.05)
    log(f"container {cfg.id} stopped")


def shutdown(paths: HostPaths, cfg: GuestConfig, log: TaskLog, timeout: int = 30) -> None:
    """Clean shutdown: lxc-stop asks init (SIGPWR), then kills after `timeout`."""
    _stop(paths, cfg, log, kill=False, timeout=timeout)


def stop(paths: HostPaths, cfg: GuestConfig, log: TaskLog) -> None:
    _stop(paths, cfg, log, kill=True, timeout=10)


def delete(paths: HostPaths, cfg: GuestConfig, log: TaskLog) -> None:
    if init_pid(paths, cfg.id):
        raise HostError(f"container {cfg.id} is running; stop it first", 409)
    d = paths.lxc / str(cfg.id)
    log(f"removing {d}")
    shutil.rmtree(d, ignore_errors=True)
    for p in (_record(paths, cfg.id), paths.run / f"ct-{cfg.id}.pid"):
        with contextlib.suppress(FileNotFoundError):
            p.unlink()


def console_command(paths: HostPaths, guest_id: int) -> list[str]:
    """The command that attaches a terminal to the container's console."""
    return ["lxc-console", "-P", str(paths.lxc), "-n", str(guest_id), "-t", "0", "-e", "^a"]
