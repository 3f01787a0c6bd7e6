"""Step and output types are modules: adding a file to appliance/steps/ or
appliance/outputs/ registers a type. Each module declares:

    NAME: str                 the `type` used in recipes
    HELP: str                 one paragraph for `appliance recipe steps`
    OPTIONS: Table            its options (parsing, defaults, docs, cache key)
    validate(options, recipe) checks beyond types; raises OptionError
    run(ctx) / write(ctx)     does the work (steps / outputs)

Steps may also define `TOOLS` (host tools needed) and `cache_inputs(options,
recipe)`: extra data that must change the step's cache id (file hashes, the
resolved apt sources...).
"""

from __future__ import annotations

import importlib
import pkgutil
from functools import cache
from types import ModuleType

import appliance.outputs
import appliance.steps


def _discover(package: ModuleType) -> dict[str, ModuleType]:
    found: dict[str, ModuleType] = {}
    for info in pkgutil.iter_modules(package.__path__):
        if info.name.startswith("_"):
            continue
        mod = importlib.import_module(f"{package.__name__}.{info.name}")
        name = getattr(mod, "NAME", None)
        if isinstance(name, str):
            found[name] = mod
    return found


@cache
def _steps() -> dict[str, ModuleType]:
    return _discover(appliance.steps)


@cache
def _outputs() -> dict[str, ModuleType]:
    return _discover(appliance.outputs)


def step_types() -> list[str]:
    return list(_steps())


def output_types() -> list[str]:
    return list(_outputs())


def step(name: str) -> ModuleType:
    return _steps()[name]


def output(name: str) -> ModuleType:
    return _outputs()[name]
