"""`appliance prepare-iso`: re-packing with xorriso, and its refusals."""

from __future__ import annotations

import subprocess
import tomllib
from pathlib import Path

import pytest

from appliance.errors import ApplianceError
from appliance.installer.prepare_iso import PrepareError, prepare

ANSWER = """\
[global]
keyboard = "en-us"
country = "us"
fqdn = "pve1.example.test"
mailto = "root@example.test"
timezone = "UTC"
root-password = "long enough"

[network]
source = "from-dhcp"

[disk-setup]
filesystem = "ext4"
disk-list = ["vda"]
"""


@pytest.fixture
def iso(tmp_path: Path) -> Path:
    root = tmp_path / "root"
    (root / "live").mkdir(parents=True)
    (root / "live/filesystem.squashfs").write_bytes(b"hsqs")
    out = tmp_path / "in.iso"
    subprocess.run(["xorriso", "-as", "mkisofs", "-V", "APPLIANCE", "-o", str(out), str(root)],
                   check=True, capture_output=True)
    return out


def extract(iso: Path, inside: str, dest: Path) -> Path:
    subprocess.run(["xorriso", "-osirrox", "on", "-indev", str(iso), "-extract", inside,
                    str(dest)], check=True, capture_output=True)
    return dest


def test_answer_and_mode_go_onto_the_iso(iso: Path, tmp_path: Path) -> None:
    answer = tmp_path / "answer.toml"
    answer.write_text(ANSWER)
    hook = tmp_path / "hook.sh"
    hook.write_text("#!/bin/sh\ntrue\n")
    out = prepare(iso, tmp_path / "auto.iso", "iso", answer, on_first_boot=hook)
    assert extract(out, "/appliance/answer.toml", tmp_path / "a").read_text() == ANSWER
    mode = tomllib.loads(extract(out, "/appliance/auto-install.toml", tmp_path / "m").read_text())
    assert mode == {"fetch-from": "iso"}
    assert extract(out, "/appliance/first-boot", tmp_path / "h").read_text() == hook.read_text()
    assert extract(out, "/live/filesystem.squashfs", tmp_path / "s").read_bytes() == b"hsqs"


def test_http_mode_carries_url_and_pin_but_no_answer(iso: Path, tmp_path: Path) -> None:
    out = prepare(iso, tmp_path / "auto.iso", "http", url="https://10.0.2.100/a",
                  fingerprint=":".join(["AB"] * 32))
    mode = tomllib.loads(extract(out, "/appliance/auto-install.toml", tmp_path / "m").read_text())
    assert mode == {"fetch-from": "http", "url": "https://10.0.2.100/a",
                    "cert-fingerprint": "ab" * 32}
    listing = subprocess.run(["xorriso", "-indev", str(out), "-ls", "/appliance"],
                             capture_output=True, text=True).stdout
    assert "answer.toml" not in listing


@pytest.mark.parametrize(("args", "message"), [
    ({"fetch_from": "iso"}, "needs --answer"),
    ({"fetch_from": "http", "url": "ftp://x/a"}, "not an http"),
    ({"fetch_from": "partition", "url": "https://x/a"}, "only for --fetch-from http"),
    ({"fetch_from": "http", "url": "http://x/a", "fingerprint": "ab" * 32}, "https://"),
    ({"fetch_from": "http", "url": "http://x/a"},
     "--url http://x/a: the installer refuses plain http://.*or add --allow-insecure"),
])
def test_refusals_leave_no_output(iso: Path, tmp_path: Path, args: dict[str, str],
                                  message: str) -> None:
    out = tmp_path / "auto.iso"
    with pytest.raises(PrepareError, match=message):
        prepare(iso, out, **args)  # type: ignore[arg-type]
    assert not out.exists() and not list(tmp_path.glob(".auto.iso*"))


def test_invalid_answer_is_named_before_repacking(iso: Path, tmp_path: Path) -> None:
    answer = tmp_path / "answer.toml"
    answer.write_text(ANSWER.replace('filesystem = "ext4"', 'filesystem = "ntfs"'))
    with pytest.raises(ApplianceError, match=r"answer.toml:\d+: disk-setup.filesystem"):
        prepare(iso, tmp_path / "auto.iso", "iso", answer)
    assert not (tmp_path / "auto.iso").exists()


def test_not_an_iso_is_refused(tmp_path: Path) -> None:
    bad = tmp_path / "x.iso"
    bad.write_bytes(b"\0" * 40000)
    with pytest.raises(PrepareError, match="not an ISO 9660 image"):
        prepare(bad, tmp_path / "out.iso", "partition")


def test_allow_insecure_is_recorded_for_the_installer(iso: Path, tmp_path: Path) -> None:
    out = prepare(iso, tmp_path / "auto.iso", "http", url="http://10.0.2.100/answer",
                  allow_insecure=True)
    mode = tomllib.loads(extract(out, "/appliance/auto-install.toml", tmp_path / "m").read_text())
    assert mode == {"fetch-from": "http", "url": "http://10.0.2.100/answer",
                    "allow-insecure": True}
    from appliance.installer.source import decide

    medium = tmp_path / "medium"
    extract(out, "/appliance", medium / "appliance")
    how = decide("", medium)
    assert how.allow_insecure and how.url == "http://10.0.2.100/answer"
    assert decide("appliance.answer=https://10.0.2.100/a", medium).allow_insecure


def test_plain_http_hooks_in_the_answer_need_allow_insecure(iso: Path, tmp_path: Path) -> None:
    answer = tmp_path / "answer.toml"
    answer.write_text(ANSWER + '\n[post-installation-webhook]\nurl = "http://10.0.2.2/done"\n')
    with pytest.raises(PrepareError, match=r"post-installation-webhook.url: http://10.0.2.2/done "
                       r"is plain http://"):
        prepare(iso, tmp_path / "auto.iso", "iso", answer)
    assert prepare(iso, tmp_path / "auto.iso", "iso", answer, allow_insecure=True).exists()
