"""squashfs: the root filesystem as a zstd-compressed squashfs image."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from appliance.engine.context import OutputContext
from appliance.recipe.model import Recipe
from appliance.recipe.schema import Option, Table, boolean, integer, string

NAME = "squashfs"
HELP = (
    "A squashfs image of the root filesystem (zstd). Every timestamp is set to "
    "SOURCE_DATE_EPOCH, so the same tree always gives the same bytes."
)
TOOLS = ("mksquashfs",)

OPTIONS = Table((
    Option("enabled", boolean(), True, "write this output", kind="boolean"),
    Option("filename", string(pattern=r"[A-Za-z0-9._-]+", what="file name"), None,
           "file name (default: <recipe name>.squashfs)"),
    Option("compression-level", integer(minimum=1, maximum=22), 6,
           "zstd level (1-22); 6 is within 2% of 15 in size and about 4x faster",
           kind="integer"),
    Option("block-size", string(choices=("128K", "256K", "512K", "1M")), "1M",
           "squashfs block size"),
))


def validate(options: dict[str, Any], recipe: Recipe) -> None:
    return None


def usage(path: Path) -> str:
    return (f"mount it with `mount -o loop,ro {path} /mnt`; it is the root "
            "filesystem that live and installer images boot from")


def make(ctx: OutputContext, tree: Path, dest: Path, level: int, block_size: str) -> Path:
    """mksquashfs `tree` into `dest`, reproducibly (SOURCE_DATE_EPOCH in the
    environment sets the creation time and clamps every mtime). Used by other
    outputs too."""
    ctx.host(
        [
            "mksquashfs", tree, dest, "-noappend", "-no-progress", "-quiet",
            "-comp", "zstd", "-Xcompression-level", str(level), "-b", block_size,
            "-wildcards", "-e", "proc/*", "sys/*", "dev/*", "run/*",
        ],
        what="mksquashfs",
    )
    return dest


def write(ctx: OutputContext) -> list[Path]:
    o = ctx.options
    name = str(o["filename"] or f"{ctx.recipe.name}.squashfs")
    return [make(ctx, ctx.tree, ctx.scratch / name, int(o["compression-level"]),  # type: ignore[call-overload]
                 str(o["block-size"]))]
