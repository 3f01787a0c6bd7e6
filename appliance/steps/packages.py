"""packages: install and remove Debian packages with apt inside the tree."""

from __future__ import annotations

from typing import Any

from appliance.engine.context import StepContext
from appliance.recipe.model import Recipe
from appliance.recipe.schema import PACKAGE_NAME, Option, OptionError, Table, boolean, string_list

NAME = "packages"
VERSION = 1
HELP = "Install and remove packages with apt inside the tree (the tree needs apt)."

OPTIONS = Table((
    Option("install", string_list(pattern=PACKAGE_NAME, what="package name"), [],
           "packages to install", kind="list of strings"),
    Option("remove", string_list(pattern=PACKAGE_NAME, what="package name"), [],
           "packages to remove (purged)", kind="list of strings"),
    Option("recommends", boolean(), False, "also install recommended packages", kind="boolean"),
))

APT = ["apt-get", "-y", "-o", "Dpkg::Options::=--force-confdef",
       "-o", "Dpkg::Options::=--force-confold"]


def validate(options: dict[str, Any], recipe: Recipe) -> None:
    if not options["install"] and not options["remove"]:
        raise OptionError("nothing to do: give `install` and/or `remove`")
    both = set(options["install"]) & set(options["remove"])
    if both:
        raise OptionError(f"{', '.join(sorted(both))} both installed and removed", ["remove"])


def run(ctx: StepContext) -> None:
    o = ctx.options
    if not ctx.path("/usr/bin/apt-get").exists():
        ctx.fail("the tree has no apt-get: bootstrap with a variant that includes apt "
                 "(apt, required, minbase, ...)")
    ctx.chroot([*APT, "update"], what="apt-get update")
    if o["install"]:
        extra = [] if o["recommends"] else ["--no-install-recommends"]
        ctx.chroot([*APT, "install", *extra, *o["install"]],  # type: ignore[misc]
                   what="apt-get install")
    if o["remove"]:
        ctx.chroot([*APT, "purge", *o["remove"]], what="apt-get purge")  # type: ignore[misc]
        ctx.chroot([*APT, "autoremove", "--purge"], what="apt-get autoremove")
    ctx.chroot(["apt-get", "clean"], what="apt-get clean")
