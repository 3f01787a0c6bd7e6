"""Helpers shared by the files and templates steps."""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Any

from appliance.digest import sha256_file
from appliance.engine.context import StepContext
from appliance.recipe.model import Recipe
from appliance.recipe.schema import OptionError


def source_path(recipe: Recipe, source: str) -> Path:
    p = Path(source)
    return p if p.is_absolute() else recipe.templates_dir / p


def hash_tree(root: Path) -> list[Any]:
    """Paths, kinds, executable bits and content hashes of a directory tree."""
    out: list[Any] = []
    for dirpath, dirs, files in os.walk(root):
        dirs.sort()
        rel = os.path.relpath(dirpath, root)
        out.append([rel, "dir"])
        for f in sorted(files):
            p = Path(dirpath, f)
            st = os.lstat(p)
            if stat.S_ISLNK(st.st_mode):
                out.append([os.path.join(rel, f), "link", os.readlink(p)])
            else:
                out.append([os.path.join(rel, f), oct(st.st_mode & 0o111), sha256_file(p)])
    return out


def require_source(recipe: Recipe, source: str, kind: str, path: list[str | int]) -> Path:
    p = source_path(recipe, source)
    ok = p.is_dir() if kind == "dir" else p.is_file()
    if not ok:
        what = "directory" if kind == "dir" else "file"
        raise OptionError(f"{what} {p} does not exist", path)
    return p


def check_destination(dest: str, path: list[str | int]) -> None:
    if not dest.startswith("/") or "/../" in dest + "/" :
        raise OptionError(f"{dest!r}: destination must be an absolute path inside the image",
                          path)


def ensure_parent(ctx: StepContext, dest: Path) -> None:
    """Create missing parent directories (root-owned, 0755) of `dest`."""
    missing = []
    p = dest.parent
    while not p.exists():
        missing.append(p)
        p = p.parent
    for d in reversed(missing):
        d.mkdir(mode=0o755)
        os.chown(d, 0, 0)


def install_file(ctx: StepContext, dest: Path, data: bytes, mode: int,
                 owner: str | int | None, group: str | int | None) -> None:
    """Write `data` at `dest` (a host path inside the tree) with mode and owner
    resolved in the image; never follows a symlink at `dest`."""
    ensure_parent(ctx, dest)
    if dest.is_symlink() or dest.exists():
        if dest.is_dir() and not dest.is_symlink():
            ctx.fail(f"{dest.relative_to(ctx.tree)} is a directory in the image")
        dest.unlink()
    uid, gid = ctx.ids(owner, group)
    fd = os.open(dest, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    try:
        os.write(fd, data)
        os.fchown(fd, uid, gid)
        os.fchmod(fd, mode)
    finally:
        os.close(fd)
