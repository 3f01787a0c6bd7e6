"""`appliance build`: plan a recipe into chained cached steps, run what is
not cached (each step an overlay layer over the steps before it), then write
the outputs from the finished tree."""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

from appliance.digest import sha256_file
from appliance.engine import finalize, mounts
from appliance.engine.cache import Cache, step_id
from appliance.engine.context import OutputContext, StepContext
from appliance.engine.progress import Progress
from appliance.errors import ApplianceError, RecipeError
from appliance.recipe import loader, registry
from appliance.recipe.model import Recipe, StepSpec
from appliance.runner import require_tools

log = logging.getLogger("appliance.build")

BASE_TOOLS = ("mount", "umount", "chroot")


@dataclass
class PlannedStep:
    name: str
    type: str
    id: str
    cached: bool
    module: ModuleType
    spec: StepSpec


@dataclass
class Product:
    type: str
    path: Path
    size: int
    sha256: str | None


@dataclass
class BuildResult:
    recipe: Recipe
    steps: list[PlannedStep]
    outdir: Path
    dry_run: bool
    products: list[Product] = field(default_factory=list)
    built: list[str] = field(default_factory=list)  # names of steps that ran
    seconds: float = 0.0
    log_path: Path | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "recipe": self.recipe.name,
            "file": str(self.recipe.path),
            "dry_run": self.dry_run,
            "steps": [
                {"name": s.name, "type": s.type, "id": s.id, "cached": s.cached,
                 "built": s.name in self.built}
                for s in self.steps
            ],
            "outputs": [
                {"type": p.type, "path": str(p.path), "size": p.size, "sha256": p.sha256}
                for p in self.products
            ],
            "seconds": round(self.seconds, 2),
            "log": str(self.log_path) if self.log_path else None,
        }


def _options_for_key(spec: StepSpec) -> dict[str, Any]:
    """Options as they enter the cache id: secrets only as a hash."""
    out = {}
    for k, v in spec.options.items():
        if k in spec.secrets and v:
            v = "sha256:" + hashlib.sha256(json.dumps(v).encode()).hexdigest()
        out[k] = v
    return out


def plan(recipe: Recipe, cache: Cache | None) -> list[PlannedStep]:
    """Every step with its chained id and whether the cache has it."""
    steps: list[PlannedStep] = []
    parent: str | None = None
    specs = [*recipe.steps, StepSpec("finalize", "finalize", {}, [])]
    for spec in specs:
        module = finalize if spec.type == "finalize" else registry.step(spec.type)
        inputs = None
        if hasattr(module, "cache_inputs"):
            inputs = module.cache_inputs(spec.options, recipe)
        sid = step_id(
            parent,
            spec.type,
            getattr(module, "VERSION", 1),
            _options_for_key(spec),
            {"inputs": inputs, "source_date_epoch": recipe.source_date_epoch},
        )
        cached = cache is not None and cache.has(sid)
        steps.append(PlannedStep(spec.name, spec.type, sid, cached, module, spec))
        parent = sid
    # A step is only reused if every step before it is too (ids chain anyway).
    return steps


def _select_outputs(recipe: Recipe, formats: list[str] | None) -> list[Any]:
    if not formats:
        return list(recipe.outputs)
    declared = {o.type: o for o in recipe.outputs}
    chosen = []
    for f in formats:
        if f not in declared:
            raise RecipeError(
                f"{recipe.path}: --format {f}: the recipe declares no [outputs.{f}] "
                f"(declared: {', '.join(declared) or 'none'})"
            )
        chosen.append(declared[f])
    return chosen


def _check_tools(recipe: Recipe, outputs: list[Any]) -> None:
    tools = set(BASE_TOOLS)
    for s in recipe.steps:
        tools.update(getattr(registry.step(s.type), "TOOLS", ()))
    for o in outputs:
        tools.update(getattr(registry.output(o.type), "TOOLS", ()))
    require_tools(*sorted(tools), why=f"to build {recipe.path.name}")


def _place(src: Path, dest: Path) -> None:
    """Move a finished product into place, replacing an older one atomically."""
    if dest.is_dir() and not dest.is_symlink():
        old = dest.with_name(f".{dest.name}.old")
        shutil.rmtree(old, ignore_errors=True)
        os.rename(dest, old)
        os.rename(src, dest)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(src, dest)


@contextlib.contextmanager
def _build_log(path: Path) -> Any:
    handler = logging.FileHandler(path, mode="w")
    handler.setLevel(logging.DEBUG)
    handler.setFormatter(logging.Formatter("%(asctime)s %(name)s: %(message)s"))
    root = logging.getLogger("appliance")
    old_level = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    try:
        yield
    finally:
        root.removeHandler(handler)
        root.setLevel(old_level)
        handler.close()


def _run_step(ps: PlannedStep, recipe: Recipe, tree: Path, scratch: Path,
              cache_dir: Path) -> None:
    ctx = StepContext(recipe=recipe, step=ps.spec, tree=tree, scratch=scratch,
                      cache_dir=cache_dir)
    try:
        ps.module.run(ctx)
    finally:
        ctx.close()


