"""Load a recipe: TOML → `extends` chain merged → variables applied → every
step and output parsed by its declared options and validated.

Merge rules (a child recipe over the recipe it extends):
- `[recipe]` and `[variables]`: the child's keys win.
- `[[steps]]`: a child step whose `name` equals a parent step's name is deep
  merged into it (in place); other child steps are appended.
- `[outputs.TYPE]`: deep merged by type.
- Deep merge of values: tables merge key by key; lists are appended; write
  `key = { replace = [...] }` to replace a parent's list instead (or
  `{ append = [...] }` to say appending explicitly); other values are replaced.

Variables: `[variables]` declares them with defaults, `--set KEY=VALUE`
overrides them, and `${KEY}` in any string of a step or output is replaced
(`$$` is a literal `$`). Templates see the same variables.
"""

from __future__ import annotations

import copy
import os
import re
import tomllib
from pathlib import Path
from typing import Any

from appliance import paths
from appliance.errors import RecipeError
from appliance.recipe import registry
from appliance.recipe.model import OutputSpec, Recipe, StepSpec
from appliance.recipe.schema import Option, OptionError, Table, integer, string

DEFAULT_SOURCE_DATE_EPOCH = 1704067200  # 2024-01-01T00:00:00Z

RECIPE_TABLE = Table(
    (
        Option("name", string(pattern=r"[a-z0-9][a-z0-9._-]*", what="recipe name"), None,
               "name of the recipe; outputs are named after it (default: file name)"),
        Option("description", string(), "", "one line saying what the recipe builds"),
        Option("extends", string(), None,
               "recipe this one builds on: a path relative to this file, or a name in "
               "image_recipes/"),
        Option("templates-dir", string(), None,
               "where relative `source` paths of files/templates steps are looked up, "
               "relative to this file (default: the project's templates/)"),
        Option("source-date-epoch", integer(minimum=0), None,
               "timestamp that clamps every mtime (SOURCE_DATE_EPOCH in the environment "
               "overrides it)", kind="integer"),
    )
)

TOP_LEVEL = ("recipe", "variables", "steps", "outputs")
VAR_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_-]*")
SUBST = re.compile(r"\$(?:\$|\{([^}]*)\})")


# --- locating keys in files (for file:line in messages) ------------------------


def _line_of(path: Path, header: str, ordinal: int, key: str | None) -> int | None:
    """Line of `key` in the `ordinal`-th table named `header` in `path`
    (`[[steps]]`, `[recipe]`, `[outputs.squashfs]`...), or of the header."""
    try:
        lines = path.read_text().splitlines()
    except OSError:
        return None
    header_rx = re.compile(r"\s*\[+\s*" + re.escape(header) + r"\s*\]+\s*(#.*)?")
    key_rx = re.compile(r"\s*\"?" + re.escape(key) + r"\"?\s*=") if key else None
    seen = -1
    for i, line in enumerate(lines):
        if header_rx.fullmatch(line):
            seen += 1
            if seen != ordinal:
                continue
            if key_rx is None:
                return i + 1
            for j in range(i + 1, len(lines)):
                if re.match(r"\s*\[", lines[j]):
                    break
                if key_rx.match(lines[j]):
                    return j + 1
            return i + 1
    return None


def _err(path: Path, header: str, ordinal: int, key: str | None, msg: str) -> RecipeError:
    line = _line_of(path, header, ordinal, key)
    loc = f"{path}:{line}" if line else f"{path}"
    return RecipeError(f"{loc}: {msg}")


# --- reading and merging -------------------------------------------------------


def resolve(ref: str | os.PathLike[str] | None, relative_to: Path | None = None) -> Path:
    """A recipe reference → file: a path, or a name in image_recipes/."""
    if ref is None:
        ref = paths.DEFAULT_RECIPE
    ref = os.fspath(ref)
    candidates = []
    if relative_to is not None:
        candidates.append(relative_to / ref)
    else:
        candidates.append(Path(ref))
    name = ref if ref.endswith(".toml") else ref + ".toml"
    candidates.append(paths.recipes_dir() / name)
    for c in candidates:
        if c.is_file():
            return c.resolve()
    where = f" (from {relative_to})" if relative_to else ""
    raise RecipeError(
        f"recipe {ref!r} not found{where}: looked at "
        + ", ".join(str(c) for c in candidates)
    )


