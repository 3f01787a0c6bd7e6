"""Containers on Debian's LXC: one directory per container in STATE/lxc
(the lxc-* commands' -P), named by the guest id.

A container is created by unpacking a template tarball, writing its LXC
config (memory, CPU and process limits through cgroups, LXC's generated
AppArmor profile, a veth NIC on a bridge or no NIC), setting root's password
hash and SSH keys inside it. The running test uses the pid lxc-start writes
(-p: its monitor process, alive as long as the container runs) plus that
process's start time.

Containers are unprivileged unless their config says `unprivileged =
false`: each gets its own range of 65536 host ids (user namespace), the
lowest free one of the pool root owns in /etc/subuid and /etc/subgid,
recorded in STATE/lxc/ID/ids.json. The template is checked member by member
(no absolute names, no '..', no device nodes, ids that fit the range) and
unpacked by tar inside that user namespace, so its files belong to the
mapped ids and the unpacking itself has no power over host files. Files
the host writes into a container afterwards go through store.write_in_root,
which never follows a link of the template's.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import subprocess
import tarfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from appliance.errors import HostError
from appliance.host.guests import GuestConfig
from appliance.host.store import (
    HostPaths,
    atomic_write,
    locked,
    process_start_time,
    read_in_root,
    read_json,
    recorded_pid,
    write_in_root,
    write_json,
)
from appliance.host.tasks import TaskLog
from appliance.host.templates import ct_template

LXC_COMMON = Path("/usr/share/lxc/config/common.conf")
LXC_USERNS = Path("/usr/share/lxc/config/userns.conf")
# Unprivileged containers' host ids: slot k is 100000 + k * 65536 (slot 0 is
# Proxmox's 100000:65536). The host image gives root the whole pool in
# /etc/subuid and /etc/subgid (templates/overlays/host/etc/).
ID_FIRST = 100_000
ID_COUNT = 65_536
ID_SLOTS = 4096
SUBID_FILES = (Path("/etc/subuid"), Path("/etc/subgid"))


@dataclass(frozen=True)
class IdRange:
    """Host ids first..first+count-1 are ids 0..count-1 in the container."""

    first: int
    count: int = ID_COUNT

    def owner(self) -> tuple[int, int]:
        return self.first, self.first

    def lxc_lines(self) -> list[str]:
        return [f"lxc.idmap = u 0 {self.first} {self.count}",
                f"lxc.idmap = g 0 {self.first} {self.count}"]


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
    return recorded_pid(_record(paths, guest_id))


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
    """Memory, CPU and process limits for the cgroup version the host runs."""
    if cgroup2_controls_memory():
        return [f"lxc.cgroup2.memory.max = {cfg.memory_mib}M",
                f"lxc.cgroup2.cpu.max = {cfg.cpus * 100000} 100000",
                f"lxc.cgroup2.pids.max = {cfg.pids}"]
    return [f"lxc.cgroup.memory.limit_in_bytes = {cfg.memory_mib}M",
            "lxc.cgroup.cpu.cfs_period_us = 100000",
            f"lxc.cgroup.cpu.cfs_quota_us = {cfg.cpus * 100000}",
            f"lxc.cgroup.pids.max = {cfg.pids}"]


def memory_limit_key() -> str:
    return "memory.max" if cgroup2_controls_memory() else "memory.limit_in_bytes"


def lxc_config(paths: HostPaths, cfg: GuestConfig, ids: IdRange | None) -> str:
    """`ids`: the container's id range (unprivileged), None: privileged.

    AppArmor: LXC's profile generated for this container, no nesting. On a
    kernel without AppArmor LXC 5 uses no LSM and ignores these lines."""
    rootfs = paths.lxc / str(cfg.id) / "rootfs"
    lines = [
        "# written by appliance from " + str(paths.guests / f"{cfg.id}.toml"),
        f"lxc.include = {LXC_COMMON}",
        *([f"lxc.include = {LXC_USERNS}", *ids.lxc_lines()] if ids else []),
        "lxc.arch = amd64",
        f"lxc.uts.name = {cfg.name}",
        f"lxc.rootfs.path = dir:{rootfs}",
        "lxc.apparmor.profile = generated",
        "lxc.apparmor.allow_nesting = 0",
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


def _set_root_login(rootfs: Path, password: str | None, keys: list[str],
                    root: tuple[int, int]) -> None:
    """`root`: the host uid and gid of the container's root."""
    if password:
        salt = secrets.token_hex(8)
        hashed = subprocess.run(["openssl", "passwd", "-6", "-salt", salt, "-stdin"],
                                input=password, capture_output=True, text=True,
                                check=True).stdout.strip()
        try:
            data, st = read_in_root(rootfs, "etc/shadow")
        except FileNotFoundError:
            raise HostError("the template has no etc/shadow: cannot set root's password",
                            400) from None
        lines = data.decode(errors="surrogateescape").splitlines()
        for i, line in enumerate(lines):
            f = line.split(":")
            if f[0] == "root" and len(f) > 2:
                f[1] = hashed
                f[2] = str(int(time.time()) // 86400)
                lines[i] = ":".join(f)
        # owner, group (shadow, as the container numbers it) and mode stay
        write_in_root(rootfs, "etc/shadow",
                      ("\n".join(lines) + "\n").encode(errors="surrogateescape"),
                      st.st_mode & 0o7777, (st.st_uid, st.st_gid))
    if keys:
        write_in_root(rootfs, "root/.ssh/authorized_keys", ("\n".join(keys) + "\n").encode(),
                      0o600, root, dir_mode=0o700)


def bridge_exists(name: str) -> bool:
    """Asked over netlink (ip), so it answers for this process's network
    namespace whatever /sys shows."""
    r = subprocess.run(["ip", "-o", "link", "show", "dev", name, "type", "bridge"],
                       capture_output=True, text=True)
    return r.returncode == 0 and name in r.stdout


# --- unprivileged containers' ids ------------------------------------------------


def _ids_record(container_dir: Path) -> Path:
    return container_dir / "ids.json"


def container_ids(paths: HostPaths, guest_id: int) -> IdRange | None:
    """The id range a container's files were unpacked for; None: privileged."""
    try:
        data = read_json(_ids_record(paths.lxc / str(guest_id)))
    except FileNotFoundError:
        return None
    except ValueError as e:
        raise HostError(f"container {guest_id}: {_ids_record(paths.lxc / str(guest_id))}: {e}",
                        500) from None
    return IdRange(int(data["first"]), int(data["count"]))


def _subid_entries(path: Path) -> list[tuple[str, int, int]] | None:
    """(user, first, count) lines of /etc/subuid or /etc/subgid; None: no file."""
    try:
        text = path.read_text()
    except FileNotFoundError:
        return None
    out = []
    for line in text.splitlines():
        f = line.strip().split(":")
        if len(f) == 3 and f[1].isdecimal() and f[2].isdecimal():
            out.append((f[0], int(f[1]), int(f[2])))
    return out


def _slot_allowed(first: int, tables: list[tuple[Path, list[tuple[str, int, int]]]]) -> bool:
    """No other user has any of [first, first+ID_COUNT) in a subid file, and
    where a file gives root ranges, one of them holds it all."""
    last = first + ID_COUNT
    for _, entries in tables:
        roots = [(s, n) for u, s, n in entries if u in ("root", "0")]
        if roots and not any(s <= first and last <= s + n for s, n in roots):
            return False
        if any(u not in ("root", "0") and s < last and first < s + n for u, s, n in entries):
            return False
    return True


def allocate_ids(paths: HostPaths, taken: set[int],
                 subid_files: tuple[Path, ...] | None = None) -> IdRange:
    """The lowest free slot of the pool that the subid files allow (root
    needs no delegation: a file without root's ranges, as on a development
    machine, only keeps other users' ranges out)."""
    tables = [(p, e) for p in subid_files or SUBID_FILES
              if (e := _subid_entries(p)) is not None]
    for k in range(ID_SLOTS):
        first = ID_FIRST + k * ID_COUNT
        if first not in taken and _slot_allowed(first, tables):
            return IdRange(first)
    files = " and ".join(str(p) for p, _ in tables) or "the pool"
    raise HostError(f"no free id range for an unprivileged container: {files} must give root "
                    f"ranges of {ID_COUNT} ids from {ID_FIRST} that no other user has (the host "
                    f"image has root:{ID_FIRST}:{ID_SLOTS * ID_COUNT}); {len(taken)} in use", 500)


def _taken_ids(paths: HostPaths) -> set[int]:
    taken = set()
    for d in paths.lxc.iterdir() if paths.lxc.is_dir() else ():
        with contextlib.suppress(OSError, ValueError, KeyError, TypeError):
            taken.add(int(read_json(_ids_record(d))["first"]))
    return taken


def _check_reachable(rootfs: Path, ids: IdRange) -> None:
    """LXC enters the rootfs as the container's root, an id with no rights
    on the host: every directory above it must be searchable by others."""
    for d in reversed(rootfs.parents):
        mode = d.stat().st_mode
        if not mode & 0o001:
            raise HostError(f"{d} (mode {mode & 0o7777:o}) is not searchable by others: the "
                            f"root of an unprivileged container (host id {ids.first}) cannot "
                            f"reach {rootfs}; chmod o+x {d}, or create the container with "
                            "unprivileged = 0", 500)


# --- the template -----------------------------------------------------------------


def _member_problem(m: tarfile.TarInfo, ids: IdRange | None) -> str | None:
    for what, name in (("name", m.name), ("link target", m.linkname if m.islnk() else "")):
        if name.startswith("/"):
            return f"absolute {what} {name!r:.100}"
        if ".." in name.split("/"):
            return f"'..' in the {what} {name!r:.100}"
    if m.ischr() or m.isblk():
        return "a device node (LXC makes /dev; a template has none)"
    if ids is not None and max(m.uid, m.gid) >= ids.count:
        return (f"owned by {m.uid}:{m.gid}, outside the 0-{ids.count - 1} an unprivileged "
                "container maps")
    return None


def check_template(tarball: Path, src: BinaryIO, ids: IdRange | None) -> int:
    """Read every member's header from `src` (the open tarball); refuse a
    template that could place anything outside the container's root.
    Returns the member count."""
    proc = subprocess.Popen(["zstd", "-dcq"], stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, stdin=src)
    assert proc.stdout is not None
    n = 0
    try:
        with tarfile.open(fileobj=proc.stdout, mode="r|") as tf:
            for m in tf:
                problem = _member_problem(m, ids)
                if problem:
                    raise HostError(f"container template {tarball.name}: member {m.name!r:.100}"
                                    f": {problem}: refused", 400)
                n += 1
    except tarfile.TarError as e:
        raise HostError(f"container template {tarball.name}: not a tar.zst ({e})", 400) from None
    finally:
        proc.kill()
        proc.wait()
        proc.stdout.close()
    return n


def _unpack(tarball: Path, src: BinaryIO, rootfs: Path, ids: IdRange | None) -> None:
    """tar as root of the container's user namespace (ids), or as host root."""
    tar = ["tar", "--zstd", "-xpf", "-", "--numeric-owner", "-C", "."]
    if ids is not None:
        os.chown(rootfs, *ids.owner())
        tar = ["lxc-usernsexec", "-m", f"b:0:{ids.first}:{ids.count}", "--", *tar]
    try:
        r = subprocess.run(tar, stdin=src, cwd=rootfs, capture_output=True, text=True)
    except FileNotFoundError:
        raise HostError(f"{tar[0]} is missing: install Debian's lxc package", 500) from None
    if r.returncode != 0:
        raise HostError(f"unpacking {tarball} failed: {r.stderr.strip()[-500:]}", 500)


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
    paths.lxc.mkdir(parents=True, exist_ok=True)
    ids = None
    try:
        with locked(paths.lxc / ".ids.lock"):
            if cfg.unprivileged:
                ids = allocate_ids(paths, _taken_ids(paths))
            tmp.mkdir(mode=0o711)
            if ids is not None:  # claimed: the next create skips it
                write_json(_ids_record(tmp), {"first": ids.first, "count": ids.count})
        if ids is not None:
            os.chmod(paths.lxc, paths.lxc.stat().st_mode | 0o001)
            os.chmod(tmp, 0o711)
            _check_reachable(rootfs, ids)
        rootfs.mkdir()
        log(f"checking {tarball}")
        with tarball.open("rb") as src:  # one open file: checked is unpacked
            members = check_template(tarball, src, ids)
            src.seek(0)
            how = f"host ids {ids.first}-{ids.first + ids.count - 1}" if ids else "privileged"
            log(f"unpacking {members} files of {tarball} into {rootfs} ({how})")
            _unpack(tarball, src, rootfs, ids)
        root = ids.owner() if ids else (0, 0)
        write_in_root(rootfs, "etc/hostname", f"{cfg.name}\n".encode(), 0o644, root)
        _set_root_login(rootfs, password, cfg.ssh_keys, root)
        atomic_write(tmp / "config", lxc_config(paths, cfg, ids).encode())
        tmp.rename(d)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    log(f"container {cfg.id} created in {d}")


def _checked_ids(paths: HostPaths, cfg: GuestConfig) -> IdRange | None:
    """The id range, if the config and the files on disk agree on it."""
    ids = container_ids(paths, cfg.id)
    if cfg.unprivileged and ids is None:
        raise HostError(f"container {cfg.id}: its files were unpacked for a privileged "
                        f"container: set unprivileged = false in "
                        f"{paths.guests / f'{cfg.id}.toml'} or create it again", 409)
    if not cfg.unprivileged and ids is not None:
        raise HostError(f"container {cfg.id}: its files belong to host ids {ids.first}-"
                        f"{ids.first + ids.count - 1} (unprivileged); it cannot become "
                        f"privileged: set unprivileged = true in "
                        f"{paths.guests / f'{cfg.id}.toml'}", 409)
    return ids


def start(paths: HostPaths, cfg: GuestConfig, log: TaskLog) -> None:
    if init_pid(paths, cfg.id):
        raise HostError(f"container {cfg.id} is already running", 409)
    ids = _checked_ids(paths, cfg)
    paths.run.mkdir(parents=True, exist_ok=True)
    paths.logs.mkdir(parents=True, exist_ok=True)
    # the config follows the guest's config file (limits may have changed)
    atomic_write(paths.lxc / str(cfg.id) / "config", lxc_config(paths, cfg, ids).encode())
    if ids is not None:
        _check_reachable(paths.lxc / str(cfg.id) / "rootfs", ids)
    pidfile = paths.run / f"ct-{cfg.id}.pid"
    with contextlib.suppress(FileNotFoundError):
        pidfile.unlink()
    logfile = paths.logs / f"ct-{cfg.id}.log"
    log(f"lxc-start {cfg.id}" + (f" (unprivileged, host ids from {ids.first})" if ids
                                 else " (privileged)"))
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
