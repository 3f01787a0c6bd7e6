"""files: copy overlay trees and single files into the image."""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Any

from appliance.digest import sha256_file
from appliance.engine.context import StepContext
from appliance.recipe.model import Recipe
from appliance.recipe.schema import (
    ABS_PATH,
    Option,
    OptionError,
    Table,
    file_mode,
    string,
    string_list,
    table_list,
)
from appliance.steps import _common

NAME = "files"
VERSION = 1
HELP = (
    "Copy overlay directories onto the image root (owned by root, modes as in the source: "
    "0755 if executable, else 0644) and single files with explicit mode and owner. "
    "Relative sources are looked up in the recipe's templates directory."
)

FILE = Table(
    (
        Option("source", string(), None, "file to copy (relative to the templates directory)"),
        Option("content", string(), None, "literal file content instead of a source"),
        Option("destination", string(pattern=ABS_PATH, what="absolute path"), help="path in "
               "the image"),
        Option("mode", file_mode(), "0644", "permission bits", kind="mode"),
        Option("owner", string(), "root", "user name or uid in the image"),
        Option("group", string(), None, "group name or gid in the image (default: owner's)"),
    ),
    exclusive=(("source", "content"),),
)

OPTIONS = Table((
    Option("overlay", string_list(), [], "directories copied onto / of the image",
           kind="list of strings"),
    Option("files", table_list(FILE), [], "single files: {source|content, destination, mode, "
           "owner, group}", kind="list of tables"),
))


def validate(options: dict[str, Any], recipe: Recipe) -> None:
    if not options["overlay"] and not options["files"]:
        raise OptionError("nothing to do: give `overlay` and/or `files`")
    for i, d in enumerate(options["overlay"]):
        _common.require_source(recipe, d, "dir", ["overlay", i])
    for i, f in enumerate(options["files"]):
        if f["source"] is None and f["content"] is None:
            raise OptionError("give `source` or `content`", ["files", i])
        if f["source"] is not None:
            _common.require_source(recipe, f["source"], "file", ["files", i, "source"])
        _common.check_destination(f["destination"], ["files", i, "destination"])


def cache_inputs(options: dict[str, Any], recipe: Recipe) -> Any:
    return {
        "overlay": [_common.hash_tree(_common.source_path(recipe, d)) for d in options["overlay"]],
        "files": [
            sha256_file(_common.source_path(recipe, f["source"])) if f["source"] else None
            for f in options["files"]
        ],
    }


def _copy_overlay(ctx: StepContext, src_root: Path) -> None:
    for dirpath, dirs, files in os.walk(src_root):
        dirs.sort()
        rel = Path(dirpath).relative_to(src_root)
        target_dir = ctx.path(f"/{rel}", follow=True)
        if target_dir.exists() and not target_dir.is_dir():
            ctx.fail(f"overlay {src_root}: /{rel} is not a directory in the image")
        if not target_dir.exists():
            target_dir.mkdir(mode=0o755)
            os.chown(target_dir, 0, 0)
        for f in sorted(files):
            src = Path(dirpath, f)
            dest = target_dir / f
            st = os.lstat(src)
            if stat.S_ISLNK(st.st_mode):
                if dest.is_symlink() or dest.is_file():
                    dest.unlink()
                os.symlink(os.readlink(src), dest)
                os.lchown(dest, 0, 0)
                continue
            mode = 0o755 if st.st_mode & 0o111 else 0o644
            _common.install_file(ctx, dest, src.read_bytes(), mode, 0, 0)


def run(ctx: StepContext) -> None:
    o = ctx.options
    recipe = ctx.recipe
    for d in o["overlay"]:  # type: ignore[attr-defined]
        _copy_overlay(ctx, _common.source_path(recipe, d))
    for f in o["files"]:  # type: ignore[attr-defined]
        data = (_common.source_path(recipe, f["source"]).read_bytes() if f["source"]
                else f["content"].encode())
        _common.install_file(ctx, ctx.path(f["destination"]), data, int(f["mode"], 8), f["owner"],
                             f["group"])

