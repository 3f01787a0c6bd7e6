"""tar: the root filesystem as a zstd-compressed tar archive."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from appliance.engine.context import OutputContext
from appliance.recipe.model import Recipe
from appliance.recipe.schema import Option, Table, boolean, integer, string

NAME = "tar"
HELP = (
    "A tar archive of the root filesystem compressed with zstd (numeric owners, xattrs, "
    "names sorted, mtimes clamped to SOURCE_DATE_EPOCH) — e.g. an LXC container template."
)
TOOLS = ("tar", "zstd")

OPTIONS = Table((
    Option("enabled", boolean(), True, "write this output", kind="boolean"),
    Option("filename", string(pattern=r"[A-Za-z0-9._-]+", what="file name"), None,
           "file name (default: <recipe name>.tar.zst)"),
    Option("compression-level", integer(minimum=1, maximum=19), 12, "zstd level (1-19)",
           kind="integer"),
))


def validate(options: dict[str, Any], recipe: Recipe) -> None:
    return None


def usage(path: Path) -> str:
    return (f"unpack with `tar --zstd -xpf {path} -C DIR`, or use it as an LXC "
            "container template")


def write(ctx: OutputContext) -> list[Path]:
    o = ctx.options
    dest = ctx.scratch / str(o["filename"] or f"{ctx.recipe.name}.tar.zst")
    tarball = ctx.scratch / "rootfs.tar"
    ctx.host(
        [
            "tar", "--create", f"--file={tarball}", f"--directory={ctx.tree}",
            "--sort=name", "--numeric-owner", "--xattrs", "--xattrs-include=*",
            "--acls", f"--mtime=@{ctx.epoch}", "--clamp-mtime",
            "--pax-option=exthdr.name=%d/PaxHeaders/%f,delete=atime,delete=ctime",
            "--exclude=./proc/*", "--exclude=./sys/*", "--exclude=./dev/*", "--exclude=./run/*",
            ".",
        ],
        what="tar",
    )
    ctx.host(["zstd", "-q", "-T0", f"-{o['compression-level']}", "--rm", "-o", dest, tarball],
             what="zstd")
    return [dest]
