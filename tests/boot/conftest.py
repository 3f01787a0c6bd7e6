"""The bootable test images, built once per session (shared step cache)."""

from __future__ import annotations

from pathlib import Path

import pytest

from appliance.engine import build as engine

from ..conftest import DATA, require_root

BROKEN = DATA / "recipes" / "test-boot-broken.toml"


def product(result: engine.BuildResult, name_suffix: str) -> Path:
    for p in result.products:
        if p.path.name.endswith(name_suffix):
            return p.path
    raise AssertionError(f"no product *{name_suffix} in {[p.path for p in result.products]}")


@pytest.fixture(scope="session")
def boot_build(build_cache: Path, tmp_path_factory: pytest.TempPathFactory) -> engine.BuildResult:
    """image_recipes/test-boot.toml with all its outputs: iso, disk (+qcow2), netboot."""
    require_root()
    out = tmp_path_factory.mktemp("out-boot")
    return engine.build("test-boot", outdir=out, cache_dir=build_cache)


@pytest.fixture(scope="session")
def broken_build(build_cache: Path, tmp_path_factory: pytest.TempPathFactory,
                 boot_build: engine.BuildResult) -> engine.BuildResult:
    """test-boot plus a failing unit; only the ISO (its steps reuse test-boot's cache)."""
    out = tmp_path_factory.mktemp("out-broken")
    return engine.build(BROKEN, outdir=out, cache_dir=build_cache, formats=["iso"])
