"""Installer files holding secrets are never readable by others, not even
between their creation and a chmod (issue 19, item 7)."""

from __future__ import annotations

import logging
import os
import stat
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from appliance.installer import main, run, target
from appliance.installer.files import write_private


def modes_while_writing(monkeypatch: pytest.MonkeyPatch, path: Path) -> list[int]:
    """The file's permission bits each time bytes are written to it."""
    seen: list[int] = []
    real: Callable[[int, bytes], int] = os.write

    def spy(fd: int, data: bytes) -> int:
        if os.path.exists(path) and os.fstat(fd).st_ino == os.stat(path).st_ino:
            seen.append(stat.S_IMODE(os.fstat(fd).st_mode))
        return real(fd, data)

    monkeypatch.setattr(os, "write", spy)
    return seen


@pytest.fixture(autouse=True)
def open_umask() -> Iterator[None]:
    old = os.umask(0o022)  # what the installer service runs with
    yield
    os.umask(old)


def test_fetched_answer_is_0600_from_its_first_byte(tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "appliance-answer.toml"
    seen = modes_while_writing(monkeypatch, path)
    assert main.save_answer(b'[global]\nroot-password = "secret-pw"\n', path) == path
    assert seen and set(seen) == {0o600}, [oct(m) for m in seen]
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert path.read_bytes().endswith(b'"secret-pw"\n')


def test_an_existing_readable_answer_file_is_made_private_before_writing(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "appliance-answer.toml"
    path.write_text("old")
    path.chmod(0o644)
    seen = modes_while_writing(monkeypatch, path)
    main.save_answer(b"new", path)
    assert set(seen) == {0o600} and path.read_bytes() == b"new"


def test_a_planted_symlink_is_not_followed(tmp_path: Path) -> None:
    victim = tmp_path / "victim"
    victim.write_text("keep")
    link = tmp_path / "appliance-answer.toml"
    link.symlink_to(victim)
    with pytest.raises(OSError, match="Too many levels of symbolic links"):
        write_private(link, b"secret")
    assert victim.read_text() == "keep"


def test_target_shadow_is_0640_from_its_first_byte(tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    shadow = tmp_path / "etc/shadow"
    shadow.parent.mkdir()
    shadow.write_text("root:*:19000:0:99999:7:::\n")
    tmp = shadow.with_name(".shadow.appliance-tmp")
    seen = modes_while_writing(monkeypatch, tmp)
    target.set_root_password(shadow, "$6$salt$hash")
    assert seen and set(seen) == {0o640}
    assert stat.S_IMODE(shadow.stat().st_mode) == 0o640


def test_install_log_is_0600(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    log = tmp_path / "appliance-install.log"
    handler = run.start_log(log)
    try:
        logging.getLogger("appliance.install").info("plan for %s", "/dev/vdb")
        handler.flush()
    finally:
        logging.getLogger().removeHandler(handler)
        handler.close()
    assert stat.S_IMODE(log.stat().st_mode) == 0o600 and "/dev/vdb" in log.read_text()
    root = tmp_path / "target"
    monkeypatch.setattr(run, "RUN_LOG", log)
    run.save_log(root)
    assert stat.S_IMODE((root / run.TARGET_LOG).stat().st_mode) == 0o600
