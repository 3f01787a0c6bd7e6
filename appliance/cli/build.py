"""`appliance build`, `recipe show|steps`, `cache list|prune` (the recipe engine)."""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from appliance import keyvalue
from appliance.cli.output import emit
from appliance.errors import ApplianceError


def _parse_sets(items: Sequence[str]) -> dict[str, str]:
    return keyvalue.parse_items(
        items, lambda item: ApplianceError(f"--set {item!r}: expected KEY=VALUE"))


def _add_recipe_args(p: argparse.ArgumentParser, optional: bool) -> None:
    p.add_argument(
        "recipe",
        nargs="?" if optional else None,
        help="recipe file, or a name from image_recipes/ (default: the embedded default "
        "recipe, image_recipes/installer.toml: the installer ISO)"
        if optional
        else "recipe file, or a name from image_recipes/",
    )
    p.add_argument(
        "--set",
        dest="sets",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="set a recipe variable (repeatable)",
    )


def cmd_build(args: argparse.Namespace) -> int:
    from appliance.engine import build

    result = build.build(
        recipe=args.recipe,
        outdir=args.output,
        cache_dir=args.cache_dir,
        variables=_parse_sets(args.sets),
        dry_run=args.dry_run,
        use_cache=not args.no_cache,
        formats=args.format or None,
    )
    emit(args, result.to_json, lambda: build.print_summary(result))
    return 0


def cmd_recipe_show(args: argparse.Namespace) -> int:
    from appliance.recipe import loader

    recipe = loader.load(args.recipe, variables=_parse_sets(args.sets))
    emit(args, recipe.to_dict, recipe.to_toml)
    return 0


def cmd_recipe_steps(args: argparse.Namespace) -> int:
    from appliance.recipe import docs

    emit(args, docs.reference, docs.reference_text)
    return 0


def cmd_cache_list(args: argparse.Namespace) -> int:
    from appliance.engine import cache

    entries = cache.Cache(args.cache_dir).entries()
    emit(args, lambda: [e.to_json() for e in entries], lambda: cache.print_entries(entries))
    return 0


def cmd_cache_prune(args: argparse.Namespace) -> int:
    from appliance.engine import cache

    removed, freed = cache.Cache(args.cache_dir).prune(
        keep_days=args.older_than, remove_all=args.all
    )
    emit(args, lambda: {"removed": removed, "freed_bytes": freed},
         lambda: f"removed {len(removed)} cache entries, freed {freed / 2**20:.1f} MiB\n")
    return 0


def add_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    from appliance.paths import DEFAULT_CACHE_DIR

    p = sub.add_parser(
        "build",
        help="build a recipe into images",
        description="Build a recipe: run its steps (reusing cached ones) and write its outputs.",
        epilog="examples:\n"
        "  appliance build                       build the default recipe into ./out\n"
        "  appliance build test-minimal --dry-run  validate and show the plan\n"
        "  appliance build host --set hostname=pve1 -o /srv/images\n"
        "The full log of every command goes to OUTDIR/build.log.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _add_recipe_args(p, optional=True)
    p.add_argument("-o", "--output", default="out", help="output directory (default: ./out)")
    p.add_argument(
        "--cache-dir",
        default=str(DEFAULT_CACHE_DIR),
        help=f"step cache directory (default: {DEFAULT_CACHE_DIR})",
    )
    p.add_argument("--dry-run", action="store_true", help="validate and print the plan only")
    p.add_argument("--no-cache", action="store_true", help="ignore and do not fill the cache")
    p.add_argument(
        "--format",
        action="append",
        metavar="FORMAT",
        help="only write this output format (repeatable; default: all the recipe declares)",
    )
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.set_defaults(func=cmd_build)

    r = sub.add_parser("recipe", help="inspect recipes")
    rsub = r.add_subparsers(dest="recipe_cmd", required=True)
    p = rsub.add_parser("show", help="print the fully resolved recipe")
    _add_recipe_args(p, optional=False)
    p.add_argument("--json", action="store_true", help="print JSON instead of TOML")
    p.set_defaults(func=cmd_recipe_show)
    p = rsub.add_parser("steps", help="list step and output types with their options")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=cmd_recipe_steps)

    c = sub.add_parser("cache", help="manage the build cache")
    csub = c.add_subparsers(dest="cache_cmd", required=True)
    for name, func, hlp in (
        ("list", cmd_cache_list, "list cached steps"),
        ("prune", cmd_cache_prune, "remove cached steps"),
    ):
        p = csub.add_parser(name, help=hlp)
        p.add_argument("--cache-dir", default=str(DEFAULT_CACHE_DIR))
        p.add_argument("--json", action="store_true", help="print JSON")
        if name == "prune":
            p.add_argument(
                "--older-than",
                type=float,
                default=7.0,
                metavar="DAYS",
                help="remove entries not used for DAYS days (default: 7)",
            )
            p.add_argument("--all", action="store_true", help="remove every entry")
        p.set_defaults(func=func)


