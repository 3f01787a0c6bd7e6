"""GRUB on the installed disk, for BIOS and UEFI both (so the disk boots
either way): the platform modules copied to /boot/grub, a menu in
/boot/grub/grub.cfg, core.img in the BIOS boot partition with boot.img in the
MBR, and GRUB at the removable path EFI/BOOT/BOOTX64.EFI of the ESP (found by
any UEFI firmware without NVRAM entries). Same images as the `disk` output
makes, from the installed tree's own GRUB packages."""

from __future__ import annotations

import shutil
from pathlib import Path

from appliance.installer.disk import Volumes
from appliance.outputs import _boot
from appliance.outputs.disk import install_bios_boot
from appliance.runner import run

# Beyond what every image of ours has: the root file system is on LVM.
EXTRA_MODULES = ("lvm", "xfs")

ENTRIES = [
    {"id": "default", "title": "appliance hypervisor host", "cmdline": ""},
    {"id": "serial", "title": "appliance hypervisor host (serial console)",
     "cmdline": _boot.SERIAL_CMDLINE},
]


def install(target: Path, vols: Volumes, root_uuid: str, cmdline: str = "quiet") -> None:
    early = (f"search --no-floppy --fs-uuid --set=root {root_uuid}\n"
             "set prefix=($root)/boot/grub\n")
    grub = target / "boot/grub"
    grub.mkdir(parents=True, exist_ok=True)
    for fw in _boot.FIRMWARES:
        dest = grub / _boot.GRUB_PLATFORM[fw]
        shutil.rmtree(dest, ignore_errors=True)
        shutil.copytree(_boot.grub_dir(target, fw), dest)
    entries = [dict(e, cmdline=" ".join(x for x in (cmdline, e["cmdline"]) if x))
               for e in ENTRIES]
    (grub / "grub.cfg").write_text(_boot.render_menu(
        "appliance", "installed", 5, entries, f"root=/dev/mapper/{_vg_root(vols)} ro",
        "/vmlinuz", "/initrd.img"))
    early_file = grub / "early.cfg"
    early_file.write_text(early)
    try:
        core = grub / "i386-pc/core.img"
        run(_boot.grub_mkimage_argv(target, "bios", "i386-pc", early_file, core, EXTRA_MODULES),
            what="grub-mkimage (BIOS)")
        install_bios_boot(Path(vols.disk), _boot.grub_dir(target, "bios") / "boot.img", core,
                          vols.bios_start, vols.bios_length)
        efi = target / "boot/efi/EFI/BOOT/BOOTX64.EFI"
        efi.parent.mkdir(parents=True, exist_ok=True)
        run(_boot.grub_mkimage_argv(target, "uefi", "x86_64-efi", early_file, efi,
                                    EXTRA_MODULES), what="grub-mkimage (UEFI)")
    finally:
        early_file.unlink(missing_ok=True)


def _vg_root(vols: Volumes) -> str:
    # /dev/appliance/root -> appliance-root (device-mapper name; dashes doubled)
    vg, lv = vols.root.split("/")[-2:]
    return f"{vg.replace('-', '--')}-{lv.replace('-', '--')}"
