"""disk: a raw disk image (and optionally qcow2) that boots on BIOS and UEFI.

GPT made with pyparted: BIOS boot partition (GRUB's core.img), EFI system
partition (GRUB at the removable path EFI/BOOT/BOOTX64.EFI), ext4 root file
system filling the rest. The root file system is made from the tree with
`mkfs.ext4 -d`; every UUID/GUID is derived from the recipe, never random."""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import parted  # type: ignore[import-untyped]

from appliance.engine import mounts
from appliance.engine.context import OutputContext
from appliance.errors import BuildError
from appliance.outputs import _boot
from appliance.recipe.model import Recipe
from appliance.recipe.schema import Option, OptionError, Table, boolean, string

NAME = "disk"
HELP = (
    "A raw GPT disk image (and a qcow2 copy with `qcow2 = true`) that boots on BIOS and "
    "UEFI: BIOS boot partition, EFI system partition, ext4 root file system with fstab by "
    "UUID. Partition table made with pyparted; all UUIDs derived from the recipe."
)
TOOLS = ("mkfs.ext4", "mkfs.fat", "mmd", "mcopy", "grub-mkimage", "qemu-img", "du")

SIZE = string(pattern=r"auto|[0-9]+\s*[KMGTkmgt]?(i?B)?", what="size (e.g. 4G, 512M or auto)")
OPTIONS = Table((
    Option("enabled", boolean(), True, "write this output", kind="boolean"),
    Option("filename", string(pattern=r"[A-Za-z0-9._-]+\.(img|raw)", what="file name "
           "(*.img or *.raw)"), None, "file name (default: <recipe name>.img)"),
    Option("size", SIZE, "auto", "size of the whole disk image (auto: the tree plus 25% and "
           "256 MiB free)"),
    Option("esp-size", SIZE, "64M", "size of the EFI system partition"),
    Option("bios-boot-size", SIZE, "1M", "size of the BIOS boot partition"),
    Option("root-label", string(pattern=r"[A-Za-z0-9_-]{1,16}", what="ext4 label"), "root",
           "label of the root file system"),
    Option("qcow2", boolean(), False, "also write <name>.qcow2 (qemu-img convert)",
           kind="boolean"),
    *_boot.boot_options(),
))

MiB = 1 << 20
SECTOR = 512
MIN_ROOT = 64 * MiB
MIN_ESP = 16 * MiB
# GPT partition table at the start and the backup at the end, 1 MiB each (aligned).
GPT_OVERHEAD = 2 * MiB


def _sizes(options: dict[str, Any]) -> tuple[int | None, int, int]:
    """(disk size or None for auto, ESP size, BIOS boot size), validated."""
    try:
        esp = _boot.parse_size(options["esp-size"])
    except OptionError as e:
        raise e.prefixed("esp-size") from None
    try:
        bios = _boot.parse_size(options["bios-boot-size"])
    except OptionError as e:
        raise e.prefixed("bios-boot-size") from None
    if esp < MIN_ESP:
        raise OptionError(f"{options['esp-size']} is too small for an EFI system partition "
                          f"(at least {MIN_ESP // MiB}M)", ["esp-size"])
    if bios < MiB or bios % MiB:
        raise OptionError("the BIOS boot partition must be a whole number of MiB, at least 1M",
                          ["bios-boot-size"])
    if esp % MiB:
        raise OptionError("the EFI system partition must be a whole number of MiB",
                          ["esp-size"])
    if options["size"] == "auto":
        return None, esp, bios
    try:
        size = _boot.parse_size(options["size"])
    except OptionError as e:
        raise e.prefixed("size") from None
    need = GPT_OVERHEAD + bios + esp + MIN_ROOT
    if size < need:
        raise OptionError(
            f"{options['size']} is too small: GPT {GPT_OVERHEAD // MiB}M + BIOS boot "
            f"{bios // MiB}M + ESP {esp // MiB}M + root at least {MIN_ROOT // MiB}M "
            f"need {need // MiB}M", ["size"])
    return size, esp, bios


def validate(options: dict[str, Any], recipe: Recipe) -> None:
    if not options["firmware"]:
        raise OptionError("give at least one firmware (bios, uefi)", ["firmware"])
    _sizes(options)
    _boot.validate_entries(options)
    _boot.require_packages(recipe, options["firmware"], {}, NAME)


@dataclass
class Layout:
    disk: int  # bytes
    parts: list[tuple[str, int, int]]  # (name, start, length) in bytes

    def part(self, name: str) -> tuple[int, int]:
        for n, start, length in self.parts:
            if n == name:
                return start, length
        raise KeyError(name)


