"""Read a file system on an LVM volume inside a disk image, without
device-mapper (this build host's kernel has none): find the logical volume's
extents in the VG metadata on the PV and loop-mount them by offset. Works for
linear volumes in a fresh VG, which is what the installer makes."""

from __future__ import annotations

import contextlib
import re
import struct
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import parted  # type: ignore[import-untyped]

SECTOR = 512
MDA_MAGIC = b" LVM2 x[5A%r0N*>"


def lv_span(image: Path, lv: str, partition: int = 3) -> tuple[int, int]:
    """(byte offset, byte length) of logical volume `lv` in `image`."""
    disk = parted.newDisk(parted.getDevice(str(image)))
    part = next(p for p in disk.partitions if p.number == partition)
    pv = part.geometry.start * SECTOR
    with open(image, "rb") as f:
        f.seek(pv + SECTOR)
        if f.read(8) != b"LABELONE":
            raise AssertionError(f"{image}: partition {partition} is not an LVM PV")
        f.seek(pv + 4096)
        mda = f.read(SECTOR)
        if mda[4:20] != MDA_MAGIC:
            raise AssertionError(f"{image}: no LVM metadata area")
        off, size = struct.unpack_from("<QQ", mda, 40)
        f.seek(pv + 4096 + off)
        text = f.read(size).decode()
    extent = int(re.search(r"extent_size = (\d+)", text).group(1)) * SECTOR  # type: ignore[union-attr]
    pe_start = int(re.search(r"pe_start = (\d+)", text).group(1)) * SECTOR  # type: ignore[union-attr]
    body = text[text.index(f"\n{lv} {{") if f"\n{lv} {{" in text else text.index(f"{lv} {{"):]
    seg = re.search(r"extent_count = (\d+).*?stripes = \[\s*\"pv0\", (\d+)", body, re.S)
    if seg is None:
        raise AssertionError(f"{image}: no linear segment for LV {lv}")
    count, first = int(seg.group(1)), int(seg.group(2))
    return pv + pe_start + first * extent, count * extent


def lv_fstype(image: Path, lv: str = "root") -> str:
    """The file system type blkid finds on logical volume `lv` (ext4, xfs...)."""
    offset, length = lv_span(image, lv)
    out = subprocess.run(["blkid", "-p", "-O", str(offset), "-S", str(length), "-s", "TYPE",
                          "-o", "value", str(image)], capture_output=True, text=True, check=False)
    return out.stdout.strip()


@contextlib.contextmanager
def mounted_lv(image: Path, lv: str = "root") -> Iterator[Path]:
    """The LV mounted read-only, whatever its file system (ext4 or xfs: the
    type blkid finds is given to mount, which needs it for a loop by offset)."""
    offset, length = lv_span(image, lv)
    fstype = lv_fstype(image, lv)
    if fstype not in ("ext4", "xfs"):
        raise AssertionError(f"{image}: LV {lv} holds {fstype or 'no file system'!r}")
    with tempfile.TemporaryDirectory(prefix="lv-") as mnt:
        subprocess.run(["mount", "-t", fstype, "-o", f"ro,loop,offset={offset},sizelimit={length}",
                        str(image), mnt], check=True)
        try:
            yield Path(mnt)
        finally:
            subprocess.run(["umount", mnt], check=False)
