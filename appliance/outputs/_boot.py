"""What the bootable outputs (iso, disk, netboot) share: their common recipe
options, checks that the recipe installs what booting needs, derived (never
random) identifiers, the kernel in the tree, GRUB images and the GRUB menu."""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jinja2

from appliance import paths
from appliance.engine.context import OutputContext
from appliance.errors import BuildError
from appliance.recipe.model import Recipe
from appliance.recipe.schema import (
    Option,
    OptionError,
    Table,
    integer,
    string,
    string_list,
    table_list,
)

FIRMWARES = ("bios", "uefi")

# Which Debian package puts the GRUB platform files (modules, boot images)
# into the tree, for each firmware; either name of a set is enough.
GRUB_PACKAGES = {
    "bios": ("grub-pc-bin", "grub-pc"),
    "uefi": ("grub-efi-amd64-bin", "grub-efi-amd64"),
}
GRUB_PLATFORM = {"bios": "i386-pc", "uefi": "x86_64-efi"}

# Modules built into every GRUB image we make: the early search for the boot
# file system, the menu, and reading the kernel. The rest of a platform's
# modules are not needed (and not shipped on ISOs).
GRUB_MODULES = (
    "normal", "configfile", "linux", "echo", "test", "true", "search", "search_fs_file",
    "search_fs_uuid", "search_label", "serial", "terminal", "smbios", "sleep", "part_gpt",
    "part_msdos", "iso9660", "fat", "ext2", "ls", "cat", "halt", "reboot",
)
GRUB_PLATFORM_MODULES = {"bios": ("biosdisk",), "uefi": ("efi_gop", "efi_uga", "all_video")}

SERIAL_CMDLINE = "console=tty0 console=ttyS0,115200n8"

ENTRY = Table((
    Option("id", string(pattern=r"[a-z0-9][a-z0-9-]*", what="entry id"), help="menu entry id"),
    Option("title", string(pattern=r"[^\"\\$\n]+", what="title (no quotes, $ or \\)"),
           help="menu title"),
    Option("cmdline", string(pattern=r"[^\"\\$\n;]*", what="kernel command line"), "",
           "kernel command line of this entry (after the output's `cmdline`)"),
))

KERNEL_ARG = r"[^\"\\$\n;]*"


def boot_options() -> tuple[Option, ...]:
    """Options of every bootable output (the menu and the firmware)."""
    return (
        Option("firmware", string_list(choices=FIRMWARES), list(FIRMWARES),
               "firmware the image boots on: bios, uefi or both", kind="list of strings"),
        Option("cmdline", string(pattern=KERNEL_ARG, what="kernel command line"), "",
               "kernel command line added to every boot menu entry"),
        Option("entries", table_list(ENTRY), None,
               "boot menu entries {id, title, cmdline} (default: the system on the screen, "
               "and on the serial console ttyS0 with id `serial`)", kind="list of tables"),
        Option("timeout", integer(minimum=0, maximum=600), 5, "seconds the boot menu waits",
               kind="integer"),
    )


def installed_packages(recipe: Recipe) -> set[str]:
    """Package names the recipe asks for by name (bootstrap include, packages
    install, minus packages remove); version and arch qualifiers dropped."""
    names: set[str] = set()
    for step in recipe.steps:
        add = step.options.get("include", []) if step.type == "bootstrap" else []
        if step.type == "packages":
            add = step.options.get("install", [])
            for p in step.options.get("remove", []):
                names.discard(_bare(p))
        names.update(_bare(p) for p in add)
    return names


def _bare(pkg: str) -> str:
    return re.split(r"[:=]", pkg, maxsplit=1)[0]


def require_packages(recipe: Recipe, firmware: list[str], extra: dict[str, tuple[str, ...]],
                     output: str) -> None:
    """Fail before any work if the tree would lack what this output boots with."""
    have = installed_packages(recipe)
    wanted: dict[str, tuple[str, ...]] = dict(extra)
    for fw in firmware:
        wanted[f"GRUB for {fw}"] = GRUB_PACKAGES[fw]
    if not any(p.startswith("linux-image-") for p in have):
        raise OptionError(
            f"the {output} output needs a kernel in the tree, but no step installs a "
            "linux-image-* package (add linux-image-amd64 to the bootstrap include)")
    for what, alternatives in wanted.items():
        if not have.intersection(alternatives):
            raise OptionError(
                f"the {output} output needs {what}, but no step installs "
                f"{' or '.join(alternatives)} (add {alternatives[0]} to the bootstrap "
                "include or a packages step)", ["firmware"] if what.startswith("GRUB") else [])


def derived_uuid(recipe: Recipe, purpose: str) -> uuid.UUID:
    """A UUID that depends only on the recipe and what it is for."""
    h = hashlib.sha256(f"{recipe.digest()}:{recipe.source_date_epoch}:{purpose}".encode())
    return uuid.UUID(bytes=h.digest()[:16], version=4)


def parse_size(text: str) -> int:
    """'512M', '2G', '1048576' (bytes) -> bytes. Binary units."""
    m = re.fullmatch(r"([0-9]+)\s*([KMGT]?)(i?B)?", text.strip(), re.IGNORECASE)
    if not m:
        raise OptionError(f"{text!r} is not a size (write e.g. 512M or 4G)")
    scale = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}[m.group(2).upper()]
    value = int(m.group(1)) * scale
    if value <= 0:
        raise OptionError(f"{text!r}: a size must be larger than zero")
    return value


@dataclass
class Kernel:
    version: str
    vmlinuz: Path  # host paths inside the tree
    initrd: Path


