"""templates: render jinja2 templates with the recipe's variables into the image."""

from __future__ import annotations

import hashlib
from functools import cache
from pathlib import Path
from typing import Any

import jinja2

from appliance.engine.context import StepContext
from appliance.recipe.model import Recipe
from appliance.recipe.schema import (
    ABS_PATH,
    Option,
    OptionError,
    Table,
    file_mode,
    string,
    table_list,
)
from appliance.steps import _common

NAME = "templates"
VERSION = 1
HELP = (
    "Render jinja2 templates (looked up in the recipe's templates directory) with the "
    "recipe's variables into files of the image. An undefined variable is an error."
)

TEMPLATE = Table((
    Option("source", string(), help="template file, relative to the templates directory"),
    Option("destination", string(pattern=ABS_PATH, what="absolute path"), help="path in "
           "the image"),
    Option("mode", file_mode(), "0644", "permission bits", kind="mode"),
    Option("owner", string(), "root", "user name or uid in the image"),
    Option("group", string(), None, "group name or gid in the image (default: owner's)"),
))

OPTIONS = Table((
    Option("templates", table_list(TEMPLATE), help="{source, destination, mode, owner, "
           "group} entries", kind="list of tables"),
))


@cache
def _environment(root: Path) -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(root)),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        autoescape=False,
    )


def render(recipe: Recipe, source: str) -> str:
    """Render one template; errors name the template, line and variable."""
    env = _environment(recipe.templates_dir)
    try:
        template = env.get_template(source)
        return template.render(**recipe.variables)
    except jinja2.TemplateNotFound as e:
        raise OptionError(f"template {recipe.templates_dir / str(e.name)} does not exist") \
            from None
    except jinja2.UndefinedError as e:
        raise OptionError(f"template {recipe.templates_dir / source}: {e.message} "
                          f"(variables: {', '.join(sorted(recipe.variables))})") from None
    except jinja2.TemplateSyntaxError as e:
        raise OptionError(f"template {e.filename or source}:{e.lineno}: {e.message}") from None


def validate(options: dict[str, Any], recipe: Recipe) -> None:
    for i, t in enumerate(options["templates"]):
        _common.check_destination(t["destination"], ["templates", i, "destination"])
        try:
            render(recipe, t["source"])
        except OptionError as e:
            raise e.prefixed("templates", i, "source") from None


def cache_inputs(options: dict[str, Any], recipe: Recipe) -> Any:
    return [hashlib.sha256(render(recipe, t["source"]).encode()).hexdigest()
            for t in options["templates"]]


def run(ctx: StepContext) -> None:
    for t in ctx.options["templates"]:  # type: ignore[attr-defined]
        text = render(ctx.recipe, t["source"])
        _common.install_file(ctx, ctx.path(t["destination"]), text.encode(), int(t["mode"], 8),
                             t["owner"], t["group"])
