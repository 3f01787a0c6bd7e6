"""Disk and NIC inventory through pyudev.

pyudev reads sysfs and the udev database, so under `umockdev-run` a recorded
machine is listed exactly like a real one. Mount and swap state comes from
`<root>/proc`, so recorded machines carry those files in their root tree.

Which disks are offered as install targets is decided here, once, for the
installer and `device-info` alike: loop, ram, zram, dm, md, sr (and the
other virtual kinds in VIRTUAL_PREFIXES), the live medium the system booted
from, disks holding the running system, read-only disks and empty drives are
listed but never offered.
"""

from __future__ import annotations

import os
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import pyudev  # type: ignore[import-untyped,unused-ignore]

from appliance.hw.host import read_mounts

VIRTUAL_PREFIXES = {
    "loop": "loop device",
    "ram": "RAM disk",
    "zram": "compressed RAM disk (zram)",
    "dm-": "device-mapper device",
    "md": "software RAID (md) device",
    "sr": "optical drive",
    "nbd": "network block device",
    "fd": "floppy drive",
    "zd": "ZFS volume",
    "mtdblock": "flash translation device",
}
# Where live systems mount the medium they booted from (live-boot, casper,
# dracut dmsquash-live, archiso).
LIVE_MOUNTPOINTS = (
    "/run/live/medium",
    "/lib/live/mount/medium",
    "/cdrom",
    "/run/initramfs/live",
    "/run/archiso/bootmnt",
)


@dataclass
class Partition:
    name: str
    devnode: str
    syspath: str
    size_bytes: int
    fstype: str | None
    label: str | None
    uuid: str | None
    mountpoints: list[str]


@dataclass
class Disk:
    name: str
    devnode: str
    syspath: str
    size_bytes: int
    logical_block_size: int
    model: str | None
    serial: str | None
    wwn: str | None
    bus: str | None  # nvme, ata, scsi, usb, virtio, mmc, ...
    rotational: bool
    removable: bool
    readonly: bool
    by_id: list[str]
    by_path: list[str]
    fstype: str | None  # a filesystem or signature on the whole disk
    partitions: list[Partition]
    mountpoints: list[str]  # of the disk and its partitions
    holders: list[str]  # dm/md devices built on it or its partitions
    swap: bool
    install_target: bool
    excluded_reason: str | None
    properties: dict[str, str] = field(repr=False)

    @property
    def in_use(self) -> bool:
        return bool(self.mountpoints or self.holders or self.swap)

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        d["in_use"] = self.in_use
        del d["properties"]
        return d


@dataclass
class Nic:
    name: str
    syspath: str
    mac: str | None
    driver: str | None
    operstate: str | None  # up, down, unknown, ...
    carrier: bool | None
    speed_mbps: int | None
    net_names: dict[str, str]  # ID_NET_NAME_* properties
    properties: dict[str, str] = field(repr=False)

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        del d["properties"]
        return d


@dataclass
class Inventory:
    disks: list[Disk]
    nics: list[Nic]

    @property
    def install_targets(self) -> list[Disk]:
        return [d for d in self.disks if d.install_target]

    def to_json(self) -> dict[str, Any]:
        return {
            "disks": [d.to_json() for d in self.disks],
            "nics": [n.to_json() for n in self.nics],
        }


def _attr(dev: pyudev.Device, name: str) -> str | None:
    try:
        value = dev.attributes.asstring(name)
    except (KeyError, OSError, UnicodeDecodeError):
        return None
    return str(value).strip()


def _int_attr(dev: pyudev.Device, name: str) -> int | None:
    value = _attr(dev, name)
    try:
        return int(value) if value is not None else None
    except ValueError:
        return None


def _parent_attr(dev: pyudev.Device, name: str) -> str | None:
    """An attribute of the disk's `device` (the controller-facing parent)."""
    parent = dev.parent
    while parent is not None and parent.subsystem == "block":
        parent = parent.parent
    return _attr(parent, name) if parent is not None else None


def _bus(props: dict[str, str]) -> str | None:
    """udev's ID_BUS (ata for SATA, scsi for SAS, usb), else guessed from the
    device path (NVMe and virtio disks carry no ID_BUS)."""
    if props.get("ID_BUS"):
        return props["ID_BUS"]
    path = props.get("DEVPATH", "")
    for key in ("usb", "nvme", "virtio", "mmc", "ata", "host"):
        if f"/{key}" in path:
            return "scsi" if key == "host" else key
    return None


def _natural(name: str) -> list[Any]:
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", name)]


def _links(props: dict[str, str], dev: pyudev.Device) -> list[str]:
    links = props.get("DEVLINKS", "").split()
    if not links:
        links = list(dev.device_links)
    return sorted(links)


def _holders(syspath: str) -> list[str]:
    """dm/md devices built on this block device (its sysfs holders/)."""
    try:
        return sorted(os.listdir(os.path.join(syspath, "holders")))
    except OSError:
        return []


def _excluded(
    name: str, devpath: str, size: int, readonly: bool, mountpoints: list[str]
) -> str | None:
    live = [m for m in mountpoints if m in LIVE_MOUNTPOINTS]
    if live:
        return f"live medium this system booted from (mounted at {live[0]})"
    for prefix, what in VIRTUAL_PREFIXES.items():
        if name.startswith(prefix) and (prefix != "md" or name[2:3].isdigit()):
            return what
    if devpath.startswith("/devices/virtual/"):
        return "virtual device"
    if "/" in mountpoints:
        return "holds the running system (mounted at /)"
    if size == 0:
        return "no medium"
    if readonly:
        return "read-only"
    return None