def layout(disk_size: int | None, esp: int, bios: int, tree_bytes: int) -> Layout:
    if disk_size is None:
        root = int(tree_bytes * 1.25) + 256 * MiB
        root = -(-root // (64 * MiB)) * (64 * MiB)
        disk_size = GPT_OVERHEAD + bios + esp + root
    root = (disk_size - GPT_OVERHEAD - bios - esp) // MiB * MiB
    start = MiB
    parts = []
    for name, length in (("bios", bios), ("esp", esp), ("root", root)):
        parts.append((name, start, length))
        start += length
    return Layout(disk_size, parts)


def write(ctx: OutputContext) -> list[Path]:
    o = ctx.options
    firmware: list[str] = list(o["firmware"])  # type: ignore[call-overload]
    disk_size, esp_size, bios_size = _sizes(o)
    used = int(ctx.host(["du", "-s", "-x", "-B1", ctx.tree], what="du", capture=True)
               .stdout.split()[0])
    lay = layout(disk_size, esp_size, bios_size, used)
    root_start, root_size = lay.part("root")
    if used * 1.05 + 32 * MiB > root_size:
        raise BuildError(
            f"output disk: the tree needs about {used * 1.05 // MiB + 32:.0f} MiB but the root "
            f"partition of a {o['size']} disk has {root_size // MiB} MiB; raise `size` "
            "(or use size = \"auto\")")
    rec = ctx.recipe
    root_uuid = _boot.derived_uuid(rec, "disk/root-fs")
    esp_id = _boot.derived_uuid(rec, "disk/esp-fs").hex[:8]
    kernel = _boot.find_kernel(ctx.tree)
    early = (f"search --no-floppy --fs-uuid --set=root {root_uuid}\n"
             "set prefix=($root)/boot/grub\n")

    # The root file system: the tree plus fstab, GRUB's menu and modules.
    upper, view = ctx.scratch / "upper", ctx.scratch / "root"
    upper.mkdir()
    root_img = ctx.scratch / "root.ext4"
    with mounts.overlay([ctx.tree], upper, ctx.scratch / "overlay-work", view):
        (view / "etc/fstab").write_text(
            "# <file system> <mount point> <type> <options> <dump> <pass>\n"
            # x-systemd.growfs: if the partition is made larger later (e.g. the
            # image written to a bigger disk), the file system follows at boot.
            f"UUID={root_uuid} / ext4 errors=remount-ro,x-systemd.growfs 0 1\n"
            f"UUID={esp_id[:4].upper()}-{esp_id[4:].upper()} /boot/efi vfat "
            "umask=0077,nofail 0 0\n")
        (view / "boot/efi").mkdir(parents=True, exist_ok=True)
        grub = view / "boot/grub"
        grub.mkdir(parents=True, exist_ok=True)
        for fw in firmware:
            ctx.host(["cp", "-a", _boot.grub_dir(ctx.tree, fw), grub], what="copying GRUB")
        # Debian keeps /vmlinuz and /initrd.img pointing at the newest kernel:
        # through them the menu survives kernel upgrades on the running system.
        if (view / "vmlinuz").is_symlink() and (view / "initrd.img").is_symlink():
            vmlinuz, initrd = "/vmlinuz", "/initrd.img"
        else:
            vmlinuz, initrd = f"/boot/{kernel.vmlinuz.name}", f"/boot/{kernel.initrd.name}"
        (grub / "grub.cfg").write_text(_boot.render_grub_cfg(
            rec, o, "disk", f"root=UUID={root_uuid} ro", vmlinuz, initrd))
        with open(root_img, "wb") as f:
            f.truncate(root_size)
        ctx.host(["mkfs.ext4", "-q", "-F", "-L", str(o["root-label"]), "-U", str(root_uuid),
                  "-E", f"root_owner=0:0,hash_seed={_boot.derived_uuid(rec, 'disk/htree')}",
                  "-d", view, root_img], what="mkfs.ext4")

    esp_files: dict[str, Path] = {}
    if "uefi" in firmware:
        efi = _boot.grub_image(ctx, "uefi", "x86_64-efi", early, ctx.scratch / "BOOTX64.EFI")
        esp_files["EFI/BOOT/BOOTX64.EFI"] = efi
    esp_img = _boot.fat_image(ctx, ctx.scratch / "esp.fat", esp_size, esp_id, esp_files)

    dest = ctx.scratch / str(o["filename"] or f"{rec.name}.img")
    with open(dest, "wb") as f:
        f.truncate(lay.disk)
    partition(dest, lay)
    set_gpt_guids(dest, _boot.derived_uuid(rec, "disk/gpt"),
                  [_boot.derived_uuid(rec, f"disk/part/{n}") for n, _, _ in lay.parts])
    copy_into(esp_img, dest, lay.part("esp")[0])
    copy_into(root_img, dest, root_start)
    esp_img.unlink()
    root_img.unlink()
    if "bios" in firmware:
        core = _boot.grub_image(ctx, "bios", "i386-pc", early, ctx.scratch / "core.img")
        install_bios_boot(dest, _boot.grub_dir(ctx.tree, "bios") / "boot.img", core,
                          *lay.part("bios"))
    products = [dest]
    if o["qcow2"]:
        qcow = dest.with_suffix(".qcow2")
        ctx.host(["qemu-img", "convert", "-f", "raw", "-O", "qcow2", dest, qcow],
                 what="qemu-img convert")
        products.append(qcow)
    return products


def partition(image: Path, lay: Layout) -> None:
    """Write the GPT with pyparted: BIOS boot, ESP, then Linux root (or an
    LVM physical volume, the installer's layout). Works on image files and
    on block devices alike."""
    dev = parted.getDevice(str(image))
    disk = parted.freshDisk(dev, "gpt")
    for name, start, length in lay.parts:
        geom = parted.Geometry(device=dev, start=start // SECTOR, length=length // SECTOR)
        part = parted.Partition(disk=disk, type=parted.PARTITION_NORMAL, geometry=geom)
        disk.addPartition(partition=part, constraint=parted.Constraint(exactGeom=geom))
        part.set_name(name)
        if name == "bios":
            part.setFlag(parted.PARTITION_BIOS_GRUB)
        elif name == "esp":
            part.setFlag(parted.PARTITION_BOOT)  # on GPT: the EFI system partition type
        elif name == "lvm":
            part.setFlag(parted.PARTITION_LVM)
    disk.commit()


def set_gpt_guids(image: Path, disk_guid: Any, part_guids: list[Any]) -> None:
    """libparted (3.5) only makes random GUIDs: replace the disk GUID and the
    partitions' unique GUIDs in both GPT copies with derived ones, and fix
    the CRCs."""
    with open(image, "r+b") as f:
        f.seek(SECTOR)
        primary = f.read(SECTOR)
        if primary[:8] != b"EFI PART":
            raise BuildError(f"output disk: {image.name} has no GPT header after partitioning")
        backup_lba = struct.unpack_from("<Q", primary, 32)[0]
        for lba in (1, backup_lba):
            f.seek(lba * SECTOR)
            hdr = bytearray(f.read(SECTOR))
            hsize, = struct.unpack_from("<I", hdr, 12)
            entries_lba, count, esize = struct.unpack_from("<QII", hdr, 72)
            f.seek(entries_lba * SECTOR)
            entries = bytearray(f.read(count * esize))
            n = 0
            for i in range(count):
                off = i * esize
                if entries[off:off + 16] == bytes(16):
                    continue
                entries[off + 16:off + 32] = part_guids[n].bytes_le
                n += 1
            hdr[56:72] = disk_guid.bytes_le
            struct.pack_into("<I", hdr, 88, zlib.crc32(entries))
            struct.pack_into("<I", hdr, 16, 0)
            struct.pack_into("<I", hdr, 16, zlib.crc32(bytes(hdr[:hsize])))
            f.seek(entries_lba * SECTOR)
            f.write(entries)
            f.seek(lba * SECTOR)
            f.write(hdr)


def copy_into(src: Path, image: Path, offset: int, chunk: int = 1 << 20) -> None:
    """Copy a file system image into the disk image, leaving zero blocks sparse."""
    with open(src, "rb") as fin, open(image, "r+b") as fout:
        pos = offset
        while block := fin.read(chunk):
            if block.count(0) != len(block):
                fout.seek(pos)
                fout.write(block)
            pos += len(block)


def install_bios_boot(image: Path, boot_img: Path, core_img: Path, start: int,
                      length: int) -> None:
    """What grub-bios-setup does for a GPT disk: core.img into the BIOS boot
    partition (its first sector's block list pointing at the rest), boot.img
    into the MBR's code area pointing at core.img."""
    core = bytearray(core_img.read_bytes())
    if len(core) > length:
        raise BuildError(f"output disk: GRUB core.img ({len(core)} bytes) does not fit the BIOS "
                         f"boot partition ({length} bytes); raise bios-boot-size")
    first = start // SECTOR
    # diskboot.img's block list (12 bytes at the end of the first sector):
    # start sector (u64), sector count (u16), load segment (u16).
    nsect = -(-len(core) // SECTOR) - 1
    struct.pack_into("<QH", core, SECTOR - 12, first + 1, nsect)
    if struct.unpack_from("<H", core, SECTOR - 24 + 8)[0] != 0:
        raise BuildError("output disk: unexpected GRUB core.img layout (block list)")
    boot = bytearray(boot_img.read_bytes()[:SECTOR])
    with open(image, "r+b") as f:
        f.seek(0)
        mbr = f.read(SECTOR)
        boot[0x03:0x5a] = mbr[0x03:0x5a]  # BPB area as on disk (zeros)
        struct.pack_into("<Q", boot, 0x5c, first)  # kernel sector: core.img
        boot[0x64] = 0xFF  # boot drive: use the one the BIOS passes
        boot[0x66:0x68] = b"\x90\x90"  # hard disk: skip the drive number check
        f.seek(0)
        f.write(bytes(boot[:0x1b8]) + mbr[0x1b8:])
        f.seek(start)
        f.write(core)
