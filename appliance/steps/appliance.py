"""appliance: install this project (Python package, compiled core, data) into the image.

The wheel is built on the build host from the project's own sources and
unpacked into the image's /usr/lib/python3/dist-packages; `/usr/bin/appliance`
runs it with the image's python3. The compiled parts (cffi extensions) are
built by the host's compiler for the host's Python, so the image must carry
the same Python minor version as the host: the step checks that, and the image
itself never carries a compiler. Its runtime dependencies are installed beside
it, as wheels, at exactly the versions pinned in deps/python-runtime.txt (the
ones the test venv runs with). Recipes, templates and the web UI go to
/usr/share/appliance (appliance.paths finds them there)."""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path
from typing import Any

from appliance import paths
from appliance.digest import sha256_file
from appliance.engine.context import StepContext, resolve_in_tree
from appliance.errors import BuildError
from appliance.recipe.model import Recipe
from appliance.recipe.schema import Option, OptionError, Table, string_list

NAME = "appliance"
VERSION = 1
HELP = (
    "Install the appliance package itself (with its compiled hypervisor core) into the "
    "image: built as a wheel on the build host, unpacked into /usr/lib/python3/dist-packages "
    "with its pinned runtime dependencies (deps/python-runtime.txt, as wheels), "
    "`appliance` in /usr/bin, project data (recipes, templates, web UI) in "
    "/usr/share/appliance. The image's Python must be the build host's version."
)

# What a wheel is built from (relative to the project root).
SOURCES = ("pyproject.toml", "setup.py", "README.md", "appliance", "native")
RUNTIME_LOCK = "deps/python-runtime.txt"
DATA_DIRS = ("image_recipes", "templates", "webui")
SKIP = ("__pycache__", ".pyc", ".so", ".o", ".egg-info")

OPTIONS = Table((
    Option("data", string_list(choices=DATA_DIRS), list(DATA_DIRS),
           "project data directories copied to /usr/share/appliance", kind="list of strings"),
))

SCRIPT = """#!/usr/bin/python3
# appliance command line (installed by the recipe step `appliance`).
import sys

from appliance.cli import main

sys.exit(main())
"""


def project_root() -> Path:
    return paths.PACKAGE_DIR.parent


def _files(root: Path, names: tuple[str, ...]) -> list[Path]:
    out: list[Path] = []
    for name in names:
        p = root / name
        if p.is_file():
            out.append(p)
        elif p.is_dir():
            out.extend(f for f in sorted(p.rglob("*")) if f.is_file()
                       and not any(part.endswith(SKIP) for part in f.relative_to(root).parts))
    return out


def validate(options: dict[str, Any], recipe: Recipe) -> None:
    root = project_root()
    if not (root / "pyproject.toml").is_file():
        raise OptionError(f"{root} is not an appliance source checkout (no pyproject.toml): "
                          "this step builds the package from its sources")
    if not (root / RUNTIME_LOCK).is_file():
        raise OptionError(f"{root / RUNTIME_LOCK} is missing: it pins the runtime dependencies "
                          "this step installs")


def cache_inputs(options: dict[str, Any], recipe: Recipe) -> Any:
    root = project_root()
    files = _files(root, (*SOURCES, RUNTIME_LOCK, *options["data"]))
    return [[str(f.relative_to(root)), sha256_file(f)] for f in files]


def _tree_python(ctx: StepContext) -> str:
    want = f"python{sys.version_info.major}.{sys.version_info.minor}"
    if not ctx.path(f"/usr/bin/{want}", follow=True).exists():
        found = sorted(p.name for p in ctx.path("/usr/bin").glob("python3.*")
                       if p.name[7:].isdigit())
        ctx.fail(f"the image has {', '.join(found) or 'no python3'} but the build host runs "
                 f"{want}: the compiled core would not load there (install python3 in an "
                 "earlier step and build on a host of the image's Debian release)")
    return want


def run(ctx: StepContext) -> None:
    _tree_python(ctx)
    try:
        install(ctx.tree, ctx.scratch, list(ctx.options["data"]))  # type: ignore[call-overload]
    except BuildError as e:
        ctx.fail(str(e))


def install(tree: Path, scratch: Path, data: list[str]) -> None:
    """Build the wheel and unpack it (and the data directories) into `tree`."""
    root = project_root()
    with tempfile.TemporaryDirectory(dir=scratch) as tmp:
        src, out = Path(tmp, "src"), Path(tmp, "wheel")
        for f in _files(root, SOURCES):
            dest = src / f.relative_to(root)
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(f, dest)
        proc = subprocess.run(
            [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "--disable-pip-version-check",
             "-w", str(out), str(src)],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, check=False)
        if proc.returncode != 0:
            tail = proc.stdout.decode(errors="replace").strip().splitlines()[-15:]
            raise BuildError("building the appliance wheel failed:\n" + "\n".join(tail))
        wheels = sorted(out.glob("appliance-*.whl"))
        if len(wheels) != 1:
            raise BuildError(f"expected one appliance wheel, pip wrote {[w.name for w in wheels]}")
        site = resolve_in_tree(tree, "/usr/lib/python3/dist-packages")
        site.mkdir(parents=True, exist_ok=True)
        with zipfile.ZipFile(wheels[0]) as whl:
            for name in whl.namelist():
                if name.split("/", 1)[0].endswith(".data"):
                    raise BuildError(f"the wheel carries {name}: data files are not supported")
            whl.extractall(site)
        _install_runtime_deps(root / RUNTIME_LOCK, site, Path(tmp, "deps"))
    script = resolve_in_tree(tree, "/usr/bin/appliance")
    script.write_text(SCRIPT)
    script.chmod(0o755)
    share = resolve_in_tree(tree, "/usr/share/appliance")
    for d in data:
        if (root / d).is_dir():
            shutil.copytree(root / d, share / d, dirs_exist_ok=True,
                            ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))


def _install_runtime_deps(lock: Path, site: Path, stage: Path) -> None:
    """Install the pinned wheels of `lock` into `site` (the image's dist-packages).

    Wheels only (nothing is compiled for the image), no dependency resolution
    (the lock is the whole closure), no byte-compiling. A file that is already
    in the image (e.g. from a Debian python3-* package) is refused: two
    versions of one package would make the image run something untested."""
    proc = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--no-deps", "--only-binary=:all:",
         "--no-compile", "--disable-pip-version-check", "-q", "--target", str(stage),
         "-r", str(lock)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, check=False)
    if proc.returncode != 0:
        lines = [ln for ln in proc.stdout.decode(errors="replace").splitlines()
                 if not ln.startswith("WARNING: Location")]
        raise BuildError(f"installing the runtime dependencies pinned in {lock} failed:\n"
                         + "\n".join(lines[-15:]))
    entries = sorted(p for p in stage.iterdir() if p.name != "bin")
    clashes = [p.name for p in entries if (site / p.name).exists()]
    if clashes:
        raise BuildError(
            f"the image already has {', '.join(clashes)} in {site.name} (from a Debian python3-* "
            f"package?): {lock.name} pins these itself; drop those packages from the recipe")
    for p in entries:
        shutil.move(p, site / p.name)