def find_kernel(tree: Path) -> Kernel:
    """The newest kernel in /boot with its initramfs."""
    boot = tree / "boot"
    found = []
    for vmlinuz in boot.glob("vmlinuz-*"):
        version = vmlinuz.name.removeprefix("vmlinuz-")
        initrd = boot / f"initrd.img-{version}"
        if initrd.is_file():
            key = [int(x) if x.isdigit() else x for x in re.split(r"[.-]", version)]
            found.append((key, Kernel(version, vmlinuz, initrd)))
    if not found:
        raise BuildError("output: the tree has no kernel with an initramfs in /boot "
                         "(vmlinuz-* and initrd.img-*)")
    found.sort(key=lambda kv: [str(k).zfill(8) for k in kv[0]])
    return found[-1][1]


def grub_dir(tree: Path, firmware: str) -> Path:
    d = tree / "usr/lib/grub" / GRUB_PLATFORM[firmware]
    if not (d / "kernel.img").is_file():
        raise BuildError(
            f"output: the tree has no GRUB for {firmware} ({d.relative_to(tree)} is missing); "
            f"install {GRUB_PACKAGES[firmware][0]} in the recipe")
    return d


def grub_mkimage_argv(tree: Path, firmware: str, fmt: str, early_cfg_file: Path, dest: Path,
                      extra_modules: tuple[str, ...] = ()) -> list[str | Path]:
    """grub-mkimage with the tree's own GRUB modules and an embedded first config."""
    modules = [*GRUB_MODULES, *GRUB_PLATFORM_MODULES[firmware], *extra_modules]
    return ["grub-mkimage", "-O", fmt, "-d", grub_dir(tree, firmware), "-p", "/boot/grub",
            "-c", early_cfg_file, "-o", dest, *modules]


def grub_image(ctx: OutputContext, firmware: str, fmt: str, early_cfg: str, dest: Path) -> Path:
    cfg = dest.with_name(dest.name + ".early.cfg")
    cfg.write_text(early_cfg)
    ctx.host(grub_mkimage_argv(ctx.tree, firmware, fmt, cfg, dest), what=f"grub-mkimage ({fmt})")
    cfg.unlink()
    return dest


def menu_entries(options: dict[str, Any], recipe: Recipe) -> list[dict[str, str]]:
    if options["entries"]:
        entries = [dict(e) for e in options["entries"]]
    else:
        title = re.sub(r"[\"\\$\n]", "", recipe.description or recipe.name)
        entries = [
            {"id": "default", "title": title, "cmdline": ""},
            {"id": "serial", "title": f"{title} (serial console)", "cmdline": SERIAL_CMDLINE},
        ]
    return entries


def validate_entries(options: dict[str, Any]) -> None:
    ids = [e["id"] for e in options["entries"] or []]
    for i, ident in enumerate(ids):
        if ids.count(ident) > 1:
            raise OptionError(f"entry id {ident!r} is used twice", ["entries", i, "id"])


def render_grub_cfg(recipe: Recipe, options: dict[str, Any], kind: str, base_cmdline: str,
                    kernel: str, initrd: str) -> str:
    entries = menu_entries(options, recipe)
    for e in entries:
        e["cmdline"] = " ".join(x for x in (options["cmdline"], e["cmdline"]) if x)
    return render_menu(recipe.name, kind, int(options["timeout"]), entries, base_cmdline,
                       kernel, initrd, options.get("auto-entry"))


def render_menu(name: str, kind: str, timeout: int, entries: list[dict[str, str]],
                base_cmdline: str, kernel: str, initrd: str, auto_entry: str | None = None) -> str:
    """The GRUB menu (templates/boot/grub.cfg.j2). `auto_entry`: the entry
    booted at once when the medium carries /appliance/auto-install.toml
    (written by `appliance prepare-iso`)."""
    entries = [dict(e, cmdline=" ".join(x for x in (base_cmdline, e["cmdline"]) if x))
               for e in entries]
    ids = [e["id"] for e in entries]
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(paths.templates_dir() / "boot"),
        undefined=jinja2.StrictUndefined, keep_trailing_newline=True,
    )
    return env.get_template("grub.cfg.j2").render(
        recipe=name, kind=kind, timeout=timeout, default=ids[0],
        check_entry="serial" if "serial" in ids else ids[0], entries=entries,
        kernel=kernel, initrd=initrd, auto_entry=auto_entry or "",
    )


def copy_file(src: Path, dest: Path) -> Path:
    dest.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(src, dest)
    return dest


def fat_image(ctx: OutputContext, dest: Path, size: int, volume_id: str,
              files: dict[str, Path]) -> Path:
    """A FAT file system image holding `files` ({path in image: host file}),
    the same bytes for the same input: derived volume id, no volume label
    (mkfs.fat would stamp its entry with the current time), every file and
    directory dated SOURCE_DATE_EPOCH."""
    stage = dest.with_name(dest.name + ".stage")
    for inside, src in files.items():
        copy_file(src, stage / inside.strip("/"))
    for p in [*stage.rglob("*"), stage]:
        os.utime(p, (ctx.epoch, ctx.epoch), follow_symlinks=False)
    with open(dest, "wb") as f:
        f.truncate(size)
    ctx.host(["mkfs.fat", "-i", volume_id, dest], what="mkfs.fat", capture=True)
    top = sorted(stage.iterdir())
    if top:
        ctx.host(["mcopy", "-i", dest, "-s", "-m", "-Q", *top, "::/"], what="mcopy")
    shutil.rmtree(stage)
    return dest


def clamp_tree(root: Path, epoch: int) -> None:
    """Date every file and directory under `root` at `epoch` (for xorriso)."""
    for p in [*root.rglob("*"), root]:
        os.utime(p, (epoch, epoch), follow_symlinks=False)
