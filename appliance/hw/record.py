"""Record this machine as a recorded-machine directory (see
tests/data/hw/README.md), so a bug report or a new test can replay it:

    appliance detect --record DIR
    umockdev-run -d DIR/devices.umockdev -- appliance detect --recorded DIR

Only what detection reads is copied: the files in ROOT_FILES and
ROOT_TREES, the CPUID leaves in CPUID_LEAVES, the two firmware MSRs, the
/dev/kvm probe result, and the disks and NICs through `umockdev-record`.
Device nodes become empty plain files; ACPI tables become empty markers.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pyudev  # type: ignore[import-untyped,unused-ignore]

from appliance.errors import HardwareError
from appliance.hw import cpu, kvm
from appliance.hw.host import NAMESPACES, read_mounts
from appliance.hw.udevinfo import list_disks, list_nics
from appliance.runner import require_tools, run

# Files read verbatim.
ROOT_FILES = (
    "proc/cpuinfo",
    "proc/meminfo",
    "proc/mounts",
    "proc/swaps",
    "proc/modules",
    "proc/cmdline",
)
# Whose presence matters, not their content.
MARKERS = (
    "dev/vhost-net",
    "dev/net/tun",
    "sys/firmware/acpi/tables/DMAR",
    "sys/firmware/acpi/tables/IVRS",
    *(f"proc/self/ns/{ns}" for ns in NAMESPACES),
)
CPUID_LEAVES = (
    0x0,
    0x1,
    0x80000000,
    0x80000001,
    0x80000002,
    0x80000003,
    0x80000004,
    0x8000000A,
    0x40000000,
)
MSRS = (cpu.MSR_IA32_FEATURE_CONTROL, cpu.MSR_VM_CR)


def _write(dest: Path, rel: str, text: str) -> None:
    path = dest / "root" / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def record_root(dest: Path, root: Path = Path("/")) -> None:
    for rel in ROOT_FILES:
        try:
            _write(dest, rel, (root / rel).read_text())
        except OSError:
            continue  # absent here (e.g. /proc/modules without module support)
    for rel in MARKERS:
        if (root / rel).exists():
            _write(dest, rel, "")
    for name in ("kvm", *kvm.VENDOR_MODULES):
        params = root / "sys/module" / name / "parameters"
        if not (root / "sys/module" / name).is_dir():
            continue
        _write(dest, f"sys/module/{name}/present", "")  # keeps the directory in git
        if params.is_dir():
            for p in params.iterdir():
                try:
                    _write(dest, f"sys/module/{name}/parameters/{p.name}", p.read_text())
                except OSError:
                    continue
    groups = root / "sys/kernel/iommu_groups"
    if groups.is_dir():
        for g in groups.iterdir():
            _write(dest, f"sys/kernel/iommu_groups/{g.name}/type", "")
    for _src, mnt, fstype, _opts in read_mounts(root):
        if fstype == "cgroup2":
            try:
                controllers = (root / mnt.lstrip("/") / "cgroup.controllers").read_text()
            except OSError:
                continue
            _write(dest, f"{mnt.lstrip('/')}/cgroup.controllers", controllers)


def record_cpuid(dest: Path, reader: cpu.CpuidReader = cpu.native_cpuid) -> None:
    lines = []
    for leaf in CPUID_LEAVES:
        regs = ", ".join(f'"{r:#x}"' for r in reader(leaf, 0))
        lines.append(f'  "{leaf:#x}": [{regs}]')
    (dest / "cpuid.json").write_text("{\n" + ",\n".join(lines) + "\n}\n")


def record_msrs(dest: Path, reader: cpu.MsrReader) -> None:
    values = {f"{i:#x}": f"{v:#x}" for i in MSRS if (v := reader(0, i)) is not None}
    if values:
        (dest / "msr.json").write_text(json.dumps(values) + "\n")


def record_kvm(dest: Path, root: Path = Path("/")) -> None:
    dev = kvm.probe_device(root / "dev/kvm")
    if not dev.present:
        return
    data = {
        "present": True,
        "accessible": dev.accessible,
        "api_version": dev.api_version,
        "create_vm": dev.create_vm,
        "error": dev.error,
        "create_vm_error": dev.create_vm_error,
    }
    (dest / "kvm.json").write_text(json.dumps(data) + "\n")


def record_devices(dest: Path, context: pyudev.Context | None = None) -> None:
    """Disks, their partitions and NICs through umockdev-record."""
    require_tools("umockdev-record", why="to record udev devices")
    ctx = context or pyudev.Context()
    paths: list[str] = []
    for disk in list_disks(ctx):
        paths.append(disk.syspath)
        paths += [c.sys_path for c in pyudev.Devices.from_sys_path(ctx, disk.syspath).children]
    paths += [nic.syspath for nic in list_nics(ctx)]
    if not paths:
        return
    out = run(["umockdev-record", *paths], capture=True, what="umockdev-record").stdout
    (dest / "devices.umockdev").write_bytes(out)


def record(dest: Path) -> Path:
    """Record this machine into `dest` (created; must not exist or be empty)."""
    if dest.exists() and any(dest.iterdir()):
        raise HardwareError(f"{dest}: exists and is not empty; choose a new directory")
    tmp = dest.with_name(dest.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    record_root(tmp)
    record_cpuid(tmp)
    record_msrs(tmp, cpu.DevMsr())
    record_kvm(tmp)
    record_devices(tmp)
    if dest.exists():
        dest.rmdir()
    os.replace(tmp, dest)
    return dest
