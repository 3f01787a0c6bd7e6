"""`appliance recipe steps`: reference of step and output types, generated
from the same option tables that parse recipes."""

from __future__ import annotations

import textwrap
from typing import Any

from appliance.recipe import registry
from appliance.recipe.loader import RECIPE_TABLE
from appliance.recipe.schema import Table


def _table(table: Table) -> list[dict[str, Any]]:
    return [
        {
            "key": o.key,
            "kind": o.kind,
            "required": o.required,
            "default": None if o.required else o.default,
            "help": o.help,
        }
        for o in table.options
    ]


def reference() -> dict[str, Any]:
    return {
        "recipe": _table(RECIPE_TABLE),
        "steps": {
            n: {"help": registry.step(n).HELP, "options": _table(registry.step(n).OPTIONS)}
            for n in registry.step_types()
        },
        "outputs": {
            n: {"help": registry.output(n).HELP, "options": _table(registry.output(n).OPTIONS)}
            for n in registry.output_types()
        },
    }


def _fmt_options(opts: list[dict[str, Any]]) -> str:
    lines = []
    for o in opts:
        dflt = "required" if o["required"] else f"default: {o['default']!r}"
        lines.append(f"    {o['key']} ({o['kind']}; {dflt})")
        for h in textwrap.wrap(o["help"], 72):
            lines.append(f"        {h}")
    return "\n".join(lines)


def reference_text() -> str:
    ref = reference()
    out = ["[recipe]", _fmt_options(ref["recipe"]), ""]
    for section, title in (("steps", "[[steps]] type = "), ("outputs", "[outputs.")):
        for name, info in ref[section].items():
            suffix = "]" if section == "outputs" else ""
            out.append(f"{title}{name!r}{suffix}" if section == "steps" else f"{title}{name}]")
            out.extend("  " + h for h in textwrap.wrap(info["help"], 76))
            out.append(_fmt_options(info["options"]))
            out.append("")
    return "\n".join(out) + "\n"
