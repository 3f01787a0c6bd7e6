"""run: commands or scripts inside the tree (chroot with /proc, /sys, /dev)."""

from __future__ import annotations

import os
from typing import Any

from appliance.digest import sha256_file
from appliance.engine.context import StepContext
from appliance.recipe.model import Recipe
from appliance.recipe.schema import Option, OptionError, Table, string, string_list
from appliance.steps import _common

NAME = "run"
VERSION = 1
HELP = (
    "Run shell commands (each with /bin/sh -c) and/or a script file inside the image, "
    "chrooted, with /proc, /sys and /dev mounted (always unmounted afterwards). A command "
    "that fails stops the build and shows its output."
)

OPTIONS = Table((
    Option("commands", string_list(), [], "shell commands run in order",
           kind="list of strings"),
    Option("script", string(), None, "script file (relative to the templates directory), "
           "copied into the image, run, and removed"),
))


def validate(options: dict[str, Any], recipe: Recipe) -> None:
    if not options["commands"] and not options["script"]:
        raise OptionError("nothing to do: give `commands` and/or `script`")
    if options["script"]:
        _common.require_source(recipe, options["script"], "file", ["script"])


def cache_inputs(options: dict[str, Any], recipe: Recipe) -> Any:
    if options["script"]:
        return sha256_file(_common.source_path(recipe, options["script"]))
    return None


def run(ctx: StepContext) -> None:
    o = ctx.options
    if not ctx.path("/bin/sh").exists() and not ctx.path("/bin/sh").is_symlink():
        ctx.fail("the tree has no /bin/sh")
    for cmd in o["commands"]:  # type: ignore[attr-defined]
        ctx.chroot(["/bin/sh", "-c", cmd], what=f"command {cmd!r}")
    if o["script"]:
        src = _common.source_path(ctx.recipe, str(o["script"]))
        inside = f"/tmp/appliance-step-{os.getpid()}.script"
        dest = ctx.path(inside)
        try:
            _common.install_file(ctx, dest, src.read_bytes(), 0o700, 0, 0)
            ctx.chroot([inside], what=f"script {src.name}")
        finally:
            dest.unlink(missing_ok=True)


