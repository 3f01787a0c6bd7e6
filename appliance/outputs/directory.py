"""directory: the root filesystem as a plain directory tree."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from appliance.engine.context import OutputContext
from appliance.recipe.model import Recipe
from appliance.recipe.schema import Option, Table, boolean, string

NAME = "directory"
HELP = "A copy of the root filesystem as a directory (mtimes clamped to SOURCE_DATE_EPOCH)."
TOOLS = ("cp",)

OPTIONS = Table((
    Option("enabled", boolean(), True, "write this output", kind="boolean"),
    Option("filename", string(pattern=r"[A-Za-z0-9._-]+", what="directory name"), None,
           "directory name (default: <recipe name>.rootfs)"),
))


def validate(options: dict[str, Any], recipe: Recipe) -> None:
    return None


def usage(path: Path) -> str:
    return (f"chroot into it with `chroot {path}`")


def clamp_mtimes(root: Path, epoch: int) -> None:
    for dirpath, dirs, files in os.walk(root, topdown=False):
        for name in [*files, *dirs, ""]:
            p = os.path.join(dirpath, name) if name else dirpath
            st = os.lstat(p)
            if st.st_mtime > epoch:
                os.utime(p, (epoch, epoch), follow_symlinks=False)


def write(ctx: OutputContext) -> list[Path]:
    dest = ctx.scratch / str(ctx.options["filename"] or f"{ctx.recipe.name}.rootfs")
    ctx.host(["cp", "-a", "--reflink=auto", f"{ctx.tree}/.", dest], what="copying the tree")
    clamp_mtimes(dest, ctx.epoch)
    return [dest]