def list_disks(context: pyudev.Context, root: Path = Path("/")) -> list[Disk]:
    mounts = read_mounts(root)
    mounted: dict[str, list[str]] = {}
    real_root = root.resolve() == Path("/")
    for src, mnt, _fstype, _opts in mounts:
        if real_root and src.startswith("/dev/"):
            src = os.path.realpath(src)  # /dev/disk/by-label/... -> /dev/sdb1
        mounted.setdefault(src, []).append(mnt)
    swaps: set[str] = set()
    try:
        for line in (root / "proc/swaps").read_text().splitlines()[1:]:
            if line.split():
                swaps.add(line.split()[0])
    except OSError:
        pass

    disks: list[Disk] = []
    for dev in context.list_devices(subsystem="block", DEVTYPE="disk"):
        props = {k: dev.properties[k] for k in dev.properties}
        name = dev.sys_name
        devnode = dev.device_node or props.get("DEVNAME") or f"/dev/{name}"
        size = (_int_attr(dev, "size") or 0) * 512  # always 512-byte sectors
        partitions: list[Partition] = []
        for child in dev.children:
            if child.device_type != "partition":
                continue
            cprops = child.properties
            cnode = child.device_node or f"/dev/{child.sys_name}"
            partitions.append(
                Partition(
                    name=child.sys_name,
                    devnode=cnode,
                    syspath=child.sys_path,
                    size_bytes=(_int_attr(child, "size") or 0) * 512,
                    fstype=cprops.get("ID_FS_TYPE") or None,
                    label=cprops.get("ID_FS_LABEL") or None,
                    uuid=cprops.get("ID_FS_UUID") or None,
                    mountpoints=mounted.get(cnode, []),
                )
            )
        partitions.sort(key=lambda p: _natural(p.name))
        mountpoints = list(mounted.get(devnode, []))
        for p in partitions:
            mountpoints += p.mountpoints
        readonly = _attr(dev, "ro") == "1"
        links = _links(props, dev)
        excluded = _excluded(name, props.get("DEVPATH", ""), size, readonly, mountpoints)
        disks.append(
            Disk(
                name=name,
                devnode=devnode,
                syspath=dev.sys_path,
                size_bytes=size,
                logical_block_size=_int_attr(dev, "queue/logical_block_size") or 512,
                model=props.get("ID_MODEL") or _parent_attr(dev, "model") or None,
                serial=props.get("ID_SERIAL_SHORT")
                or props.get("ID_SERIAL")
                or _attr(dev, "serial")
                or _parent_attr(dev, "serial")
                or None,
                wwn=props.get("ID_WWN") or _attr(dev, "wwid") or _parent_attr(dev, "wwid") or None,
                bus=_bus(props),
                rotational=_attr(dev, "queue/rotational") == "1",
                removable=_attr(dev, "removable") == "1",
                readonly=readonly,
                by_id=[link for link in links if link.startswith("/dev/disk/by-id/")],
                by_path=[link for link in links if link.startswith("/dev/disk/by-path/")],
                fstype=props.get("ID_FS_TYPE") or None,
                partitions=partitions,
                mountpoints=mountpoints,
                holders=sorted(
                    {*_holders(dev.sys_path), *(h for p in partitions for h in _holders(p.syspath))}
                ),
                swap=devnode in swaps or any(p.devnode in swaps for p in partitions),
                install_target=excluded is None,
                excluded_reason=excluded,
                properties=props,
            )
        )
    disks.sort(key=lambda d: _natural(d.name))
    return disks


def list_nics(context: pyudev.Context) -> list[Nic]:
    """Physical network interfaces (those with a device behind them)."""
    nics: list[Nic] = []
    for dev in context.list_devices(subsystem="net"):
        props = {k: dev.properties[k] for k in dev.properties}
        devpath = props.get("DEVPATH", "")
        if devpath.startswith("/devices/virtual/") or dev.parent is None:
            continue
        parent = dev.parent
        driver = (
            props.get("ID_NET_DRIVER") or parent.driver or parent.properties.get("DRIVER") or None
        )
        carrier = _attr(dev, "carrier")
        speed = _int_attr(dev, "speed")
        nics.append(
            Nic(
                name=dev.sys_name,
                syspath=dev.sys_path,
                mac=_attr(dev, "address"),
                driver=driver,
                operstate=_attr(dev, "operstate"),
                carrier=None if carrier is None else carrier == "1",
                speed_mbps=speed if speed is not None and speed >= 0 else None,
                net_names={k: v for k, v in props.items() if k.startswith("ID_NET_NAME")},
                properties=props,
            )
        )
    nics.sort(key=lambda n: _natural(n.name))
    return nics


def read_inventory(context: pyudev.Context | None = None, root: Path = Path("/")) -> Inventory:
    ctx = context or pyudev.Context()
    return Inventory(disks=list_disks(ctx, root), nics=list_nics(ctx))


def device_info(inventory: Inventory, kind: str = "all") -> dict[str, dict[str, dict[str, str]]]:
    """udev properties per install-target disk and per NIC, in the shape of
    Proxmox's `run-env-udev.json`: `{"disks": {"0": {...}}, "nics": {"eno1": {...}}}`.

    Disk keys are indexes into the install targets sorted by name, the same
    indexes the installer's disk selection uses.
    """
    out: dict[str, dict[str, dict[str, str]]] = {}
    if kind in ("disk", "all"):
        out["disks"] = {
            str(i): dict(sorted(d.properties.items()))
            for i, d in enumerate(inventory.install_targets)
        }
    if kind in ("network", "all"):
        out["nics"] = {n.name: dict(sorted(n.properties.items())) for n in inventory.nics}
    return out
