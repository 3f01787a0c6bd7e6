"""services: enable, disable and mask systemd units in the image."""

from __future__ import annotations

from typing import Any

from appliance.engine.context import StepContext
from appliance.recipe.model import Recipe
from appliance.recipe.schema import UNIT_NAME, Option, OptionError, Table, string_list

NAME = "services"
VERSION = 1
HELP = "Enable, disable or mask systemd units (with `systemctl --root`, offline)."
TOOLS = ("systemctl",)

UNITS = string_list(pattern=UNIT_NAME, what="systemd unit name (e.g. ssh.service)")
OPTIONS = Table((
    Option("enable", UNITS, [], "units to enable", kind="list of strings"),
    Option("disable", UNITS, [], "units to disable", kind="list of strings"),
    Option("mask", UNITS, [], "units to mask", kind="list of strings"),
))

UNIT_DIRS = ("/etc/systemd/system", "/usr/lib/systemd/system", "/lib/systemd/system")


def validate(options: dict[str, Any], recipe: Recipe) -> None:
    if not any(options.values()):
        raise OptionError("nothing to do: give `enable`, `disable` and/or `mask`")
    seen: dict[str, str] = {}
    for action in ("enable", "disable", "mask"):
        for unit in options[action]:
            if unit in seen:
                raise OptionError(f"{unit} is both in {seen[unit]} and {action}", [action])
            seen[unit] = action


def _unit_exists(ctx: StepContext, unit: str) -> bool:
    base = unit.split("@", 1)[0] + "@." + unit.rsplit(".", 1)[1] if "@" in unit else unit
    return any(ctx.path(f"{d}/{u}").exists() or ctx.path(f"{d}/{u}").is_symlink()
               for d in UNIT_DIRS for u in (unit, base))


def run(ctx: StepContext) -> None:
    o = ctx.options
    for action in ("enable", "disable"):
        units = list(o[action])  # type: ignore[call-overload]
        for unit in units:
            if not _unit_exists(ctx, unit):
                ctx.fail(f"cannot {action} {unit}: no such unit in the image "
                         f"(looked in {', '.join(UNIT_DIRS)})")
        if units:
            ctx.host(["systemctl", f"--root={ctx.tree}", action, *units],
                     what=f"systemctl {action}")
    masks = list(o["mask"])  # type: ignore[call-overload]
    if masks:
        ctx.host(["systemctl", f"--root={ctx.tree}", "mask", *masks], what="systemctl mask")
