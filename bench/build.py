#!/usr/bin/env python3
"""Build benchmark: `appliance build` of host.toml against the same work done
by a plain `mmdebstrap ... && mksquashfs ...` pipeline, in the same run (the
recipe's `run` steps as mmdebstrap customize hooks, its `appliance` step by
the same wheel build, its bundled guest templates by the same plain pipeline
of their recipes plus tar or mkfs.ext4; the small file/service steps are
left out of the baseline, which favours the baseline).

Prints:
  cold ratio  = cold appliance build / plain pipeline        (target <= 1.15)
  warm ratio  = rebuild after changing one overlay file / cold (target <= 0.15)

Run as root from the checkout: .venv/bin/python bench/build.py [--recipe host]
"""

from __future__ import annotations

import argparse
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from appliance.engine import build as engine  # noqa: E402
from appliance.recipe import loader  # noqa: E402
from appliance.recipe.model import Recipe  # noqa: E402
from appliance.steps import appliance as appliance_step  # noqa: E402
from appliance.steps import bootstrap  # noqa: E402


def timed(fn) -> tuple[float, object]:  # type: ignore[no-untyped-def]
    t0 = time.monotonic()
    res = fn()
    return time.monotonic() - t0, res


def env(recipe: Recipe) -> dict[str, str]:
    return {"SOURCE_DATE_EPOCH": str(recipe.source_date_epoch),
            "PATH": "/usr/sbin:/usr/bin:/sbin:/bin"}


def mmdebstrap(recipe: Recipe, tree: Path) -> None:
    """The plain pipeline's tree: one mmdebstrap run with the recipe's
    bootstrap options and its `run` steps as customize hooks."""
    boot = recipe.steps[0].options
    argv = [
        "mmdebstrap", "--mode=root", f"--variant={boot['variant']}",
        f"--architectures={boot['architecture']}", f"--components={','.join(boot['components'])}",
    ]
    if boot["include"]:
        argv.append("--include=" + ",".join(boot["include"]))
    for step in recipe.steps:
        if step.type == "run" and step.options.get("script"):
            script = recipe.templates_dir / str(step.options["script"])
            argv += [f"--customize-hook=copy-in {script} /tmp",
                     f'--customize-hook=chroot "$1" /tmp/{script.name}',
                     f'--customize-hook=rm "$1/tmp/{script.name}"']
        elif step.type == "run" and step.options.get("commands"):
            argv += [f"--customize-hook=chroot \"$1\" /bin/sh -c {shlex.quote(c)}"
                     for c in step.options["commands"]]  # type: ignore[attr-defined]
    argv += [boot["suite"], str(tree), *bootstrap.sources(boot)]
    subprocess.run(argv, check=True, env=env(recipe), stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL)


