"""rootfs: a bare ext4 file system image (no partition table) with the
tree's kernel and initramfs beside it: what a microVM boots directly
(`appliance vm run --kernel X.vmlinuz --initrd X.initrd.img --disk X.ext4`,
root=/dev/vda).  UUID and htree seed are derived from the recipe."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from appliance.engine import mounts
from appliance.engine.context import OutputContext
from appliance.errors import BuildError
from appliance.outputs import _boot
from appliance.recipe.model import Recipe
from appliance.recipe.schema import Option, OptionError, Table, boolean, string

NAME = "rootfs"
HELP = (
    "A bare ext4 image of the tree (the whole disk is the file system: root=/dev/vda in a "
    "microVM) plus <name>.vmlinuz and <name>.initrd.img copied from the tree's /boot. "
    "fstab mounts it by UUID; the UUID is derived from the recipe."
)
TOOLS = ("mkfs.ext4", "du")

MiB = 1 << 20
OPTIONS = Table((
    Option("enabled", boolean(), True, "write this output", kind="boolean"),
    Option("filename", string(pattern=r"[A-Za-z0-9._-]+\.(ext4|img|raw)", what="file name "
           "(*.ext4, *.img or *.raw)"), None, "file name (default: <recipe name>.ext4)"),
    Option("size", string(pattern=r"auto|[0-9]+\s*[KMGTkmgt]?(i?B)?", what="size (e.g. 2G "
           "or auto)"), "auto", "size of the image (auto: the tree plus 25% and 128 MiB free)"),
    Option("label", string(pattern=r"[A-Za-z0-9_-]{1,16}", what="ext4 label"), "root",
           "label of the file system"),
))  # fmt: skip


def validate(options: dict[str, Any], recipe: Recipe) -> None:
    if options["size"] != "auto":
        try:
            _boot.parse_size(options["size"])
        except OptionError as e:
            raise e.prefixed("size") from None
    _boot.require_packages(recipe, [], {}, "rootfs")


def usage(path: Path) -> str:
    if path.name.endswith((".vmlinuz", ".initrd.img")):
        return "the kernel / initramfs of the rootfs image beside it"
    stem = path.with_suffix("")
    return (f"boot it with `appliance vm run --kernel {stem}.vmlinuz --initrd "
            f"{stem}.initrd.img --disk {path} --net TAP --cmdline 'console=ttyS0 "
            "root=/dev/vda rw pci=conf1 acpi=off net.ifnames=0'`")


def write(ctx: OutputContext) -> list[Path]:
    o = ctx.options
    rec = ctx.recipe
    used = int(ctx.host(["du", "-s", "-x", "-B1", ctx.tree], what="du", capture=True)
               .stdout.split()[0])  # fmt: skip
    if o["size"] == "auto":
        size = (int(used * 1.25) + 128 * MiB + MiB - 1) // MiB * MiB
    else:
        size = _boot.parse_size(str(o["size"]))
        if used * 1.05 + 32 * MiB > size:
            raise BuildError(f"output rootfs: the tree needs about {used * 1.05 // MiB + 32:.0f}"
                             f" MiB but size is {o['size']}; raise it (or use \"auto\")")
    kernel = _boot.find_kernel(ctx.tree)
    fs_uuid = _boot.derived_uuid(rec, "rootfs/fs")
    dest = ctx.scratch / str(o["filename"] or f"{rec.name}.ext4")
    upper, view = ctx.scratch / "upper", ctx.scratch / "root"
    upper.mkdir()
    with mounts.overlay([ctx.tree], upper, ctx.scratch / "overlay-work", view):
        (view / "etc/fstab").write_text(
            "# <file system> <mount point> <type> <options> <dump> <pass>\n"
            f"UUID={fs_uuid} / ext4 errors=remount-ro 0 1\n")
        with open(dest, "wb") as f:
            f.truncate(size)
        ctx.host(["mkfs.ext4", "-q", "-F", "-L", str(o["label"]), "-U", str(fs_uuid),
                  "-E", f"root_owner=0:0,hash_seed={_boot.derived_uuid(rec, 'rootfs/htree')}",
                  "-d", view, dest], what="mkfs.ext4")  # fmt: skip
    stem = dest.with_suffix("")
    vmlinuz = _boot.copy_file(kernel.vmlinuz, stem.with_suffix(".vmlinuz"))
    initrd = _boot.copy_file(kernel.initrd, stem.with_suffix(".initrd.img"))
    return [dest, vmlinuz, initrd]
