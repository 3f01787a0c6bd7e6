"""guest-template: build another recipe and bundle its output as a guest template.

The host image carries ready-to-use templates, so a freshly installed host can
create a container or a VM at once, without network: a container template is
another recipe's `[outputs.tar]` (a root file system tar.zst), a VM template
another recipe's `[outputs.rootfs]` (kernel, initramfs, ext4 root disk). The
other recipe is built with the same build cache (its steps are cached like any
build's) and its output installed where the host layer looks for templates
(/var/lib/appliance/templates, see appliance/host/templates.py).
"""

from __future__ import annotations

import io
import logging
from pathlib import Path
from typing import Any

from appliance.engine.context import StepContext
from appliance.errors import ApplianceError, BuildError
from appliance.paths import STATE_DIR
from appliance.recipe.model import Recipe
from appliance.recipe.schema import REQUIRED, Option, OptionError, Table, string

log = logging.getLogger("appliance.build")

NAME = "guest-template"
VERSION = 1
HELP = (
    "Build another recipe (with the same build cache) and install its output into the "
    "image as a guest template of the host: kind \"ct\" takes the recipe's [outputs.tar] "
    "(container root file system), kind \"vm\" its [outputs.rootfs] (kernel, initramfs, "
    f"root disk). Installed under {STATE_DIR}/templates."
)

KIND_OUTPUT = {"ct": "tar", "vm": "rootfs"}

OPTIONS = Table((
    Option("recipe", string(), REQUIRED, "the recipe to build (a path relative to this "
           "recipe's file, or a name in image_recipes/)"),
    Option("kind", string(choices=tuple(KIND_OUTPUT)), REQUIRED,
           "ct (container template) or vm (VM template)"),
    Option("template", string(pattern=r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}",
                              what="template name"), REQUIRED,
           "the template's name on the host"),
    Option("variables", lambda v: _string_table(v), {}, "variables of the other recipe "
           "(a table of strings)", kind="table of strings"),
    Option("cmdline", string(), "", "VM templates: the guest kernel's default command line"),
    Option("description", string(), "", "shown in the template list"),
))  # fmt: skip


def _string_table(value: Any) -> dict[str, str]:
    if not isinstance(value, dict):
        raise OptionError(f"expected a table of strings, got {type(value).__name__}")
    for k, v in value.items():
        if not isinstance(v, str):
            raise OptionError(f"expected a string, got {type(v).__name__}", [k])
    return dict(value)


def _sub_recipe(options: dict[str, Any], recipe: Recipe) -> Recipe:
    from appliance.recipe import loader

    path = loader.resolve(options["recipe"], relative_to=recipe.path.parent)
    if path == recipe.path:
        raise OptionError(f"{path.name} cannot bundle itself", ["recipe"])
    sub = loader.load(path, options["variables"])
    want = KIND_OUTPUT[options["kind"]]
    if not any(o.type == want for o in sub.outputs):
        raise OptionError(f"{path.name} declares no [outputs.{want}], which a "
                          f"{options['kind']} template is made of", ["recipe"])
    return sub


def validate(options: dict[str, Any], recipe: Recipe) -> None:
    if options["cmdline"] and options["kind"] != "vm":
        raise OptionError("only VM templates have a kernel command line", ["cmdline"])
    try:
        _sub_recipe(options, recipe)
    except ApplianceError as e:  # RecipeError of the other recipe: say where it came from
        if isinstance(e, OptionError):
            raise
        raise OptionError(f"{options['recipe']}: {e}", ["recipe"]) from None


def cache_inputs(options: dict[str, Any], recipe: Recipe) -> Any:
    """The other recipe's last step id (its whole tree) and its output options."""
    from appliance.engine.build import plan

    sub = _sub_recipe(options, recipe)
    want = KIND_OUTPUT[options["kind"]]
    outs = [o.options for o in sub.outputs if o.type == want]
    return {"tree": plan(sub, None)[-1].id, "output": outs}


def run(ctx: StepContext) -> None:
    from appliance.engine.build import build
    from appliance.host import templates
    from appliance.host.store import HostPaths

    o = ctx.options
    kind, name = str(o["kind"]), str(o["template"])
    sub = _sub_recipe(ctx.options, ctx.recipe)
    if ctx.cache_dir is None:
        raise BuildError(f"step {ctx.step.name}: no build cache to build {sub.path.name} with")
    out = ctx.scratch / "out"
    log.info("building %s for the %s template %s", sub.path, kind, name)
    progress = io.StringIO()
    try:
        result = build(sub.path, outdir=out, cache_dir=ctx.cache_dir,
                       variables=ctx.options["variables"],  # type: ignore[arg-type]
                       formats=[KIND_OUTPUT[kind]], progress_stream=progress)
    except ApplianceError as e:
        ctx.fail(f"building {sub.path.name}: {e}")
    finally:
        for line in progress.getvalue().splitlines():
            log.info("  %s: %s", sub.name, line.strip())
    made = {p.path.name: p.path for p in result.products}
    host = HostPaths(etc=ctx.path("/etc/appliance"), state=ctx.path(str(STATE_DIR)))
    try:
        if kind == "ct":
            tarball = next(p for p in made.values() if p.name.endswith(".tar.zst"))
            templates.add_ct_template(host, name, tarball)
        else:
            def one(suffix: str) -> Path:
                return next(p for n, p in made.items() if n.endswith(suffix))

            templates.add_vm_template(
                host, name, one(".vmlinuz"), one(".initrd.img"), one(".ext4"),
                cmdline=str(o["cmdline"]), description=str(o["description"] or sub.description))
    except (StopIteration, ApplianceError) as e:
        ctx.fail(f"{sub.path.name} made {sorted(made)}: cannot make the {kind} template "
                 f"{name} ({e or 'an expected file is missing'})")
