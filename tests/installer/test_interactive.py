"""The interactive installer's dialog: its answers become an answer file that
passes the same validation as any other. The machine is a recorded server
(its detection report, replayed with umockdev-run)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from appliance.answer.parse import load_answer
from appliance.installer import main
from appliance.installer.run import Console, InstallError
from tests.hw.conftest import appliance_json, umockdev  # noqa: F401 (fixture)

pytestmark = pytest.mark.usefixtures("umockdev")


@pytest.fixture(scope="module")
def server() -> dict[str, Any]:
    code, data = appliance_json("detect", "--json", recorded="intel-server")
    assert code == 0
    return dict(data)


def feed(monkeypatch: pytest.MonkeyPatch, answers: list[str], passwords: list[str]) -> None:
    it: Iterator[str] = iter(answers)
    pw: Iterator[str] = iter(passwords)
    monkeypatch.setattr("builtins.input", lambda prompt="": next(it))
    monkeypatch.setattr(main.getpass, "getpass", lambda prompt="": next(pw))


def test_dialog_writes_a_valid_answer(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                      capsys: pytest.CaptureFixture[str],
                                      server: dict[str, Any]) -> None:
    disk = "sda"
    monkeypatch.setattr(main, "ANSWER_DIR", tmp_path)
    feed(monkeypatch, [disk, "xfs", "pve9.example.test", "static", "10.1.2.3/24", "10.1.2.1",
                       "10.1.2.1", "yes"], ["short", "short", "long-enough-pw",
                                            "long-enough-pw"])
    path = main.interactive(Console(), server)
    out = capsys.readouterr().out
    assert "hardware: hardware-accelerated (VT-x, kvm_intel)" in out
    assert "nvme0n1" in out and "sr0" not in out, "only install targets are offered"
    assert "at least 8 characters" in out
    a = load_answer(path)
    assert a.disk_setup.filesystem == "xfs" and a.disk_setup.disk_list == (disk,)
    assert a.global_.fqdn == "pve9.example.test"
    assert a.network.source == "from-answer" and a.network.cidr == "10.1.2.3/24"
    assert path.stat().st_mode & 0o777 == 0o600


def test_not_confirming_writes_nothing(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                       server: dict[str, Any]) -> None:
    monkeypatch.setattr(main, "ANSWER_DIR", tmp_path)
    feed(monkeypatch, ["sda", "ext4", "pve9.example.test", "dhcp", "no"],
         ["long-enough-pw", "long-enough-pw"])
    with pytest.raises(InstallError, match="cancelled; nothing was written"):
        main.interactive(Console(), server)
    assert list(tmp_path.iterdir()) == []


def test_unknown_disk_is_asked_again(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                     capsys: pytest.CaptureFixture[str],
                                     server: dict[str, Any]) -> None:
    monkeypatch.setattr(main, "ANSWER_DIR", tmp_path)
    feed(monkeypatch, ["sr0", "sda", "ext4", "pve9.example.test", "dhcp", "yes"],
         ["long-enough-pw", "long-enough-pw"])
    main.interactive(Console(), server)
    assert "choose one of: nvme0n1, sda, sdb" in capsys.readouterr().out
