"""bootstrap: create the root filesystem with mmdebstrap."""

from __future__ import annotations

from typing import Any

from appliance.engine.context import StepContext
from appliance.recipe.model import Recipe
from appliance.recipe.schema import PACKAGE_NAME, Option, OptionError, Table, string, string_list
from appliance.steps import aptsources

NAME = "bootstrap"
VERSION = 1
HELP = (
    "Create the root filesystem from Debian packages with mmdebstrap. Must be the first "
    "step. Without `mirror`, the build host's configured Debian apt sources are used "
    "(their suite renamed to `suite`)."
)
TOOLS = ("mmdebstrap",)
VARIANTS = ("extract", "custom", "essential", "apt", "required", "minbase", "buildd",
            "important", "debootstrap", "standard")

OPTIONS = Table((
    Option("suite", string(pattern=r"[a-z][a-z0-9-]*", what="suite name"), "bookworm",
           "Debian suite or codename"),
    Option("variant", string(choices=VARIANTS), "minbase", "mmdebstrap variant"),
    Option("architecture", string(pattern=r"[a-z0-9]+", what="architecture"), "amd64",
           "Debian architecture"),
    Option("components", string_list(pattern=r"[a-z-]+", what="component"), ["main"],
           "archive components", kind="list of strings"),
    Option("mirror", string(pattern=r"(https?|file)://\S+", what="mirror URI"), None,
           "archive URI (default: the build host's apt sources)"),
    Option("include", string_list(pattern=PACKAGE_NAME, what="package name"), [],
           "packages to install while bootstrapping", kind="list of strings"),
))


def sources(options: dict[str, Any]) -> list[str]:
    if options["mirror"]:
        return [f"deb {options['mirror']} {options['suite']} {' '.join(options['components'])}"]
    return aptsources.debian_lines(options["suite"], options["components"])


def validate(options: dict[str, Any], recipe: Recipe) -> None:
    if not sources(options):
        raise OptionError(
            "this build host has no Debian apt sources configured to derive a mirror from; "
            "set `mirror`", ["mirror"])


def cache_inputs(options: dict[str, Any], recipe: Recipe) -> Any:
    return {"sources": sources(options)}


def run(ctx: StepContext) -> None:
    o = ctx.options
    argv: list[str] = [
        "mmdebstrap",
        "--mode=root",
        "--format=directory",
        f"--variant={o['variant']}",
        f"--architectures={o['architecture']}",
        f"--components={','.join(o['components'])}",  # type: ignore[arg-type]
        "--aptopt=Acquire::Retries \"3\"",
    ]
    if o["include"]:
        argv.append("--include=" + ",".join(o["include"]))  # type: ignore[arg-type]
    argv += [str(o["suite"]), str(ctx.tree), *sources(dict(o))]
    ctx.host(argv, what="mmdebstrap")
