"""Checks that happen before any work starts: host tools, root, formats."""

from __future__ import annotations

from pathlib import Path

import pytest

from appliance.cli import main


def test_missing_host_tool_is_named_before_any_work(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))  # an empty PATH: no mmdebstrap, no mksquashfs
    out = tmp_path / "out"
    assert main(["build", "test-minimal", "-o", str(out), "--cache-dir",
                 str(tmp_path / "c")]) == 4
    err = capsys.readouterr().err
    assert "missing host tools" in err and "mmdebstrap" in err and "mksquashfs" in err
    assert not out.exists() and not (tmp_path / "c").exists()


def test_build_as_non_root_is_refused_clearly(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr("os.geteuid", lambda: 1000)
    out = tmp_path / "out"
    assert main(["build", "test-minimal", "-o", str(out), "--cache-dir",
                 str(tmp_path / "c")]) == 1
    assert "must run as root" in capsys.readouterr().err
    assert not out.exists()


def test_dry_run_works_without_root(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr("os.geteuid", lambda: 1000)
    assert main(["build", "--dry-run", "test-minimal", "--cache-dir", str(tmp_path)]) == 0
    assert "to build" in capsys.readouterr().out


def test_unknown_format_names_declared_outputs(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["build", "--dry-run", "test-minimal", "--format", "iso9660",
                 "--cache-dir", str(tmp_path)]) == 2
    assert "declares no [outputs.iso9660] (declared: squashfs)" in capsys.readouterr().err


def test_missing_recipe_is_a_clear_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["recipe", "show", "no-such-recipe"]) == 2
    assert "recipe 'no-such-recipe' not found" in capsys.readouterr().err


def test_recipe_steps_reference_lists_every_type(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["recipe", "steps"]) == 0
    text = capsys.readouterr().out
    for kind in ("bootstrap", "packages", "files", "templates", "run", "users", "services",
                 "hostname", "locale", "timezone", "[outputs.squashfs]", "[outputs.tar]"):
        assert kind in text
