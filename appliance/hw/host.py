"""Host features VMs and containers need besides the CPU: IOMMU, vhost-net,
TUN, namespaces and cgroup v2 controllers. Everything is read below `root`."""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass, field
from pathlib import Path

NAMESPACES = ("mnt", "uts", "ipc", "pid", "net", "user", "cgroup")
# What LXC needs from cgroup v2 to limit and account containers.
LXC_CONTROLLERS = ("cpu", "memory", "pids", "io")


@dataclass
class Iommu:
    acpi_tables: list[str]  # "DMAR" (Intel VT-d), "IVRS" (AMD-Vi)
    groups: int  # entries in /sys/kernel/iommu_groups
    cmdline: list[str]  # intel_iommu=/amd_iommu=/iommu= options on the kernel command line


@dataclass
class Cgroups:
    v2_mount: str | None  # where cgroup2 is mounted, None if nowhere
    unified: bool  # cgroup2 is the only hierarchy (mounted at /sys/fs/cgroup)
    controllers: list[str]
    v1_controllers: list[str] = field(default_factory=list)

    @property
    def missing(self) -> list[str]:
        return [c for c in LXC_CONTROLLERS if c not in self.controllers]


@dataclass
class HostFeatures:
    iommu: Iommu
    vhost_net: bool
    tun: bool
    namespaces: dict[str, bool]
    cgroups: Cgroups


def _is_char_device(path: Path) -> bool:
    try:
        return stat.S_ISCHR(os.stat(path).st_mode)
    except OSError:
        return False


def _present(path: Path, real_root: bool) -> bool:
    # A recorded tree cannot hold device nodes; a plain file stands for one.
    return _is_char_device(path) if real_root else path.exists()


def read_mounts(root: Path) -> list[tuple[str, str, str, str]]:
    """(source, mountpoint, fstype, options) from <root>/proc/mounts."""
    out = []
    try:
        text = (root / "proc/mounts").read_text()
    except OSError:
        return []
    for line in text.splitlines():
        parts = line.split()
        if len(parts) >= 4:
            src, mnt = (p.replace("\\040", " ") for p in parts[:2])
            out.append((src, mnt, parts[2], parts[3]))
    return out


def read_iommu(root: Path) -> Iommu:
    tables_dir = root / "sys/firmware/acpi/tables"
    tables = [t for t in ("DMAR", "IVRS") if (tables_dir / t).exists()]
    groups_dir = root / "sys/kernel/iommu_groups"
    try:
        groups = sum(1 for _ in groups_dir.iterdir())
    except OSError:
        groups = 0
    try:
        cmdline = (root / "proc/cmdline").read_text().split()
    except OSError:
        cmdline = []
    opts = [o for o in cmdline if o.split("=", 1)[0] in ("intel_iommu", "amd_iommu", "iommu")]
    return Iommu(tables, groups, opts)


def read_cgroups(root: Path) -> Cgroups:
    mounts = read_mounts(root)
    v2 = [m for m in mounts if m[2] == "cgroup2"]
    v1 = sorted(
        {o for m in mounts if m[2] == "cgroup" for o in m[3].split(",")}
        & {"cpu", "cpuacct", "cpuset", "memory", "devices", "freezer", "blkio", "pids"}
    )
    if not v2:
        return Cgroups(None, False, [], v1)
    mnt = v2[0][1]
    try:
        controllers = (root / mnt.lstrip("/") / "cgroup.controllers").read_text().split()
    except OSError:
        controllers = []
    return Cgroups(mnt, mnt == "/sys/fs/cgroup" and not v1, controllers, v1)


def read_host_features(root: Path) -> HostFeatures:
    real = root.resolve() == Path("/")
    ns_dir = root / "proc/self/ns"
    return HostFeatures(
        iommu=read_iommu(root),
        vhost_net=_present(root / "dev/vhost-net", real),
        tun=_present(root / "dev/net/tun", real),
        namespaces={ns: (ns_dir / ns).exists() or (ns_dir / ns).is_symlink() for ns in NAMESPACES},
        cgroups=read_cgroups(root),
    )
