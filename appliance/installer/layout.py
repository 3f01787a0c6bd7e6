"""How the target disk is divided: partitions and LVM volumes, with the
defaults Proxmox VE's installer uses for its LVM layout.

    GPT:  1 MiB BIOS boot | ESP (512 MiB; 1 GiB on disks over 100 GiB) | LVM PV
    VG "appliance": swap, root (ext4 or xfs), data (thin pool) holding the thin
    volume "guests" (ext4, mounted on /var/lib/appliance: guests and templates)

All sizes are in bytes here; answer files give GiB (floats)."""

from __future__ import annotations

from dataclasses import dataclass

from appliance.answer.parse import MIN_DISK_GIB
from appliance.errors import InstallerError
from appliance.paths import STATE_DIR

MiB = 1 << 20
GiB = 1 << 30

BIOS_BOOT = 1 * MiB
ESP_SMALL, ESP_LARGE = 512 * MiB, 1 * GiB
LARGE_DISK = 100 * GiB
# The smallest disk we install on (the answer resolver's minimum too): the
# system needs about 1.5 GiB, plus swap and room to update it.
MIN_DISK = int(MIN_DISK_GIB * GiB)
MIN_ROOT = 2 * GiB
# A data volume (thin pool for guest disks) below this is not worth having:
# its space goes to root instead.
MIN_DATA = 4 * GiB
MAX_ROOT_DEFAULT = 96 * GiB  # hdsize/4, at most this, unless `maxroot` says otherwise
VG_NAME = "appliance"
GUESTS_LV = "guests"
GUESTS_MOUNT = str(STATE_DIR)  # the guests volume holds the host layer's state root


class LayoutError(InstallerError):
    """The disk cannot hold the layout the answer asks for."""


@dataclass(frozen=True)
class Sizes:
    """What the answer's [disk-setup] LVM options say (GiB), None: default."""

    hdsize: float | None = None
    swapsize: float | None = None
    maxroot: float | None = None
    minfree: float | None = None
    maxvz: float | None = None


@dataclass(frozen=True)
class Layout:
    disk: int  # bytes of the whole disk
    hdsize: int  # bytes used (the rest stays unpartitioned)
    esp: int
    pv: int  # the LVM physical volume (partition 3)
    swap: int
    root: int
    data: int  # 0: no data volume
    minfree: int

    def to_json(self) -> dict[str, float]:
        return {k: round(getattr(self, k) / GiB, 3) for k in
                ("disk", "hdsize", "esp", "pv", "swap", "root", "data", "minfree")}

    def describe(self) -> str:
        g = self.to_json()
        data = (f", data (thin pool) {g['data']} GiB for {GUESTS_MOUNT}" if self.data
                else f", no data volume ({GUESTS_MOUNT} on root)")
        return (f"{g['hdsize']} of {g['disk']} GiB: ESP {g['esp']} GiB, swap {g['swap']} GiB, "
                f"root {g['root']} GiB{data}, {g['minfree']} GiB left free in the volume group")


def _align(n: int, to: int = 4 * MiB) -> int:
    return n // to * to


def plan(disk_bytes: int, memory_bytes: int, sizes: Sizes = Sizes()) -> Layout:
    """The layout for a disk of `disk_bytes` on a machine with `memory_bytes` RAM."""
    if disk_bytes < MIN_DISK:
        raise LayoutError(f"the disk has {disk_bytes / GiB:.1f} GiB; the installer needs at "
                          f"least {MIN_DISK // GiB} GiB")
    hdsize = disk_bytes
    if sizes.hdsize is not None:
        hdsize = int(sizes.hdsize * GiB)
        if hdsize > disk_bytes:
            raise LayoutError(f"disk-setup.lvm.hdsize = {sizes.hdsize} GiB is larger than the "
                              f"disk ({disk_bytes / GiB:.1f} GiB)")
        if hdsize < MIN_DISK:
            raise LayoutError(f"disk-setup.lvm.hdsize = {sizes.hdsize} GiB is below the minimum "
                              f"of {MIN_DISK // GiB} GiB")
    esp = ESP_LARGE if hdsize > LARGE_DISK else ESP_SMALL
    # GPT needs 1 MiB at the start and 1 MiB for the backup table at the end.
    pv = _align(hdsize - 2 * MiB - BIOS_BOOT - esp)
    # LVM keeps its metadata at the start of the PV.
    usable = pv - 4 * MiB

    if sizes.swapsize is not None:
        swap = int(sizes.swapsize * GiB)
    else:
        swap = min(max(memory_bytes, 4 * GiB), 8 * GiB, hdsize // 8)
    swap = _align(swap)
    if sizes.minfree is not None:
        minfree = int(sizes.minfree * GiB)
    else:
        minfree = 16 * GiB if hdsize > 128 * GiB else hdsize // 8
    minfree = _align(minfree)
    maxroot = int(sizes.maxroot * GiB) if sizes.maxroot is not None else MAX_ROOT_DEFAULT
    root = _align(min(hdsize // 4, maxroot))
    root = max(root, MIN_ROOT)
    data = usable - swap - root - minfree
    if sizes.maxvz is not None:
        data = min(data, int(sizes.maxvz * GiB))
    data = _align(max(data, 0))
    if data < MIN_DATA:
        # Too small for guests: root takes it (as Proxmox does on small disks).
        root = _align(usable - swap - minfree)
        data = 0
    if root < MIN_ROOT:
        raise LayoutError(
            f"only {root / GiB:.1f} GiB would be left for the root volume (swap "
            f"{swap / GiB:.1f} GiB, minfree {minfree / GiB:.1f} GiB on {pv / GiB:.1f} GiB); "
            f"it needs {MIN_ROOT // GiB} GiB: lower swapsize/minfree or use a larger disk")
    return Layout(disk_bytes, hdsize, esp, pv, swap, root, data, minfree)