def build(
    recipe: str | os.PathLike[str] | None,
    outdir: str | os.PathLike[str] = "out",
    cache_dir: str | os.PathLike[str] = "/var/cache/appliance",
    variables: dict[str, str] | None = None,
    dry_run: bool = False,
    use_cache: bool = True,
    formats: list[str] | None = None,
    progress_stream: Any = None,
) -> BuildResult:
    rec = loader.load(recipe, variables)
    outputs = _select_outputs(rec, formats)
    _check_tools(rec, outputs)
    cache = Cache(Path(cache_dir)) if use_cache else None
    steps = plan(rec, cache)
    out = Path(outdir).resolve()
    result = BuildResult(rec, steps, out, dry_run)
    if dry_run:
        return result
    if os.geteuid() != 0:
        raise ApplianceError(
            "appliance build must run as root: it bootstraps with mmdebstrap and mounts "
            "overlays and chroots (try: sudo appliance build ...)"
        )
    out.mkdir(parents=True, exist_ok=True)
    work = out / f".appliance-work.{os.getpid()}"
    result.log_path = out / "build.log"
    t_start = time.monotonic()
    progress = Progress(len(steps) + len(outputs), progress_stream)
    with _build_log(result.log_path), mounts.sigterm_as_interrupt(), contextlib.ExitStack() as st:
        if cache is None:
            cache = Cache(work / "cache")
        st.callback(_cleanup, work)
        cache.prepare()
        log.info("building %s (%d steps, %d outputs)", rec.path, len(steps), len(outputs))
        lowers: list[Path] = []
        for i, ps in enumerate(steps):
            label = ps.name if ps.name == ps.type else f"{ps.name} ({ps.type})"
            if cache.has(ps.id):
                cache.touch(ps.id)
                progress.cached(i + 1, label)
                lowers.append(cache.tree(ps.id))
                continue
            progress.start(i + 1, label)
            try:
                with cache.staging(ps.id) as stage:
                    upper = stage / "tree"
                    upper.mkdir()
                    scratch = stage / "scratch"
                    scratch.mkdir()
                    t0 = time.monotonic()
                    if not lowers:
                        _run_step(ps, rec, upper, scratch, cache.root)
                    else:
                        with mounts.overlay(list(reversed(lowers)), upper, stage / "work",
                                            stage / "mnt") as tree:
                            _run_step(ps, rec, tree, scratch, cache.root)
                    shutil.rmtree(scratch)
                    cache.commit(ps.id, stage, {
                        "step": ps.name, "type": ps.type, "recipe": rec.name,
                        "parent": steps[i - 1].id if i else None, "created": time.time(),
                        "seconds": round(time.monotonic() - t0, 2),
                        "options": ps.spec.public_options(),
                    })
            except BaseException:
                progress.finish("FAILED")
                raise
            progress.finish("built")
            result.built.append(ps.name)
            lowers.append(cache.tree(ps.id))
        view = work / "view"
        with mounts.overlay(list(reversed(lowers)), None, None, view):
            for j, o in enumerate(outputs):
                progress.start(len(steps) + j + 1, f"output {o.type}")
                scratch = work / f"output-{o.type}"
                scratch.mkdir(parents=True)
                octx = OutputContext(rec, o.options, view, out, scratch)
                try:
                    made = registry.output(o.type).write(octx)
                except BaseException:
                    progress.finish("FAILED")
                    raise
                for src in made:
                    dest = out / src.name
                    _place(src, dest)
                    is_file = dest.is_file()
                    result.products.append(Product(
                        o.type, dest, dest.stat().st_size if is_file else 0,
                        sha256_file(dest) if is_file else None,
                    ))
                progress.finish("written")
    result.seconds = time.monotonic() - t_start
    log.info("done in %.1fs", result.seconds)
    return result


def _cleanup(work: Path) -> None:
    if work.exists():
        mounts.umount_all_under(work)
        shutil.rmtree(work, ignore_errors=True)


def print_summary(result: BuildResult) -> None:
    rec = result.recipe
    if result.dry_run:
        print(f"plan for {rec.path} ({len(result.steps)} steps):")
        for i, s in enumerate(result.steps, 1):
            state = "cached" if s.cached else "to build"
            print(f"  {i:2}. {s.name:20} {s.type:10} {s.id[:16]}  {state}")
        outs = ", ".join(o.type for o in rec.outputs) or "none"
        print(f"outputs: {outs}")
        print("recipe and every step validated; nothing was built (--dry-run)")
        return
    print(f"built {rec.name} in {result.seconds:.1f}s "
          f"({len(result.built)} of {len(result.steps)} steps built, rest cached)")
    for p in result.products:
        if p.sha256:
            print(f"  {p.type:9} {p.path}  {p.size / 2**20:.1f} MiB  sha256 {p.sha256}")
        else:
            print(f"  {p.type:9} {p.path}/")
    print(f"  log       {result.log_path}")
    for p in result.products:
        usage = getattr(registry.output(p.type), "usage", None)
        if usage is not None:
            print(f"{p.path.name}: {usage(p.path)}")
