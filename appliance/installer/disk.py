"""Lay out the target disk: GPT with pyparted, LVM, file systems.

Only the one device the resolved answer selected is ever opened for writing;
every command here names it (or its partitions, or the volume group made on
it) explicitly."""

from __future__ import annotations

import os
import stat
import time
from dataclasses import dataclass
from pathlib import Path

from appliance.errors import InstallerError
from appliance.installer.layout import BIOS_BOOT, GUESTS_LV, VG_NAME, Layout, MiB
from appliance.installer.plan import DiskIdentity
from appliance.outputs.disk import Layout as DiskLayout
from appliance.outputs.disk import partition
from appliance.runner import run


class DiskError(InstallerError):
    """The target disk cannot be prepared."""


@dataclass(frozen=True)
class Volumes:
    """Device paths of what `prepare` made."""

    disk: str
    bios: str
    esp: str
    pv: str
    root: str
    swap: str
    data_pool: str | None
    bios_start: int  # bytes
    bios_length: int
    guests: str | None = None  # thin volume of the pool for /var/lib/appliance


def partition_path(disk: str, number: int) -> str:
    """/dev/sda + 1 -> /dev/sda1; /dev/nvme0n1 + 1 -> /dev/nvme0n1p1."""
    return f"{disk}p{number}" if disk[-1].isdigit() else f"{disk}{number}"


def check_block_device(disk: str) -> None:
    try:
        st = os.stat(disk)
    except OSError as e:
        raise DiskError(f"{disk}: {e.strerror}") from None
    if not stat.S_ISBLK(st.st_mode):
        raise DiskError(f"{disk} is not a block device")


def current_identity(disk: str) -> DiskIdentity | None:
    """The identity of the disk at `disk` now, from udev (sysfs and the udev
    database, as hardware detection reads them); None when it is gone."""
    import pyudev  # type: ignore[import-untyped,unused-ignore]

    name = os.path.basename(os.path.realpath(disk))
    try:
        dev = pyudev.Devices.from_name(pyudev.Context(), "block", name)
        props = {k: dev.properties[k] for k in dev.properties}
        size = int(dev.attributes.asstring("size")) * 512
        links = list(dev.device_links)
    except (pyudev.DeviceNotFoundError, KeyError, OSError, ValueError):
        return None
    if props.get("DEVTYPE") != "disk":
        return None
    return DiskIdentity.from_udev(disk, size, props, links)


def check_identity(expected: DiskIdentity | None) -> None:
    """Refuse to write unless the disk at `expected.devnode` is still the one
    the plan was made for (serial, WWN, size, by-id links)."""
    if expected is None:
        raise DiskError("the install plan does not say which disk was checked (serial, WWN, "
                        "size): not writing to any disk")
    now = current_identity(expected.devnode)
    if now is None:
        raise DiskError(f"{expected.devnode} has vanished since the plan was made for "
                        f"{expected.describe()}; nothing was written")
    diff = expected.differences(now)
    if diff:
        raise DiskError(f"{expected.devnode} is no longer the disk the plan was made for "
                        f"({expected.describe()}): {'; '.join(diff)}; nothing was written")


def in_use(disk: str) -> list[str]:
    """Why the disk must not be touched: mounted partitions, swap, holders."""
    name = os.path.basename(os.path.realpath(disk))
    reasons = []
    sys_block = Path("/sys/block") / name
    parts = [name] + [p.name for p in sys_block.glob(f"{name}*") if (p / "partition").exists()]
    mounted = {line.split()[0] for line in Path("/proc/mounts").read_text().splitlines()}
    swaps = {line.split()[0] for line in Path("/proc/swaps").read_text().splitlines()[1:]}
    for p in parts:
        dev = f"/dev/{p}"
        if dev in mounted:
            reasons.append(f"{dev} is mounted")
        if dev in swaps:
            reasons.append(f"{dev} is used as swap")
        holders = sys_block / p / "holders" if p != name else sys_block / "holders"
        for h in sorted(holders.glob("*")) if holders.is_dir() else []:
            reasons.append(f"{dev} is held by {h.name}")
    return reasons


def _settle(paths: list[str], timeout: float = 30) -> None:
    run(["udevadm", "settle", f"--timeout={int(timeout)}"], what="udevadm settle", check=False)
    deadline = time.monotonic() + timeout
    for p in paths:
        while not os.path.exists(p):
            if time.monotonic() > deadline:
                raise DiskError(f"{p} did not appear after partitioning")
            time.sleep(0.2)


def write_gpt(disk: str, layout: Layout) -> tuple[int, int]:
    """BIOS boot, ESP, LVM partitions (pyparted, as the disk output does).
    Returns the BIOS boot partition's (start, length) in bytes."""
    parts, start = [], MiB
    for name, length in (("bios", BIOS_BOOT), ("esp", layout.esp), ("lvm", layout.pv)):
        parts.append((name, start, length))
        start += length
    partition(Path(disk), DiskLayout(layout.disk, parts))
    return MiB, BIOS_BOOT


