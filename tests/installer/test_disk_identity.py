"""The installer writes only to the disk the plan was made for: its identity
(serial, WWN, by-id links, size, as hardware detection found it) is checked
again right before wipefs, and a changed or vanished disk is refused with
nothing written. Real loop devices, and a recorded server replayed with
umockdev-run (issue 19, item 11)."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from appliance.installer import disk
from appliance.installer.disk import DiskError
from appliance.installer.layout import GiB, plan
from appliance.installer.plan import DiskIdentity
from tests.hw.conftest import PROJECT, machine, umockdev  # noqa: F401 (fixture)

from ..conftest import require_root
from .conftest import file_hash

LAYOUT = plan(16 * GiB, 2 * GiB)


def backing(path: Path, size: int) -> Path:
    with open(path, "wb") as f:
        f.truncate(size)
        f.write(b"KEEP-THIS-DATA" * 4096)
    return path


@pytest.fixture
def loop(tmp_path: Path) -> Iterator[str]:
    require_root()
    img = backing(tmp_path / "disk-a.img", 64 << 20)
    dev = subprocess.run(["losetup", "--find", "--show", str(img)], check=True,
                         capture_output=True, text=True).stdout.strip()
    try:
        yield dev
    finally:
        subprocess.run(["losetup", "-d", dev], check=False)


def test_the_identity_of_a_real_disk_matches_itself(loop: str) -> None:
    now = disk.current_identity(loop)
    assert now is not None and now.size_bytes == 64 << 20 and now.devnode == loop
    disk.check_identity(now)


def test_plan_for_serial_a_on_a_disk_reporting_another_writes_nothing(
        loop: str, tmp_path: Path) -> None:
    now = disk.current_identity(loop)
    assert now is not None
    planned = dataclasses.replace(now, serial="SERIAL-A")
    before = file_hash(tmp_path / "disk-a.img")
    with pytest.raises(DiskError, match=rf"{loop} is no longer the disk the plan was made for "
                       r"\(.*serial SERIAL-A.*\): serial \(ID_SERIAL\) was SERIAL-A, is now "
                       r"none; nothing was written"):
        disk.prepare(loop, LAYOUT, "ext4", planned)
    assert file_hash(tmp_path / "disk-a.img") == before


def test_another_disk_now_at_the_same_name_is_refused(loop: str, tmp_path: Path) -> None:
    planned = disk.current_identity(loop)
    assert planned is not None
    other = backing(tmp_path / "disk-b.img", 80 << 20)
    hashes = {p: file_hash(p) for p in (tmp_path / "disk-a.img", other)}
    subprocess.run(["losetup", "-d", loop], check=True)
    subprocess.run(["losetup", loop, str(other)], check=True)  # same name, other disk
    with pytest.raises(DiskError, match=rf"size was {64 << 20}, is now {80 << 20}; nothing "
                       "was written"):
        disk.prepare(loop, LAYOUT, "ext4", planned)
    assert {p: file_hash(p) for p in hashes} == hashes


def test_a_vanished_disk_is_refused() -> None:
    gone = DiskIdentity("/dev/appliance-no-such-disk", 8 * GiB, "SERIAL-A")
    with pytest.raises(DiskError, match=r"/dev/appliance-no-such-disk has vanished since the "
                       r"plan was made for .*serial SERIAL-A"):
        disk.check_identity(gone)


def test_a_plan_without_an_identity_writes_nothing(loop: str, tmp_path: Path) -> None:
    before = file_hash(tmp_path / "disk-a.img")
    with pytest.raises(DiskError, match="does not say which disk was checked"):
        disk.prepare(loop, LAYOUT, "ext4", None)
    assert file_hash(tmp_path / "disk-a.img") == before


# In a child under umockdev-run: the plan the installer makes from an answer on
# the recorded server, then the re-check against the (replayed) udev data.
RECHECK = """
import dataclasses, json, sys
from pathlib import Path
from appliance.installer import disk, main
from appliance.installer.run import Console
plan = main.plan_from_answer(Path(sys.argv[1]), Console(sys.stderr), "test", sys.argv[2])
ident = plan.disk_identity
out = {"identity": dataclasses.asdict(ident), "describe": plan.describe()}
for name, changed in [("same", ident),
                      ("serial", dataclasses.replace(ident, serial="ST4000NM0035-1V4107_ZC99XXXX")),
                      ("wwn", dataclasses.replace(ident, wwn="0x5000c500ffffffff")),
                      ("by-id", dataclasses.replace(ident, by_id=(*ident.by_id,
                                                    "/dev/disk/by-id/ata-OTHER_DISK"))),
                      ("gone", dataclasses.replace(ident, devnode="/dev/sdz"))]:
    try:
        disk.check_identity(changed)
        out[name] = "ok"
    except disk.DiskError as e:
        out[name] = str(e)
print(json.dumps(out))
"""


@pytest.mark.usefixtures("umockdev")
def test_recorded_server_plan_records_and_rechecks_serial_wwn_and_links() -> None:
    server = machine("intel-server")
    answer = PROJECT / "tests/data/answer/minimal.toml"  # disk-list = ["sda"]
    proc = subprocess.run(
        ["umockdev-run", "-d", str(server / "devices.umockdev"), "--", sys.executable, "-c",
         RECHECK, str(answer), str(server)],
        capture_output=True, text=True, timeout=120,
        env=dict(os.environ, PYTHONPATH=str(PROJECT)))
    assert proc.returncode == 0, proc.stderr
    got = json.loads(proc.stdout)
    assert got["identity"] == {
        "devnode": "/dev/sda", "size_bytes": 7814037168 * 512,
        "serial": "ST4000NM0035-1V4107_ZC11ABCD", "wwn": "0x5000c500a1b2c3d4",
        "by_id": ["/dev/disk/by-id/ata-ST4000NM0035-1V4107_ZC11ABCD",
                  "/dev/disk/by-id/wwn-0x5000c500a1b2c3d4"]}
    assert ("checked as:   /dev/sda (serial ST4000NM0035-1V4107_ZC11ABCD, WWN "
            "0x5000c500a1b2c3d4, 4000787030016 bytes)") in got["describe"]
    assert got["same"] == "ok"
    assert got["serial"].endswith("serial (ID_SERIAL) was ST4000NM0035-1V4107_ZC99XXXX, is now "
                                  "ST4000NM0035-1V4107_ZC11ABCD; nothing was written")
    assert "WWN (ID_WWN) was 0x5000c500ffffffff, is now 0x5000c500a1b2c3d4" in got["wwn"]
    assert "/dev/disk/by-id/ata-OTHER_DISK no longer points at it" in got["by-id"]
    assert got["gone"].startswith("/dev/sdz has vanished since the plan was made for")
