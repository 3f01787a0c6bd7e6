"""VMs on our microVM monitor: disks, the supervised process, its state.

Each running VM is one detached `python -m appliance.host.vmproc` process
(see vmproc.py). Its pid and start time are in RUN/vm-ID.json; a VM is
running while that very process lives.
"""

from __future__ import annotations

import contextlib
import os
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

from appliance.errors import HostError
from appliance.host.guests import Disk, GuestConfig
from appliance.host.store import HostPaths, read_json, recorded_pid
from appliance.host.tasks import TaskLog
from appliance.host.templates import vm_template

START_TIMEOUT = 20.0


def run_files(paths: HostPaths, guest_id: int) -> tuple[Path, Path, Path]:
    """(pid record, result record, console socket) of a VM."""
    base = paths.run / f"vm-{guest_id}"
    return (base.with_suffix(".json"), base.with_suffix(".result.json"),
            base.with_suffix(".console"))


def tap_name(guest_id: int) -> str:
    return f"tap{guest_id}i0"


def remove_tap(guest_id: int) -> None:
    """Remove the VM's TAP (persistent: a killed VM process leaves it behind)."""
    subprocess.run(["ip", "link", "del", tap_name(guest_id)], capture_output=True, check=False)


def make_tap(guest_id: int, bridge: str) -> str:
    """The VM's NIC: TAP tapIDi0, a port of `bridge`, up."""
    tap = tap_name(guest_id)
    remove_tap(guest_id)
    for argv in (["ip", "tuntap", "add", "dev", tap, "mode", "tap"],
                 ["ip", "link", "set", tap, "master", bridge],
                 ["ip", "link", "set", tap, "up"]):
        proc = subprocess.run(argv, capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            remove_tap(guest_id)
            raise HostError(f"NIC of VM {guest_id} on bridge {bridge}: {' '.join(argv)}: "
                            f"{proc.stderr.strip()}")
    return tap


def pid_of(paths: HostPaths, guest_id: int) -> int | None:
    """The pid of the VM's process if it is running."""
    return recorded_pid(run_files(paths, guest_id)[0])


def status(paths: HostPaths, guest_id: int) -> str:
    return "running" if pid_of(paths, guest_id) else "stopped"


def last_result(paths: HostPaths, guest_id: int) -> dict[str, object] | None:
    _, result, _ = run_files(paths, guest_id)
    try:
        data = read_json(result)
    except (FileNotFoundError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def console_path(paths: HostPaths, guest_id: int) -> Path:
    return run_files(paths, guest_id)[2]


def _new_image(path: Path) -> int:
    """A new, empty disk image readable by root only (0600 from the start: a
    guest's disk holds its secrets). A file left by an earlier guest of the
    same id is replaced, never reused with its old mode."""
    with contextlib.suppress(FileNotFoundError):
        path.unlink()
    return os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
                   0o600)


def _copy_image(src: Path, dest: Path) -> None:
    """Copy a template's disk into a new 0600 image, sparse (and as a reflink
    where the file system can). The source is opened without following a
    symbolic link, and cp reads that very file (/dev/fd/N)."""
    try:
        fd = os.open(src, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as e:
        raise HostError(f"template disk {src}: {e.strerror}", 400) from None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise HostError(f"template disk {src}: not a regular file", 400)
        os.close(_new_image(dest))
        proc = subprocess.run(
            ["cp", "--sparse=always", "--reflink=auto", f"/dev/fd/{fd}", str(dest)],
            pass_fds=(fd,), capture_output=True, text=True, check=False, umask=0o077)
    finally:
        os.close(fd)
    if proc.returncode != 0:
        with contextlib.suppress(FileNotFoundError):
            dest.unlink()
        raise HostError(f"copying template disk {src} to {dest}: {proc.stderr.strip()}")


def create(paths: HostPaths, cfg: GuestConfig, log: TaskLog) -> None:
    """Copy the template's root disk and make the extra disks (sparse raw
    files), all 0600 in a 0700 directory."""
    tpl = vm_template(paths, cfg.template)
    disks: list[Disk] = []
    paths.images.mkdir(mode=0o700, parents=True, exist_ok=True)
    if tpl.disk is not None:
        dest = paths.images / f"vm-{cfg.id}-disk-0.raw"
        log(f"copying root disk {tpl.disk} to {dest}")
        _copy_image(tpl.disk, dest)
        disks.append(Disk(size_mib=(dest.stat().st_size + (1 << 20) - 1) >> 20, path=str(dest)))
    for disk in cfg.disks:
        dest = paths.images / f"vm-{cfg.id}-disk-{len(disks)}.raw"
        log(f"creating {disk.size_mib} MiB disk {dest}")
        fd = _new_image(dest)
        try:
            os.ftruncate(fd, disk.size_mib << 20)
        finally:
            os.close(fd)
        disks.append(Disk(size_mib=disk.size_mib, path=str(dest)))
    cfg.disks = disks
    if cfg.bridge:
        log(f"NIC on bridge {cfg.bridge} (virtio-net; TAP tap{cfg.id}i0 while it runs)")
    if disks:
        log(f"disks: {', '.join(Path(d.path).name for d in disks if d.path)} (virtio-blk: "
            "vda, vdb, ...)")


def start(paths: HostPaths, cfg: GuestConfig, log: TaskLog) -> None:
    if pid_of(paths, cfg.id):
        raise HostError(f"VM {cfg.id} is already running", 409)
    vm_template(paths, cfg.template)  # missing files fail here, with the name
    _, result, console = run_files(paths, cfg.id)
    paths.run.mkdir(parents=True, exist_ok=True)
    paths.logs.mkdir(parents=True, exist_ok=True)
    with contextlib.suppress(FileNotFoundError):
        result.unlink()
    out = paths.logs / f"vm-{cfg.id}.log"
    log(f"starting VM {cfg.id}: {cfg.memory_mib} MiB, {cfg.cpus} vCPU(s), console {console}")
    # the VM process's log: 0600 from the start (what the monitor reports of the guest)
    fd = os.open(out, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC,
                 0o600)
    with os.fdopen(fd, "ab") as f:
        # setsid -f: a new session, and the VM process is not our child (no
        # zombie in a long-running web service; it outlives a restart of it).
        subprocess.run(
            ["setsid", "-f", sys.executable, "-m", "appliance.host.vmproc", str(paths.etc),
             str(paths.state), str(cfg.id)],
            stdin=subprocess.DEVNULL, stdout=f, stderr=f, check=True,
        )
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        done = last_result(paths, cfg.id)
        if done is not None:
            raise HostError(f"VM {cfg.id} stopped at once: {done.get('detail')}", 400)
        if pid_of(paths, cfg.id) and console.exists():
            log(f"VM {cfg.id} running (pid {pid_of(paths, cfg.id)})")
            return
        time.sleep(0.05)
    raise HostError(f"VM {cfg.id} did not come up within {START_TIMEOUT:.0f} s "
                    f"(see {out})", 500)


def _signal_and_wait(paths: HostPaths, guest_id: int, sig: int, timeout: float) -> bool:
    pid = pid_of(paths, guest_id)
    if pid is None:
        return True
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, sig)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pid_of(paths, guest_id) is None:
            return True
        time.sleep(0.05)
    return False


def shutdown(paths: HostPaths, cfg: GuestConfig, log: TaskLog, timeout: float = 30.0) -> None:
    """Ask the guest to shut down (SIGTERM to the VM's process, which presses
    Ctrl-Alt-Delete on the guest's keyboard) and wait up to `timeout` seconds
    for it to end. A guest that ignores the request runs on: that is an
    error here (use stop); a second shutdown stops it through the monitor."""
    if not pid_of(paths, cfg.id):
        raise HostError(f"VM {cfg.id} is not running", 409)
    log(f"shutting down VM {cfg.id}")
    if not _signal_and_wait(paths, cfg.id, signal.SIGTERM, timeout):
        raise HostError(f"VM {cfg.id} did not shut down within {timeout:.0f} s; use stop", 409)
    log(f"VM {cfg.id} stopped")


def stop(paths: HostPaths, cfg: GuestConfig, log: TaskLog) -> None:
    """Hard stop: kill the VM's process."""
    if not pid_of(paths, cfg.id):
        raise HostError(f"VM {cfg.id} is not running", 409)
    log(f"stopping VM {cfg.id} (SIGKILL)")
    _signal_and_wait(paths, cfg.id, signal.SIGKILL, 10.0)
    if cfg.bridge:
        remove_tap(cfg.id)
    record, _, console = run_files(paths, cfg.id)
    for p in (record, console):
        with contextlib.suppress(FileNotFoundError):
            p.unlink()
    log(f"VM {cfg.id} stopped")


def delete(paths: HostPaths, cfg: GuestConfig, log: TaskLog) -> None:
    if pid_of(paths, cfg.id):
        raise HostError(f"VM {cfg.id} is running; stop it first", 409)
    for disk in cfg.disks:
        if disk.path:
            log(f"removing {disk.path}")
            with contextlib.suppress(FileNotFoundError):
                os.unlink(disk.path)
    for p in run_files(paths, cfg.id):
        with contextlib.suppress(FileNotFoundError):
            p.unlink()