def plain_template(options: dict[str, object], recipe: Recipe, tree: Path,
                   work: Path) -> None:
    """A guest-template step done plainly: mmdebstrap its recipe, then tar
    (container) or mkfs.ext4 -d (VM disk, the tree's size plus a quarter),
    copied where the step puts it."""
    sub = loader.load(loader.resolve(str(options["recipe"]), recipe.path.parent),
                      options["variables"])  # type: ignore[arg-type]
    sub_tree = work / f"plain-{sub.name}"
    mmdebstrap(sub, sub_tree)
    dest = tree / "var/lib/appliance/templates" / str(options["kind"])
    dest.mkdir(parents=True, exist_ok=True)
    if options["kind"] == "ct":
        subprocess.run(f"tar -C {sub_tree} --numeric-owner -cf - . | zstd -q -3 -T0 "
                       f"-o {dest / options['template']}.tar.zst", shell=True, check=True)
    else:
        vm = dest / str(options["template"])
        vm.mkdir()
        boot = sorted((sub_tree / "boot").glob("vmlinuz-*"))[-1]
        shutil.copyfile(boot, vm / "vmlinuz")
        shutil.copyfile(sorted((sub_tree / "boot").glob("initrd.img-*"))[-1], vm / "initrd.img")
        used = int(subprocess.run(["du", "-sb", str(sub_tree)], capture_output=True, text=True,
                                  check=True).stdout.split()[0])
        with open(vm / "root.img", "wb") as f:
            f.truncate(used * 5 // 4 + (128 << 20))
        subprocess.run(["mkfs.ext4", "-q", "-F", "-d", str(sub_tree), str(vm / "root.img")],
                       check=True)
    shutil.rmtree(sub_tree)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--recipe", default="host")
    ap.add_argument("--workdir", default=None, help="scratch directory (default: a temp dir)")
    args = ap.parse_args()
    work = Path(args.workdir or tempfile.mkdtemp(prefix="appliance-bench-"))
    work.mkdir(parents=True, exist_ok=True)

    # The bench recipe: the real recipe plus one overlay, so a warm rebuild
    # after editing one overlay file can be measured without touching the repo.
    # (the recipe's own templates, plus the bench overlay, in one templates dir)
    shutil.copytree(ROOT / "templates", work / "templates", symlinks=True)
    overlay = work / "templates" / "bench-overlay" / "etc" / "appliance"
    overlay.mkdir(parents=True)
    (overlay / "bench.conf").write_text("generation = 1\n")
    base = loader.resolve(args.recipe)
    recipe_file = work / "bench.toml"
    recipe_file.write_text(
        f'[recipe]\nname = "bench"\nextends = "{base}"\ntemplates-dir = "templates"\n'
        '[[steps]]\ntype = "files"\nname = "bench-overlay"\noverlay = ["bench-overlay"]\n'
    )
    recipe = loader.load(recipe_file)
    squash = next(o.options for o in recipe.outputs if o.type == "squashfs")
    plain_tree = work / "plain-tree"

    def plain() -> None:
        mmdebstrap(recipe, plain_tree)
        if any(step.type == "appliance" for step in recipe.steps):
            # the same wheel build and unpacking as the `appliance` step
            appliance_step.install(plain_tree, work, list(appliance_step.DATA_DIRS))
        # the bundled guest templates: their recipes the same plain way
        for step in recipe.steps:
            if step.type == "guest-template":
                plain_template(step.options, recipe, plain_tree, work)
        subprocess.run(["mksquashfs", str(plain_tree), str(work / "plain.squashfs"), "-noappend",
                        "-quiet", "-no-progress", "-comp", "zstd", "-Xcompression-level",
                        str(squash["compression-level"]), "-b", squash["block-size"]],
                       check=True, env=env(recipe), stdout=subprocess.DEVNULL)

    t_plain, _ = timed(plain)
    print(f"plain mmdebstrap + mksquashfs: {t_plain:7.1f}s  "
          f"({(work / 'plain.squashfs').stat().st_size / 2**20:.1f} MiB)", flush=True)
    shutil.rmtree(plain_tree)

    # 2. cold appliance build (empty cache)
    cache = work / "cache"

    def ours() -> engine.BuildResult:
        return engine.build(recipe_file, outdir=work / "out", cache_dir=cache,
                            formats=["squashfs"], progress_stream=open("/dev/null", "w"))

    t_cold, res = timed(ours)
    size = res.products[0].size  # type: ignore[attr-defined]
    print(f"appliance build, cold:         {t_cold:7.1f}s  ({size / 2**20:.1f} MiB)", flush=True)

    # 3. warm: one overlay file changed
    (overlay / "bench.conf").write_text("generation = 2\n")
    t_warm, res = timed(ours)
    built = res.built  # type: ignore[attr-defined]
    print(f"appliance build, warm:         {t_warm:7.1f}s  (rebuilt: {', '.join(built)})")
    print(f"cold ratio (cold / plain): {t_cold / t_plain:.2f}  (target <= 1.15)")
    print(f"warm ratio (warm / cold):  {t_warm / t_cold:.2f}  (target <= 0.15)")
    if not args.workdir:
        subprocess.run(["rm", "-rf", str(work)], check=False)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
