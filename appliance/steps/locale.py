"""locale: the image's default locale, and locales to generate."""

from __future__ import annotations

from typing import Any

from appliance.engine.context import StepContext
from appliance.recipe.model import Recipe
from appliance.recipe.schema import Option, OptionError, Table, string, string_list
from appliance.steps import _common

NAME = "locale"
VERSION = 1
HELP = (
    "Set LANG in /etc/default/locale. Locales other than C.UTF-8 and POSIX need the "
    "`locales` package in the image and are generated with locale-gen."
)

LOCALE = r"[A-Za-z]{1,8}(_[A-Z]{2})?(\.[A-Za-z0-9-]+)?(@[a-z]+)?"
BUILTIN = ("C", "C.UTF-8", "POSIX")

OPTIONS = Table((
    Option("lang", string(pattern=LOCALE, what="locale name (like en_US.UTF-8)"), "C.UTF-8",
           "default locale (LANG)"),
    Option("generate", string_list(pattern=LOCALE, what="locale name"), [],
           "extra locales to generate", kind="list of strings"),
))


def _needed(options: dict[str, Any]) -> list[str]:
    wanted = [options["lang"], *options["generate"]]
    return [loc for loc in dict.fromkeys(wanted) if loc not in BUILTIN]


def validate(options: dict[str, Any], recipe: Recipe) -> None:
    for loc in _needed(options):
        if "." not in loc:
            raise OptionError(f"{loc}: give the charset too (like {loc}.UTF-8)", ["lang"])


def run(ctx: StepContext) -> None:
    lang = str(ctx.options["lang"])
    needed = _needed(dict(ctx.options))
    if needed:
        supported = ctx.path("/usr/share/i18n/SUPPORTED")
        if not supported.exists() or not ctx.path("/usr/sbin/locale-gen").exists():
            ctx.fail(f"locale {needed[0]} needs the `locales` package in the image")
        known = {ln.split()[0] for ln in supported.read_text().splitlines() if ln.strip()}
        for loc in needed:
            if loc not in known:
                ctx.fail(f"locale {loc} is not in /usr/share/i18n/SUPPORTED")
        lines = [f"{loc} {loc.split('.', 1)[1]}" for loc in needed]
        _common.install_file(ctx, ctx.path("/etc/locale.gen"), ("\n".join(lines) + "\n").encode(),
                             0o644, 0, 0)
        ctx.chroot(["locale-gen"], what="locale-gen")
    _common.install_file(ctx, ctx.path("/etc/default/locale"), f"LANG={lang}\n".encode(), 0o644,
                         0, 0)
