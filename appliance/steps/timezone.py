"""timezone: the image's time zone (/etc/localtime, /etc/timezone)."""

from __future__ import annotations

import os
from typing import Any

from appliance.engine.context import StepContext
from appliance.recipe.model import Recipe
from appliance.recipe.schema import Option, Table, string
from appliance.steps import _common

NAME = "timezone"
VERSION = 1
HELP = "Set the time zone. Zones other than UTC need the `tzdata` package in the image."

OPTIONS = Table((
    Option("zone", string(pattern=r"[A-Za-z0-9_+-]+(/[A-Za-z0-9_+-]+)*", what="time zone"),
           "Etc/UTC", "time zone name, like Europe/Vienna"),
))

UTC = ("UTC", "Etc/UTC")


def validate(options: dict[str, Any], recipe: Recipe) -> None:
    return None


def run(ctx: StepContext) -> None:
    zone = str(ctx.options["zone"])
    zonefile = f"/usr/share/zoneinfo/{zone}"
    if zone not in UTC and not ctx.path(zonefile, follow=True).is_file():
        hint = "" if ctx.path("/usr/share/zoneinfo").is_dir() else \
            " (install the `tzdata` package in the image)"
        ctx.fail(f"time zone {zone} does not exist in the image{hint}")
    localtime = ctx.path("/etc/localtime")
    if localtime.is_symlink() or localtime.exists():
        localtime.unlink()
    _common.ensure_parent(ctx, localtime)
    os.symlink(zonefile, localtime)
    _common.install_file(ctx, ctx.path("/etc/timezone"), f"{zone}\n".encode(), 0o644, 0, 0)
