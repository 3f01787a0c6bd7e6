"""What the bootable outputs of test-boot contain (no boot needed): the ISO's
boot records, the disk's GPT/ESP/ext4 with derived UUIDs, the netboot files."""

from __future__ import annotations

import json
import struct
import subprocess
import sys
import uuid
from pathlib import Path

import parted
import pytest

from appliance.engine import build as engine
from appliance.outputs import _boot, disk

from .conftest import product

pytestmark = pytest.mark.e2e
MiB = 1 << 20


def sh(*argv: str | Path) -> str:
    return subprocess.run([str(a) for a in argv], check=True, capture_output=True,
                          text=True).stdout


def test_iso_has_bios_and_uefi_boot_records_and_the_recipe_label(
        boot_build: engine.BuildResult) -> None:
    iso = product(boot_build, ".iso")
    report = sh("xorriso", "-indev", iso, "-report_el_torito", "plain", "-pvd_info")
    assert "Volume Id    : APPLIANCE_TEST" in report
    assert "El Torito boot img :   1  BIOS" in report
    assert "El Torito boot img :   2  UEFI" in report
    # Written raw to a USB stick: an MBR boot record for BIOS (boot_hybrid.img)
    # and a GPT whose EFI system partition is the EFI image, for UEFI.
    with open(iso, "rb") as f:
        mbr = f.read(512)
        gpt = f.read(512)
        entries = f.read(128 * 128)
    assert mbr[510:512] == b"\x55\xaa" and mbr[446 + 4] == 0xEE
    assert gpt[:8] == b"EFI PART"
    esp_type = uuid.UUID("c12a7328-f81f-11d2-ba4b-00a0c93ec93b").bytes_le
    assert any(entries[i:i + 16] == esp_type for i in range(0, len(entries), 128))
    files = sh("xorriso", "-indev", iso, "-find", "/live", "-type", "f")
    for f in ("/live/vmlinuz", "/live/initrd.img", "/live/filesystem.squashfs"):
        assert f"'{f}'" in files


def test_iso_menu_has_serial_entry_and_boot_check_switch(
        boot_build: engine.BuildResult, tmp_path: Path) -> None:
    iso = product(boot_build, ".iso")
    sh("xorriso", "-osirrox", "on", "-indev", iso, "-extract", "/boot/grub/grub.cfg",
       tmp_path / "grub.cfg")
    cfg = (tmp_path / "grub.cfg").read_text()
    assert 'menuentry "Small bootable Debian system for boot tests (ISO, disk, netboot) ' \
           '(serial console)" --id "serial"' in cfg
    assert "linux /live/vmlinuz boot=live components console=tty0 console=ttyS0,115200n8 " \
           "$appliance_check" in cfg
    assert "serial --unit=0 --speed=115200" in cfg
    assert 'smbios --type 1 --get-string 7' in cfg


def gpt_guids(image: Path) -> tuple[uuid.UUID, list[uuid.UUID]]:
    with open(image, "rb") as f:
        f.seek(512)
        hdr = f.read(92)
        lba, count, size = struct.unpack_from("<QII", hdr, 72)
        f.seek(lba * 512)
        entries = f.read(count * size)
    parts = [uuid.UUID(bytes_le=entries[i * size + 16:i * size + 32]) for i in range(count)
             if entries[i * size:i * size + 16] != bytes(16)]
    return uuid.UUID(bytes_le=hdr[56:72]), parts


def test_disk_gpt_layout_made_with_pyparted(boot_build: engine.BuildResult) -> None:
    img = product(boot_build, ".img")
    d = parted.newDisk(parted.getDevice(str(img)))
    assert d.type == "gpt"
    parts = d.partitions
    assert [p.name for p in parts] == ["bios", "esp", "root"]
    assert parts[0].getFlag(parted.PARTITION_BIOS_GRUB)
    assert parts[1].getFlag(parted.PARTITION_BOOT)
    assert parts[0].geometry.start == 2048 and parts[0].getLength("B") == MiB
    assert parts[1].getLength("B") == 64 * MiB
    # The root partition reaches the end of the disk (less the backup GPT, 1 MiB aligned).
    assert (parts[2].geometry.end + 1) * 512 == img.stat().st_size - MiB


def test_disk_uuids_are_derived_from_the_recipe(boot_build: engine.BuildResult) -> None:
    img = product(boot_build, ".img")
    rec = boot_build.recipe
    disk_guid, part_guids = gpt_guids(img)
    assert disk_guid == _boot.derived_uuid(rec, "disk/gpt")
    assert part_guids == [_boot.derived_uuid(rec, f"disk/part/{n}") for n in
                          ("bios", "esp", "root")]
    d = parted.newDisk(parted.getDevice(str(img)))
    root_start = d.partitions[2].geometry.start * 512
    with open(img, "rb") as f:
        f.seek(root_start + 1024 + 0x68)  # ext4 superblock s_uuid
        assert uuid.UUID(bytes=f.read(16)) == _boot.derived_uuid(rec, "disk/root-fs")
    # ...and do not depend on anything but the recipe: another process, which
    # loads the recipe afresh, derives the GUID that is on the disk.
    fresh = sh(sys.executable, "-c",
               "from appliance.recipe import loader; from appliance.outputs import _boot; "
               "print(_boot.derived_uuid(loader.load('test-boot'), 'disk/gpt'))")
    assert uuid.UUID(fresh.strip()) == disk_guid
    assert len({disk_guid, *part_guids}) == 4  # one per purpose


