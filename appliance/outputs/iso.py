"""iso: a hybrid live ISO that boots on BIOS and UEFI, as a CD and written raw
to a USB stick. The tree is a squashfs booted by Debian's live-boot; GRUB
(built from the tree's own GRUB packages) shows the recipe's menu."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from appliance.engine.context import OutputContext
from appliance.outputs import _boot, squashfs
from appliance.recipe.model import Recipe
from appliance.recipe.schema import Option, OptionError, Table, boolean, integer, string

NAME = "iso"
HELP = (
    "A hybrid ISO (BIOS and UEFI; CD-ROM or raw on a USB stick): the tree as a squashfs "
    "booted live with Debian's live-boot (the recipe must install live-boot, a kernel and "
    "GRUB for each firmware). Boot menu entries and kernel command line come from the "
    "recipe; an entry with the serial console (ttyS0) is there by default."
)
TOOLS = ("mksquashfs", "xorriso", "grub-mkimage", "mkfs.fat", "mmd", "mcopy")

OPTIONS = Table((
    Option("enabled", boolean(), True, "write this output", kind="boolean"),
    Option("filename", string(pattern=r"[A-Za-z0-9._-]+\.iso", what="file name (*.iso)"), None,
           "file name (default: <recipe name>.iso)"),
    Option("volume-label", string(pattern=r"[A-Z0-9_]{1,32}", what="ISO volume label "
           "(1-32 of A-Z 0-9 _)"), None, "ISO volume label (default: the recipe name in "
           "upper case)"),
    *_boot.boot_options(),
    Option("auto-entry", string(pattern=r"[a-z0-9][a-z0-9-]*", what="entry id"), None,
           "entry booted at once when the ISO carries /appliance/auto-install.toml (added by "
           "`appliance prepare-iso` for unattended installs)"),
    Option("compression-level", integer(minimum=1, maximum=22), 6,
           "zstd level of the squashfs (1-22)", kind="integer"),
    Option("block-size", string(choices=("128K", "256K", "512K", "1M")), "1M",
           "squashfs block size"),
))

LIVE_CMDLINE = "boot=live components"
EFI_IMAGE_SIZE = 4 << 20


def validate(options: dict[str, Any], recipe: Recipe) -> None:
    if not options["firmware"]:
        raise OptionError("give at least one firmware (bios, uefi)", ["firmware"])
    _boot.validate_entries(options)
    auto = options["auto-entry"]
    if auto is not None:
        ids = [e["id"] for e in _boot.menu_entries(options, recipe)]
        if auto not in ids:
            raise OptionError(f"{auto!r} is not one of the menu entries ({', '.join(ids)})",
                              ["auto-entry"])
    _boot.require_packages(recipe, options["firmware"], {"live-boot": ("live-boot",)}, NAME)


def volume_label(options: dict[str, Any], recipe: Recipe) -> str:
    label = options["volume-label"]
    if label:
        return str(label)
    return "".join(c if c.isalnum() else "_" for c in recipe.name.upper())[:32]


def write(ctx: OutputContext) -> list[Path]:
    o = ctx.options
    firmware: list[str] = list(o["firmware"])  # type: ignore[call-overload]
    root = ctx.scratch / "iso-root"
    kernel = _boot.find_kernel(ctx.tree)
    _boot.copy_file(kernel.vmlinuz, root / "live/vmlinuz")
    _boot.copy_file(kernel.initrd, root / "live/initrd.img")
    squashfs.make(ctx, ctx.tree, root / "live/filesystem.squashfs",
                  int(o["compression-level"]), str(o["block-size"]))  # type: ignore[call-overload]

    # GRUB finds the ISO's file system by this file (the ISO may be a CD or a
    # partition-less USB stick, and other media may be attached).
    stamp = f".appliance-{_boot.derived_uuid(ctx.recipe, 'iso').hex[:16]}"
    (root / stamp).write_text(f"{ctx.recipe.name}\n")
    early = (f"search --no-floppy --file --set=root /{stamp}\n"
             "set prefix=($root)/boot/grub\n")
    grub = root / "boot/grub"
    grub.mkdir(parents=True)
    (grub / "grub.cfg").write_text(_boot.render_grub_cfg(
        ctx.recipe, o, "live ISO", LIVE_CMDLINE, "/live/vmlinuz", "/live/initrd.img"))

    dest = ctx.scratch / str(o["filename"] or f"{ctx.recipe.name}.iso")
    # Reproducible: every file dated SOURCE_DATE_EPOCH (xorriso also takes its
    # volume dates and UUIDs from SOURCE_DATE_EPOCH in the environment).
    argv: list[str | Path] = [
        "xorriso", "-volume_date", "all_file_dates", "set_to_mtime",
        "-as", "mkisofs", "-graft-points",
        "--modification-date=" + time.strftime("%Y%m%d%H%M%S00", time.gmtime(ctx.epoch)),
        "-V", volume_label(o, ctx.recipe),
    ]
    if "bios" in firmware:
        (grub / "i386-pc").mkdir()
        _boot.grub_image(ctx, "bios", "i386-pc-eltorito", early, grub / "i386-pc/eltorito.img")
        argv += [
            "-b", "boot/grub/i386-pc/eltorito.img", "-no-emul-boot", "-boot-load-size", "4",
            "-boot-info-table", "--grub2-boot-info",
            "--grub2-mbr", _boot.grub_dir(ctx.tree, "bios") / "boot_hybrid.img",
        ]
    if "uefi" in firmware:
        efi = _boot.grub_image(ctx, "uefi", "x86_64-efi", early, ctx.scratch / "BOOTX64.EFI")
        vol_id = _boot.derived_uuid(ctx.recipe, "iso/efi").hex[:8]
        _boot.fat_image(ctx, grub / "efi.img", EFI_IMAGE_SIZE, vol_id,
                        {"EFI/BOOT/BOOTX64.EFI": efi})
        argv += ["--efi-boot", "boot/grub/efi.img", "-efi-boot-part", "--efi-boot-image"]
    _boot.clamp_tree(root, ctx.epoch)
    argv += ["--protective-msdos-label", "-o", dest, "-r", root,
             "--sort-weight", "0", "/", "--sort-weight", "1", "/boot"]
    ctx.host(argv, what="xorriso")
    return [dest]


def usage(path: Path) -> str:
    return (
        "hybrid BIOS/UEFI ISO. Boot it:\n"
        f"  on a server: write it to a USB stick: dd if={path} of=/dev/sdX bs=4M conv=fsync\n"
        "  in QEMU (with a blank 16 GiB target disk; -accel kvm -cpu host where VT-x/AMD-V "
        "works):\n"
        "    truncate -s 16G disk.img\n"
        "    qemu-system-x86_64 -machine q35 -m 2048 -smp 2 -accel tcg -cpu max -nographic \\\n"
        f"      -cdrom {path} -drive file=disk.img,format=raw,if=virtio\n"
        "  (choose the serial-console entry with -nographic)\n"
        f"  unattended: appliance prepare-iso {path} --answer answer.toml -o auto.iso"
    )