def _read(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text()
    except OSError as e:
        raise RecipeError(f"{path}: cannot read: {e.strerror}") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        m = re.search(r"\(at line (\d+), column (\d+)\)", str(e))
        loc = f"{path}:{m.group(1)}" if m else str(path)
        reason = re.sub(r"\s*\(at line.*\)", "", str(e))
        raise RecipeError(f"{loc}: not valid TOML: {reason}") from None
    for key in data:
        if key not in TOP_LEVEL:
            raise RecipeError(
                f"{path}: unknown top-level key {key!r}; a recipe has: {', '.join(TOP_LEVEL)}"
            )
    return data


def _merge_value(parent: Any, child: Any) -> Any:
    if isinstance(child, dict) and set(child) == {"replace"}:
        return copy.deepcopy(child["replace"])
    if isinstance(child, dict) and set(child) == {"append"}:
        child = child["append"]
        if not isinstance(parent, list):
            return copy.deepcopy(child)
    if isinstance(parent, dict) and isinstance(child, dict):
        out = dict(parent)
        for k, v in child.items():
            out[k] = _merge_value(parent[k], v) if k in parent else _strip_markers(v)
        return out
    if isinstance(parent, list) and isinstance(child, list):
        return parent + copy.deepcopy(child)
    return _strip_markers(child)


def _strip_markers(value: Any) -> Any:
    if isinstance(value, dict) and set(value) in ({"replace"}, {"append"}):
        return copy.deepcopy(next(iter(value.values())))
    if isinstance(value, dict):
        return {k: _strip_markers(v) for k, v in value.items()}
    return copy.deepcopy(value)


class _Layer:
    """One recipe file's raw content plus the provenance needed for messages."""

    def __init__(self, path: Path, data: dict[str, Any]) -> None:
        self.path = path
        self.data = data


def _load_chain(path: Path, stack: list[Path]) -> list[_Layer]:
    if path in stack:
        cycle = " -> ".join(str(p) for p in [*stack, path])
        raise RecipeError(f"{stack[-1]}: cyclic extends: {cycle}")
    data = _read(path)
    recipe = data.get("recipe", {})
    if not isinstance(recipe, dict):
        raise RecipeError(f"{path}: [recipe] must be a table")
    try:
        RECIPE_TABLE.parse(recipe)
    except OptionError as e:
        key = str(e.path[0]) if e.path else None
        raise _err(path, "recipe", 0, key, f"[recipe] {e.key_path()}: {e.reason}") from None
    layer = _Layer(path, data)
    parent = recipe.get("extends")
    if parent is None:
        return [layer]
    try:
        parent_path = resolve(parent, relative_to=path.parent)
    except RecipeError as e:
        raise _err(path, "recipe", 0, "extends", f"[recipe] extends: {e}") from None
    return [layer, *_load_chain(parent_path, [*stack, path])]


def _merged(chain: list[_Layer]) -> tuple[dict[str, Any], list[dict[str, Any]], dict[str, Any]]:
    """Merge from the root ancestor down. Returns (recipe table, steps, outputs);
    each step dict carries its provenance under the key "__origins__"."""
    recipe: dict[str, Any] = {}
    variables: dict[str, Any] = {}
    steps: list[dict[str, Any]] = []
    outputs: dict[str, Any] = {}
    for layer in reversed(chain):
        data = layer.data
        recipe.update({k: v for k, v in data.get("recipe", {}).items() if k != "extends"})
        vars_ = data.get("variables", {})
        if not isinstance(vars_, dict):
            raise RecipeError(f"{layer.path}: [variables] must be a table")
        variables.update(vars_)
        raw_steps = data.get("steps", [])
        if not isinstance(raw_steps, list) or not all(isinstance(s, dict) for s in raw_steps):
            raise RecipeError(f"{layer.path}: steps must be written as [[steps]] tables")
        names_here: set[str] = set()
        for ordinal, raw in enumerate(raw_steps):
            origin = (layer.path, ordinal)
            name = raw.get("name")
            if isinstance(name, str):
                if name in names_here:
                    raise _err(layer.path, "steps", ordinal, "name",
                               f"[[steps]] name {name!r} is used twice")
                names_here.add(name)
            target = next((s for s in steps if name is not None and s.get("name") == name), None)
            if target is None:
                step = _strip_markers(raw)
                step["__origins__"] = [origin]
                steps.append(step)
            else:
                origins = target.pop("__origins__")
                if "type" in raw and raw["type"] != target.get("type"):
                    raise _err(
                        layer.path, "steps", ordinal, "type",
                        f"[[steps]] {name!r}: type {raw['type']!r} differs from the "
                        f"extended recipe's {target.get('type')!r}",
                    )
                merged = _merge_value(target, raw)
                merged["__origins__"] = [origin, *origins]
                steps[steps.index(target)] = merged
        outs = data.get("outputs", {})
        if not isinstance(outs, dict) or not all(isinstance(v, dict) for v in outs.values()):
            raise RecipeError(f"{layer.path}: outputs must be written as [outputs.TYPE] tables")
        for otype, raw in outs.items():
            outputs[otype] = _merge_value(outputs.get(otype, {}), raw)
            outputs[otype].setdefault("__origins__", [])
            outputs[otype]["__origins__"] = [layer.path, *outputs[otype]["__origins__"]]
    recipe["__variables__"] = variables
    return recipe, steps, outputs


# --- variables -----------------------------------------------------------------


def _apply_variables(
    declared: dict[str, Any], given: dict[str, str], path: Path
) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in declared.items():
        if not VAR_NAME.fullmatch(key):
            raise _err(path, "variables", 0, key, f"[variables] {key!r} is not a valid name")
        if not isinstance(value, (str, int, bool, float)):
            raise _err(path, "variables", 0, key,
                       f"[variables] {key}: expected a string, number or boolean")
        out[key] = value
    for key, text in given.items():
        if key not in out:
            known = ", ".join(out) or "none"
            raise RecipeError(
                f"--set {key}: {path} declares no variable {key!r} (declared: {known})"
            )
        default = out[key]
        try:
            if isinstance(default, bool):
                if text.lower() not in ("true", "false"):
                    raise ValueError
                out[key] = text.lower() == "true"
            elif isinstance(default, int):
                out[key] = int(text)
            elif isinstance(default, float):
                out[key] = float(text)
            else:
                out[key] = text
        except ValueError:
            raise RecipeError(
                f"--set {key}={text}: expected a {type(default).__name__} like the "
                f"default {default!r}"
            ) from None
    return out


def _substitute(value: Any, variables: dict[str, Any]) -> Any:
    if isinstance(value, str):
        def repl(m: re.Match[str]) -> str:
            if m.group(0) == "$$":
                return "$"
            name = m.group(1)
            if name not in variables:
                raise OptionError(f"unknown variable ${{{name}}}")
            return str(variables[name])

        return SUBST.sub(repl, value)
    if isinstance(value, list):
        out = []
        for i, v in enumerate(value):
            try:
                out.append(_substitute(v, variables))
            except OptionError as e:
                raise e.prefixed(i) from None
        return out
    if isinstance(value, dict):
        res = {}
        for k, v in value.items():
            try:
                res[k] = _substitute(v, variables)
            except OptionError as e:
                raise e.prefixed(k) from None
        return res
    return value


# --- the entry point -------------------------------------------------------------


def load(
    ref: str | os.PathLike[str] | None,
    variables: dict[str, str] | None = None,
    *,
    validate_inputs: bool = True,
) -> Recipe:
    """Load, merge, substitute and validate a recipe. Raises RecipeError."""
    path = resolve(ref)
    chain = _load_chain(path, [])
    raw_recipe, raw_steps, raw_outputs = _merged(chain)
    declared = raw_recipe.pop("__variables__")
    name = raw_recipe.get("name") or path.stem
    tdir_raw = raw_recipe.get("templates-dir")
    templates_dir = (
        (path.parent / tdir_raw).resolve() if tdir_raw else paths.templates_dir()
    )
    env_epoch = os.environ.get("SOURCE_DATE_EPOCH")
    if env_epoch is not None:
        if not env_epoch.isdigit():
            raise RecipeError(f"SOURCE_DATE_EPOCH={env_epoch!r}: expected a number of seconds")
        epoch = int(env_epoch)
    else:
        epoch = raw_recipe.get("source-date-epoch") or DEFAULT_SOURCE_DATE_EPOCH
    values = _apply_variables(declared, variables or {}, path)
    template_vars = {"recipe_name": name, **values}

    steps: list[StepSpec] = []
    type_counts: dict[str, int] = {}
    for raw in raw_steps:
        origins: list[tuple[Path, int]] = raw.pop("__origins__")
        opath, ordinal = origins[0]

        def fail(key: str | None, msg: str, opath: Path = opath, ordinal: int = ordinal) -> None:
            raise _err(opath, "steps", ordinal, key, msg)

        stype = raw.pop("type", None)
        explicit_name = raw.pop("name", None)
        label = f"[[steps]] #{ordinal + 1}" + (f" {explicit_name!r}" if explicit_name else "")
        if stype is None:
            fail(None, f"{label}: missing key 'type' (one of: {', '.join(registry.step_types())})")
        if not isinstance(stype, str) or stype not in registry.step_types():
            fail("type", f"{label}: unknown step type {stype!r}; "
                 f"known types: {', '.join(registry.step_types())}")
        module = registry.step(stype)
        if explicit_name is not None and (
            not isinstance(explicit_name, str)
            or not re.fullmatch(r"[a-z0-9][a-z0-9._-]*", explicit_name)
        ):
            fail("name", f"{label}: name must be lowercase letters, digits, '.', '_' or '-'")
        type_counts[stype] = type_counts.get(stype, 0) + 1
        sname = explicit_name or (
            stype if type_counts[stype] == 1 else f"{stype}-{type_counts[stype]}"
        )
        try:
            opts = module.OPTIONS.parse(_substitute(raw, template_vars))
        except OptionError as e:
            fail(str(e.path[0]) if e.path else None,
                 f"[[steps]] {sname} ({stype}): {e.key_path()}: {e.reason}")
        steps.append(
            StepSpec(stype, sname, opts, origins, secrets=module.OPTIONS.secrets())
        )

    names = [s.name for s in steps]
    for s in steps:
        if names.count(s.name) > 1:
            p, o = s.origins[0]
            raise _err(p, "steps", o, "name", f"[[steps]] name {s.name!r} is used twice")
    if not steps or steps[0].type != "bootstrap":
        raise RecipeError(f"{path}: the first step must be of type 'bootstrap'")
    for s in steps[1:]:
        if s.type == "bootstrap":
            p, o = s.origins[0]
            raise _err(p, "steps", o, "type", f"[[steps]] {s.name}: only the first step "
                       "may be a bootstrap")

    outputs: list[OutputSpec] = []
    for otype, raw in raw_outputs.items():
        oorigins: list[Path] = raw.pop("__origins__")
        if otype not in registry.output_types():
            raise _err(oorigins[0], f"outputs.{otype}", 0, None,
                       f"[outputs.{otype}]: unknown output type; known types: "
                       f"{', '.join(registry.output_types())}")
        omod = registry.output(otype)
        try:
            oopts = omod.OPTIONS.parse(_substitute(raw, template_vars))
        except OptionError as e:
            raise _err(oorigins[0], f"outputs.{otype}", 0,
                       str(e.path[0]) if e.path else None,
                       f"[outputs.{otype}] {e.key_path()}: {e.reason}") from None
        if oopts.get("enabled", True):
            outputs.append(OutputSpec(otype, oopts, oorigins))

    recipe = Recipe(
        path=path,
        name=name,
        description=raw_recipe.get("description", ""),
        chain=[layer.path for layer in chain],
        templates_dir=templates_dir,
        source_date_epoch=epoch,
        variables=template_vars,
        steps=steps,
        outputs=outputs,
    )
    if validate_inputs:
        validate(recipe)
    return recipe


def validate(recipe: Recipe) -> None:
    """Per-step checks beyond option types (files exist, templates render...)."""
    for step in recipe.steps:
        module = registry.step(step.type)
        try:
            module.validate(step.options, recipe)
        except OptionError as e:
            p, o = step.origins[0]
            raise _err(p, "steps", o, str(e.path[0]) if e.path else None,
                       f"[[steps]] {step.name} ({step.type}): "
                       + (f"{e.key_path()}: " if e.path else "") + e.reason) from None
    for out in recipe.outputs:
        omod = registry.output(out.type)
        try:
            omod.validate(out.options, recipe)
        except OptionError as e:
            raise _err(out.origins[0], f"outputs.{out.type}", 0,
                       str(e.path[0]) if e.path else None,
                       f"[outputs.{out.type}] " + (f"{e.key_path()}: " if e.path else "")
                       + e.reason) from None
