"""Checks that a running container is confined, for any host: given
`run(cmd) -> (rc, output)` that runs a shell command line as root on the
host (locally, or over SSH in an installed host), they assert what an
unprivileged container must and must not be able to do.

    from tests.host import ct_checks
    ct_checks.check_container(run, 100, memory_mib=256, cpus=1, pids=4096)

runs every check: the id mapping, the three things that must fail inside
(writing a global sysctl, mounting a file system a user namespace may not
mount, loading a kernel module), the cgroup limits (v2, or v1 where the host
has it) and, where the kernel has AppArmor, LXC's profile on the init.
"""

from __future__ import annotations

import contextlib
import shlex
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

Run = Callable[[str], tuple[int, str]]
LXC_PATH = "/var/lib/appliance/lxc"
DENIED = ("denied", "not permitted", "Read-only")  # how a refusal reads


@contextlib.contextmanager
def reachable_dir(prefix: str) -> Iterator[Path]:
    """A temporary directory an unprivileged container's root can reach
    (LXC enters the rootfs as that unmapped id): every directory above it is
    searchable by others, which pytest's tmp_path (under a 0700 one) is not."""
    d = Path(tempfile.mkdtemp(prefix=prefix, dir="/var/tmp"))
    try:
        d.chmod(0o711)
        yield d
    finally:
        shutil.rmtree(d, ignore_errors=True)


def _attach(lxc_path: str, ct: int, script: str) -> str:
    return (f"lxc-attach -P {shlex.quote(lxc_path)} -n {ct} -- sh -c "
            + shlex.quote(script) + " 2>&1")


def init_pid(run: Run, ct: int, lxc_path: str = LXC_PATH) -> int:
    rc, out = run(f"lxc-info -P {shlex.quote(lxc_path)} -n {ct} -p -H")
    assert rc == 0 and out.strip().isdigit(), f"container {ct} has no init pid: {out!r}"
    return int(out.strip())


def check_id_mapping(run: Run, ct: int, lxc_path: str = LXC_PATH) -> int:
    """Root in the container is a host id other than 0; returns that id."""
    pid = init_pid(run, ct, lxc_path)
    rc, out = run(f"cat /proc/{pid}/uid_map")
    first = out.split()
    assert rc == 0 and first[:1] == ["0"], out
    assert int(first[1]) != 0, f"container {ct} is privileged: uid_map {out.strip()!r}"
    rc, out = run(f"cat /proc/{pid}/gid_map")
    assert rc == 0 and out.split()[1] != "0", f"gid_map {out.strip()!r}"
    return int(first[1])


def check_must_fail(run: Run, ct: int, lxc_path: str = LXC_PATH) -> None:
    """Root inside cannot change a global sysctl (core_pattern: it writes
    back the same value, so nothing changes even where it wrongly works),
    mount debugfs (not mountable in a user namespace) or load a module
    (init_module: EPERM)."""
    sysctl = ("p=$(cat /proc/sys/kernel/core_pattern) && "
              "{ mount -o remount,rw /proc/sys 2>/dev/null; "
              "printf '%s\\n' \"$p\" > /proc/sys/kernel/core_pattern; } && echo WROTE")
    _, out = run(_attach(lxc_path, ct, sysctl))
    assert "WROTE" not in out, f"container {ct} could write core_pattern: {out}"
    assert any(w in out for w in DENIED), f"core_pattern: not refused as expected: {out}"
    _, out = run(_attach(lxc_path, ct, "mkdir -p /mnt/dbg && mount -t debugfs none /mnt/dbg"
                          " && echo MOUNTED && umount /mnt/dbg"))
    assert "MOUNTED" not in out, f"container {ct} could mount debugfs: {out}"
    assert any(w in out for w in DENIED), f"mount: not refused as expected: {out}"
    # init_module(NULL, 0, NULL): EPERM without CAP_SYS_MODULE, EFAULT with it
    _, out = run(_attach(lxc_path, ct, "perl -e 'syscall(175, 0, 0, 0); print \"errno=\", "
                          "$!+0, \"\\n\"'"))
    assert out.strip() == "errno=1", f"init_module in container {ct} did not fail with EPERM: {out}"


def cgroup_keys(run: Run) -> tuple[str, str, str]:
    """The memory, CPU and pids limit files the host's cgroup version has."""
    _, out = run("stat -fc %T /sys/fs/cgroup")
    if out.strip() == "cgroup2fs":
        return "memory.max", "cpu.max", "pids.max"
    return "memory.limit_in_bytes", "cpu.cfs_quota_us", "pids.max"


def check_limits(run: Run, ct: int, memory_mib: int, cpus: int, pids: int,
                 lxc_path: str = LXC_PATH) -> None:
    mem_key, cpu_key, pids_key = cgroup_keys(run)

    def value(key: str) -> str:
        rc, out = run(f"lxc-cgroup -P {shlex.quote(lxc_path)} -n {ct} {key}")
        assert rc == 0, f"lxc-cgroup {key}: {out}"
        return out.strip()

    assert value(mem_key) == str(memory_mib << 20)
    want_cpu = f"{cpus * 100000} 100000" if cpu_key == "cpu.max" else str(cpus * 100000)
    assert value(cpu_key) == want_cpu
    assert value(pids_key) == str(pids)


def apparmor_enabled(run: Run) -> bool:
    rc, out = run("cat /sys/module/apparmor/parameters/enabled 2>/dev/null")
    return rc == 0 and out.strip() == "Y"


def check_apparmor(run: Run, ct: int, lxc_path: str = LXC_PATH) -> str:
    """The container's init runs under LXC's generated profile, enforced;
    returns the label."""
    pid = init_pid(run, ct, lxc_path)
    rc, out = run(f"cat /proc/{pid}/attr/current")
    label = out.strip()
    assert rc == 0 and label.startswith("lxc-") and "(enforce)" in label, \
        f"container {ct}'s init is not under an LXC AppArmor profile: {label!r}"
    rc, out = run("aa-status 2>&1 || apparmor_status 2>&1")
    assert f"lxc-{ct}_" in out, f"aa-status lists no profile for container {ct}: {out[-800:]}"
    return label


def check_container(run: Run, ct: int, memory_mib: int, cpus: int, pids: int,
                    lxc_path: str = LXC_PATH, require_apparmor: bool = True) -> None:
    """Every check; AppArmor is required unless `require_apparmor` is False
    (a kernel without it, like a development machine's)."""
    check_id_mapping(run, ct, lxc_path)
    check_must_fail(run, ct, lxc_path)
    check_limits(run, ct, memory_mib, cpus, pids, lxc_path)
    if require_apparmor or apparmor_enabled(run):
        check_apparmor(run, ct, lxc_path)
