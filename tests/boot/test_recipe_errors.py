"""Bad output sections fail with file:line, key and reason before any work."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from appliance.engine import build as engine
from appliance.errors import RecipeError


def recipe(tmp_path: Path, body: str) -> Path:
    path = tmp_path / "bad.toml"
    path.write_text('[recipe]\nname = "bad"\nextends = "test-boot"\n' + textwrap.dedent(body))
    return path


def dry_run_error(path: Path, tmp_path: Path) -> str:
    # file:line: [outputs.TYPE] what is wrong
    with pytest.raises(RecipeError, match=r"^/\S+\.toml:\d+: \[outputs\.\w+\] ") as e:
        engine.build(path, outdir=tmp_path / "out", cache_dir=tmp_path / "cache", dry_run=True)
    assert not (tmp_path / "out").exists()  # nothing was started
    return str(e.value)


def test_disk_size_too_small_for_the_partitions(tmp_path: Path) -> None:
    msg = dry_run_error(recipe(tmp_path, """
        [outputs.disk]
        size = "100M"
    """), tmp_path)
    assert "bad.toml:" in msg and "[outputs.disk] size:" in msg
    assert "100M is too small" in msg and "need 131M" in msg


def test_disk_size_that_is_not_a_size(tmp_path: Path) -> None:
    msg = dry_run_error(recipe(tmp_path, """
        [outputs.disk]
        size = "2 lots"
    """), tmp_path)
    assert "[outputs.disk] size: '2 lots' is not a valid size" in msg


def test_esp_smaller_than_a_usable_fat(tmp_path: Path) -> None:
    msg = dry_run_error(recipe(tmp_path, """
        [outputs.disk]
        esp-size = "1M"
    """), tmp_path)
    assert "esp-size: 1M is too small for an EFI system partition" in msg


def test_unknown_firmware(tmp_path: Path) -> None:
    msg = dry_run_error(recipe(tmp_path, """
        [outputs.iso]
        firmware = ["bios", "coreboot"]
    """), tmp_path)
    assert "[outputs.iso] firmware[1]: 'coreboot' is not one of: bios, uefi" in msg


def test_missing_grub_package_in_the_tree(tmp_path: Path) -> None:
    path = tmp_path / "nogrub.toml"
    path.write_text(textwrap.dedent("""
        [recipe]
        name = "nogrub"
        extends = "base"

        [outputs.disk]
    """))
    msg = dry_run_error(path, tmp_path)
    assert "nogrub.toml" in msg and "[outputs.disk] firmware:" in msg
    assert "needs GRUB for bios, but no step installs grub-pc-bin or grub-pc" in msg


def test_missing_live_boot_for_the_iso(tmp_path: Path) -> None:
    path = tmp_path / "nolive.toml"
    path.write_text(textwrap.dedent("""
        [recipe]
        name = "nolive"
        extends = "base"

        [[steps]]
        name = "bootstrap"
        include = ["grub-pc-bin", "grub-efi-amd64-bin"]

        [outputs.iso]
    """))
    msg = dry_run_error(path, tmp_path)
    assert "needs live-boot, but no step installs live-boot" in msg


def test_removed_grub_package_counts_as_missing(tmp_path: Path) -> None:
    msg = dry_run_error(recipe(tmp_path, """
        [[steps]]
        type = "packages"
        name = "drop-grub"
        remove = ["grub-efi-amd64-bin"]

        [outputs.disk]
        firmware = ["uefi"]
    """), tmp_path)
    assert "needs GRUB for uefi" in msg


def test_bios_only_disk_does_not_need_uefi_grub(tmp_path: Path) -> None:
    path = recipe(tmp_path, """
        [[steps]]
        type = "packages"
        name = "drop-grub"
        remove = ["grub-efi-amd64-bin"]

        [outputs.disk]
        firmware = ["bios"]
        size = "2G"

        [outputs.iso]
        enabled = false
    """)
    result = engine.build(path, outdir=tmp_path / "out", cache_dir=tmp_path / "cache",
                          dry_run=True)
    assert [o.type for o in result.recipe.outputs] == ["disk", "netboot"]