def test_disk_root_has_fstab_by_uuid_and_grub(boot_build: engine.BuildResult,
                                               tmp_path: Path) -> None:
    img = product(boot_build, ".img")
    d = parted.newDisk(parted.getDevice(str(img)))
    root = d.partitions[2].geometry
    part = tmp_path / "root.ext4"
    part.write_bytes(b"")
    with open(part, "r+b") as f:
        f.truncate(root.length * 512)
    with open(img, "rb") as src, open(part, "r+b") as dst:
        src.seek(root.start * 512)
        for i in range(0, root.length * 512, MiB):
            block = src.read(MiB)
            if block.count(0) != len(block):
                dst.seek(i)
                dst.write(block)
    fstab = sh("debugfs", "-R", "cat /etc/fstab", part)
    root_uuid = _boot.derived_uuid(boot_build.recipe, "disk/root-fs")
    assert f"UUID={root_uuid} / ext4 errors=remount-ro,x-systemd.growfs 0 1" in fstab
    grub_cfg = sh("debugfs", "-R", "cat /boot/grub/grub.cfg", part)
    assert f"linux /vmlinuz root=UUID={root_uuid} ro" in grub_cfg
    assert "initrd /initrd.img" in grub_cfg
    # The file system fills its partition.
    info = sh("dumpe2fs", "-h", part)
    blocks = int(next(ln for ln in info.splitlines() if ln.startswith("Block count:"))
                 .split()[-1])
    assert blocks * 4096 == root.length * 512


def test_disk_esp_has_removable_path_and_mbr_points_at_core(
        boot_build: engine.BuildResult) -> None:
    img = product(boot_build, ".img")
    listing = sh("mdir", "-b", "-i", f"{img}@@{2 * MiB}", "::/EFI/BOOT")
    assert "BOOTX64.EFI" in listing.upper()
    with open(img, "rb") as f:
        mbr = f.read(512)
        f.seek(MiB)
        core = f.read(512)
    assert struct.unpack_from("<Q", mbr, 0x5c)[0] == 2048  # boot.img -> core.img sector
    assert struct.unpack_from("<Q", core, 500)[0] == 2049  # core's block list -> the rest
    assert mbr[510:512] == b"\x55\xaa"
    esp_id = _boot.derived_uuid(boot_build.recipe, "disk/esp-fs").hex[:8].upper()
    blkid = sh("blkid", "-p", "-O", str(2 * MiB), "-o", "export", img)
    assert f"UUID={esp_id[:4]}-{esp_id[4:]}" in blkid.splitlines()  # as in fstab


def test_disk_qcow2_matches_the_raw_size(boot_build: engine.BuildResult) -> None:
    info = json.loads(sh("qemu-img", "info", "--output=json", product(boot_build, ".qcow2")))
    assert info["format"] == "qcow2"
    assert info["virtual-size"] == product(boot_build, ".img").stat().st_size


def test_netboot_has_kernel_initrd_squashfs_and_ipxe(boot_build: engine.BuildResult) -> None:
    nb = product(boot_build, ".netboot")
    assert sorted(p.name for p in nb.iterdir()) == [
        "boot.ipxe", "filesystem.squashfs", "initrd.img", "netboot.json", "vmlinuz"]
    assert (nb / "filesystem.squashfs").read_bytes()[:4] == b"hsqs"
    ipxe = (nb / "boot.ipxe").read_text()
    assert ipxe.startswith("#!ipxe\n")
    assert "fetch=http://10.0.2.100/filesystem.squashfs" in ipxe
    assert "initrd http://10.0.2.100/initrd.img" in ipxe


def test_layout_auto_size_leaves_room_and_aligns() -> None:
    lay = disk.layout(None, 64 * MiB, MiB, 700 * MiB)
    start, length = lay.part("root")
    assert start == 66 * MiB and length % (64 * MiB) == 0 and length >= 700 * MiB * 1.25
    assert lay.disk == start + length + MiB


def test_iso_is_reproducible(boot_build: engine.BuildResult, build_cache: Path,
                             tmp_path: Path) -> None:
    """A second build of the ISO, from a cold cache, gives the same bytes.

    Only the bootstrap layer (mmdebstrap) is taken from the session's cache;
    every later step (hostname, timezone, files, services, finalize) runs
    again in an empty cache and the ISO (squashfs, GRUB images, xorriso) is
    packed again: that is where this project's own nondeterminism
    (timestamps, random ids, ordering) would show.

    Why not two fully clean builds: measured on a 2-core machine, a clean
    ISO-only build of test-boot took 150 s, 144 s of it mmdebstrap; a second
    one would add ~2.5 min to CI for re-running Debian's bootstrap, whose
    reproducibility tests/engine's test_two_clean_builds_give_identical_squashfs
    already checks with two uncached builds. This variant costs ~8 s."""
    bootstrap = boot_build.steps[0]
    assert bootstrap.type == "bootstrap"
    cold = tmp_path / "cache"
    (cold / "layers").mkdir(parents=True)
    (cold / "layers" / bootstrap.id).symlink_to(build_cache / "layers" / bootstrap.id)
    again = engine.build("test-boot", outdir=tmp_path / "out", cache_dir=cold, formats=["iso"])
    assert again.steps[0].id == bootstrap.id
    assert again.built == [s.name for s in again.steps[1:]]  # all but bootstrap ran again
    assert len(again.built) >= 5
    first = next(p for p in boot_build.products if p.type == "iso")
    second = next(p for p in again.products if p.type == "iso")
    assert second.path != first.path
    assert second.sha256 == first.sha256
