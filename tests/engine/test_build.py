"""Real builds with mmdebstrap: the tree, the cache, determinism, failures.

The test-outputs recipe (test-minimal + every output) is built once per
session into a session cache; later builds reuse that cache."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import stat
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from appliance.cli import main
from appliance.engine import build as engine
from appliance.engine.mounts import mountpoints_under
from appliance.errors import BuildError, RecipeError

from ..conftest import DATA, require_root

pytestmark = pytest.mark.e2e
RECIPE = DATA / "recipes" / "test-outputs.toml"


@pytest.fixture(scope="session")
def first_build(build_cache: Path, tmp_path_factory: pytest.TempPathFactory) -> engine.BuildResult:
    require_root()
    out = tmp_path_factory.mktemp("out-first")
    return engine.build(RECIPE, outdir=out, cache_dir=build_cache)


def product(result: engine.BuildResult, kind: str) -> Path:
    return next(p.path for p in result.products if p.type == kind)


def test_first_build_runs_every_step(first_build: engine.BuildResult) -> None:
    assert first_build.built == [s.name for s in first_build.steps]
    assert [p.type for p in first_build.products] == ["squashfs", "directory", "tar"]
    log = first_build.log_path
    assert log is not None and "mmdebstrap" in log.read_text()


def test_tree_has_overlay_files_with_modes(first_build: engine.BuildResult) -> None:
    root = product(first_build, "directory")
    hello = root / "usr/local/bin/appliance-hello"
    assert stat.S_IMODE(hello.stat().st_mode) == 0o755
    secret = root / "etc/appliance/secret.conf"
    assert stat.S_IMODE(secret.stat().st_mode) == 0o600
    assert secret.read_text() == "setting = 1\n"
    inline = root / "etc/appliance/inline.txt"
    assert stat.S_IMODE(inline.stat().st_mode) == 0o640
    assert (inline.stat().st_uid, inline.stat().st_gid) == (0, 0)


def test_templates_and_run_step_wrote_into_the_tree(first_build: engine.BuildResult) -> None:
    root = product(first_build, "directory")
    assert (root / "etc/motd").read_text() == (
        "Welcome to appliance-test (test-outputs): built by appliance\n"
    )
    assert (root / "etc/appliance/run-step.txt").read_text() == "ran inside the image\n"
    assert not (root / "usr/sbin/policy-rc.d").exists()


def test_service_enabled(first_build: engine.BuildResult) -> None:
    root = product(first_build, "directory")
    link = root / "etc/systemd/system/multi-user.target.wants/appliance-hello.service"
    assert os.readlink(link) == "/etc/systemd/system/appliance-hello.service"


def test_root_password_is_hashed_never_plain(first_build: engine.BuildResult) -> None:
    root = product(first_build, "directory")
    entry = next(ln for ln in (root / "etc/shadow").read_text().splitlines()
                 if ln.startswith("root:"))
    hashed = entry.split(":")[1]
    assert hashed.startswith("$6$")
    check = subprocess.run(
        ["openssl", "passwd", "-6", "-salt", hashed.split("$")[2], "appliance"],
        capture_output=True, text=True, check=True,
    )
    assert check.stdout.strip() == hashed
    leaked = subprocess.run(["grep", "-rIl", "--", "appliance-test-password-never", str(root)],
                            capture_output=True)
    assert leaked.returncode == 1


def test_system_settings_and_finalize(first_build: engine.BuildResult) -> None:
    root = product(first_build, "directory")
    assert (root / "etc/hostname").read_text() == "appliance-test\n"
    assert "127.0.1.1\tappliance-test" in (root / "etc/hosts").read_text()
    assert os.readlink(root / "etc/localtime") == "/usr/share/zoneinfo/Europe/Vienna"
    assert (root / "etc/timezone").read_text() == "Europe/Vienna\n"
    assert (root / "etc/default/locale").read_text() == "LANG=C.UTF-8\n"
    assert (root / "etc/machine-id").read_bytes() == b""
    assert not list((root / "var/lib/apt/lists").glob("*_*"))
    epoch = first_build.recipe.source_date_epoch
    assert max(p.lstat().st_mtime for p in (root / "etc").rglob("*")) <= epoch


def test_tar_output_lists_the_tree(first_build: engine.BuildResult) -> None:
    tarball = product(first_build, "tar")
    listing = subprocess.run(["tar", "--zstd", "-tvf", str(tarball)], capture_output=True,
                             text=True, check=True).stdout
    assert "./etc/motd" in listing
    assert "./etc/appliance/secret.conf" in listing and "-rw-------" in listing


def test_rebuild_takes_every_step_from_cache(
    first_build: engine.BuildResult, build_cache: Path, tmp_path: Path
) -> None:
    again = engine.build(RECIPE, outdir=tmp_path, cache_dir=build_cache, formats=["squashfs"])
    assert again.built == []
    assert product(again, "squashfs").read_bytes() == product(first_build,
                                                               "squashfs").read_bytes()


def test_changing_a_late_step_rebuilds_only_it_and_followers(
    first_build: engine.BuildResult, build_cache: Path, tmp_path: Path
) -> None:
    changed = engine.build(RECIPE, outdir=tmp_path, cache_dir=build_cache,
                           variables={"timezone": "Etc/UTC"}, formats=["directory"])
    assert changed.built == ["timezone", "hostname", "finalize"]
    assert (product(changed, "directory") / "etc/timezone").read_text() == "Etc/UTC\n"


def test_dry_run_shows_plan_with_cache_state(
    first_build: engine.BuildResult, build_cache: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["build", "--dry-run", "--json", "--cache-dir", str(build_cache),
                 str(RECIPE)]) == 0
    plan = json.loads(capsys.readouterr().out)
    assert plan["dry_run"] is True
    assert all(s["cached"] for s in plan["steps"])
    assert [s["name"] for s in plan["steps"]][-1] == "finalize"
    assert main(["build", "--dry-run", "--cache-dir", str(build_cache), str(RECIPE),
                 "--set", "motd=new"]) == 0
    text = capsys.readouterr().out
    assert "templates" in text and "to build" in text and "nothing was built" in text


def test_two_clean_builds_give_identical_squashfs(
    first_build: engine.BuildResult, tmp_path: Path
) -> None:
    clean = engine.build(RECIPE, outdir=tmp_path, cache_dir=tmp_path / "unused",
                         use_cache=False, formats=["squashfs"])
    assert clean.built == [s.name for s in clean.steps]
    first = next(p for p in first_build.products if p.type == "squashfs")
    assert clean.products[0].sha256 == first.sha256
    assert not (tmp_path / "unused").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".appliance-work")]


def _extend(tmp_path: Path, steps: str) -> Path:
    recipe = tmp_path / "broken.toml"
    recipe.write_text(f'[recipe]\nname = "broken"\nextends = "{RECIPE}"\n'
                      + textwrap.dedent(steps))
    return recipe


def test_failing_run_step_shows_command_and_output_and_leaves_no_mount(
    first_build: engine.BuildResult, build_cache: Path, tmp_path: Path
) -> None:
    recipe = _extend(tmp_path, """
        [[steps]]
        type = "run"
        commands = ["echo boom-output-line; exit 3"]
    """)
    with pytest.raises(BuildError, match="exit status 3") as exc:
        engine.build(recipe, outdir=tmp_path / "out", cache_dir=build_cache)
    msg = str(exc.value)
    assert "exit status 3" in msg and "boom-output-line" in msg and "exit 3" in msg
    assert mountpoints_under(build_cache) == []
    assert list((build_cache / "tmp").iterdir()) == []
    assert not list((tmp_path / "out").glob("*.squashfs"))


def test_interrupted_build_unmounts_everything(
    first_build: engine.BuildResult, build_cache: Path, tmp_path: Path
) -> None:
    recipe = _extend(tmp_path, """
        [[steps]]
        type = "run"
        commands = ["sleep 120"]
    """)
    proc = subprocess.Popen(
        [sys.executable, "-m", "appliance", "build", str(recipe), "-o", str(tmp_path / "out"),
         "--cache-dir", str(build_cache)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        start_new_session=True,  # its own process group: the chroot's `sleep` is in it
    )
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if any(p.name == "proc" for p in mountpoints_under(build_cache / "tmp")):
                break
            time.sleep(0.2)
        else:
            pytest.fail("the run step never started")
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
        assert proc.returncode == 130, err
        assert b"interrupted" in err
        assert mountpoints_under(build_cache) == []
        assert not (tmp_path / "out" / "broken.squashfs").exists()
    finally:
        # what the build started and left (the step's `sleep 120`): by group,
        # never by name (another `sleep 120` on this machine is not ours)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)


def test_cache_list_and_prune(
    first_build: engine.BuildResult, build_cache: Path, tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["cache", "list", "--json", "--cache-dir", str(build_cache)]) == 0
    entries = json.loads(capsys.readouterr().out)
    ids = {e["id"] for e in entries}
    assert {s.id for s in first_build.steps} <= ids
    assert {e["recipe"] for e in entries} >= {"test-outputs"}
    # prune --all on a copy of one real layer
    other = tmp_path / "cache2"
    (other / "layers").mkdir(parents=True)
    sid = first_build.steps[-1].id
    # cp -a: layers hold overlay whiteouts (character devices)
    subprocess.run(["cp", "-a", str(build_cache / "layers" / sid), str(other / "layers")],
                   check=True)
    assert main(["cache", "prune", "--older-than", "1", "--json", "--cache-dir",
                 str(other)]) == 0
    assert json.loads(capsys.readouterr().out)["removed"] == []
    assert main(["cache", "prune", "--all", "--json", "--cache-dir", str(other)]) == 0
    assert json.loads(capsys.readouterr().out)["removed"] == [sid]
    assert not (other / "layers" / sid).exists()


def test_guest_template_step_bundles_another_recipes_output(
    first_build: engine.BuildResult, build_cache: Path, tmp_path: Path
) -> None:
    """A ct template made of test-outputs' own tar (from the cache): the very
    same bytes, where the host layer looks for templates."""
    recipe = _extend(tmp_path, f"""
        [[steps]]
        type = "guest-template"
        kind = "ct"
        recipe = "{RECIPE}"
        template = "mini"
        variables = {{ timezone = "Etc/UTC" }}
    """)
    result = engine.build(recipe, outdir=tmp_path / "out", cache_dir=build_cache,
                          formats=["directory"])
    assert "guest-template" in result.built
    bundled = product(result, "directory") / "var/lib/appliance/templates/ct/mini.tar.zst"
    # the sub-build used the variables: its timezone step differs from first_build's
    listing = subprocess.run(["tar", "--zstd", "-xOf", str(bundled), "./etc/timezone"],
                             capture_output=True, text=True, check=True).stdout
    assert listing == "Etc/UTC\n"
    assert mountpoints_under(build_cache) == []


@pytest.mark.parametrize(("steps", "message"), [
    ('kind = "vm"\nrecipe = "{r}"\ntemplate = "x"', r"declares no \[outputs.rootfs\]"),
    ('kind = "ct"\nrecipe = "no-such.toml"\ntemplate = "x"', r"recipe 'no-such.toml' not found"),
    ('kind = "ct"\nrecipe = "{r}"\ntemplate = "x"\ncmdline = "quiet"',
     r"only VM templates have a kernel command line"),
    ('kind = "pod"\nrecipe = "{r}"\ntemplate = "x"', r"kind"),
])
def test_guest_template_step_refuses_bad_options(tmp_path: Path, steps: str,
                                                 message: str) -> None:
    recipe = tmp_path / "bad.toml"
    recipe.write_text(f'[recipe]\nname = "bad"\nextends = "{RECIPE}"\n[[steps]]\n'
                      f'type = "guest-template"\n{steps.format(r=RECIPE)}\n')
    with pytest.raises(RecipeError, match=message) as exc:
        engine.build(recipe, outdir=tmp_path / "out", dry_run=True)
    assert "bad.toml" in str(exc.value)