def prepare(disk: str, layout: Layout, filesystem: str,
            identity: DiskIdentity | None) -> Volumes:
    """Wipe `disk`, partition it, make the LVM volumes and file systems, if it
    is still the disk `identity` describes (checked again right before wipefs)."""
    if identity is not None and identity.devnode != disk:
        raise DiskError(f"the plan checked {identity.describe()}, not {disk}: not writing")
    check_block_device(disk)
    check_identity(identity)
    release_old_vg(disk)
    busy = in_use(disk)
    if busy:
        raise DiskError(f"{disk} is in use, not touching it: {'; '.join(busy)}")
    check_identity(identity)  # the moment of writing
    run(["wipefs", "--all", "--force", disk], what=f"wipefs {disk}")
    bios_start, bios_len = write_gpt(disk, layout)
    bios, esp, pv = (partition_path(disk, n) for n in (1, 2, 3))
    _settle([bios, esp, pv])
    for p in (esp, pv):
        run(["wipefs", "--all", "--force", p], what=f"wipefs {p}")
    run(["pvcreate", "-ff", "-y", pv], what="pvcreate")
    run(["vgcreate", VG_NAME, pv], what="vgcreate")
    lv = f"/dev/{VG_NAME}"
    run(["lvcreate", "-y", "-W", "y", "-L", f"{layout.swap}b", "-n", "swap", VG_NAME],
        what="lvcreate swap")
    run(["lvcreate", "-y", "-W", "y", "-L", f"{layout.root}b", "-n", "root", VG_NAME],
        what="lvcreate root")
    pool = guests = None
    if layout.data:
        # A thin pool for guest disks; its metadata takes a slice of it.
        run(["lvcreate", "-y", "--type", "thin-pool", "-L", f"{layout.data}b", "-n", "data",
             VG_NAME], what="lvcreate data (thin pool)")
        pool = f"{VG_NAME}/data"
        # Guests' disks, container roots and templates live on a thin volume as big as
        # the pool, so they can grow past the root volume; discard gives freed blocks back.
        run(["lvcreate", "-y", "--thin", "-V", f"{layout.data}b", "-n", GUESTS_LV, pool],
            what=f"lvcreate {GUESTS_LV} (thin volume)")
        guests = f"{lv}/{GUESTS_LV}"
    _settle([f"{lv}/root", f"{lv}/swap", *([guests] if guests else [])])
    run(["mkfs.vfat", "-F", "32", "-n", "EFI", esp], what="mkfs.vfat (ESP)")
    run(["mkswap", "-L", "swap", f"{lv}/swap"], what="mkswap")
    if filesystem == "xfs":
        run(["mkfs.xfs", "-f", "-L", "root", f"{lv}/root"], what="mkfs.xfs")
    else:
        run(["mkfs.ext4", "-q", "-F", "-L", "root", f"{lv}/root"], what="mkfs.ext4")
    if guests:
        run(["mkfs.ext4", "-q", "-F", "-L", GUESTS_LV, guests], what=f"mkfs.ext4 ({GUESTS_LV})")
    return Volumes(disk, bios, esp, pv, f"{lv}/root", f"{lv}/swap", pool, bios_start, bios_len,
                   guests)


def vg_members(vg: str = VG_NAME) -> list[str]:
    """The physical volumes of volume group `vg` on this machine."""
    out = run(["pvs", "--noheadings", "-o", "pv_name,vg_name"], what="pvs", capture=True,
              check=False)
    return [f[0] for f in (line.split() for line in out.stdout.decode().splitlines())
            if len(f) == 2 and f[1] == vg]


def release_old_vg(disk: str) -> None:
    """An earlier install on the target disk left volume group VG_NAME (and
    udev may have activated it): deactivate it so the disk can be wiped. The
    same name on any other disk is not ours to touch: refuse."""
    members = vg_members()
    if not members:
        return
    name = os.path.basename(os.path.realpath(disk))
    parts = {partition_path(f"/dev/{name}", n) for n in range(1, 129)} | {f"/dev/{name}"}
    foreign = [m for m in members if os.path.realpath(m) not in parts]
    if foreign:
        raise DiskError(f"volume group {VG_NAME!r} already exists on {', '.join(foreign)}, "
                        f"which is not the target disk {disk}; the installer does not touch "
                        "it: detach that disk, or rename that volume group (vgrename)")
    run(["vgchange", "-an", VG_NAME], what=f"deactivating the old {VG_NAME} volume group "
        f"on {disk}")


def fs_uuid(device: str) -> str:
    out = run(["blkid", "-s", "UUID", "-o", "value", device], what="blkid", capture=True)
    uuid = out.stdout.decode().strip()
    if not uuid:
        raise DiskError(f"{device} has no file system UUID")
    return uuid


def deactivate() -> None:
    run(["vgchange", "-an", VG_NAME], what="vgchange -an", check=False)
