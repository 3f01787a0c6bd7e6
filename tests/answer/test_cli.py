"""`appliance answer validate|resolve|keys` as a user runs them."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from ..hw.conftest import appliance_cmd, appliance_json, umockdev  # noqa: F401 (fixture)
from .conftest import DATA

LAB = ("--udev-json", str(DATA / "lab-udev.json"), "--info-json", str(DATA / "lab-info.json"))


def test_validate_prints_a_summary() -> None:
    proc = appliance_cmd("answer", "validate", str(DATA / "full.toml"))
    assert proc.returncode == 0, proc.stderr
    assert f"{DATA / 'full.toml'}: valid" in proc.stdout
    assert "xfs on filter (any) ID_SERIAL_SHORT=S5GXNF0R*" in proc.stdout
    assert "requires:   hardware virtualization" in proc.stdout


def test_validate_json_hides_the_plain_password() -> None:
    code, data = appliance_json("answer", "validate", "--json", str(DATA / "minimal.toml"))
    assert code == 0
    assert data["global"]["root-password"] == "<set>"
    assert data["disk-setup"]["disk-list"] == ["sda"]


def test_bad_answer_exits_6_with_one_line_and_no_traceback(tmp_path: Path) -> None:
    bad = tmp_path / "answer.toml"
    bad.write_text((DATA / "minimal.toml").read_text().replace('"ext4"', '"ntfs"'))
    proc = appliance_cmd("answer", "validate", str(bad))
    assert proc.returncode == 6
    line = next(i for i, t in enumerate(bad.read_text().splitlines(), 1) if "ntfs" in t)
    assert proc.stderr == (f"appliance: error: {bad}:{line}: disk-setup.filesystem: 'ntfs' is "
                           "not one of: ext4, xfs, zfs, btrfs\n")
    assert proc.stdout == ""


def test_missing_file_is_an_answer_error(tmp_path: Path) -> None:
    proc = appliance_cmd("answer", "validate", str(tmp_path / "nope.toml"))
    assert proc.returncode == 6 and "cannot read the answer file" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_resolve_json_against_machine_files() -> None:
    code, plan = appliance_json("answer", "resolve", "--json", str(DATA / "full.toml"), *LAB)
    assert code == 0
    assert [d["devnode"] for d in plan["storage"]["disks"]] == ["/dev/nvme0n1"]
    assert plan["network"]["interface"] == "mgmt" and plan["network"]["device"] == "enp3s0f1"
    assert plan["hostname"] == "pve2" and plan["storage"]["hdsize"] == 400.0
    assert plan["first_boot"]["ordering_target"] == "network-online"
    assert plan["hardware_virtualization"] is True


def test_resolve_text_names_disk_nic_and_warnings(tmp_path: Path) -> None:
    answer = tmp_path / "answer.toml"
    answer.write_text((DATA / "minimal.toml").read_text().replace(
        'filesystem = "ext4"\ndisk-list = ["sda"]',
        'filesystem = "btrfs"\ndisk-list = ["sda", "sdb"]\nbtrfs.raid = "raid1"'))
    proc = appliance_cmd("answer", "resolve", str(answer), *LAB)
    assert proc.returncode == 0, proc.stderr
    assert "disk:       /dev/sda (3726.02 GiB, ST4000NM0035-1V4107; udev index 1)" in proc.stdout
    assert "storage:    btrfs (RAID1)" in proc.stdout
    assert "network:    eno1 3c:ec:ef:11:22:33: 192.0.2.10/24 via 192.0.2.1" in proc.stdout
    assert "warning: btrfs (RAID1): resolved, but the installer cannot lay down btrfs yet" \
        in proc.stdout


def test_resolve_refusal_exits_6_and_lists_candidates(tmp_path: Path) -> None:
    answer = tmp_path / "answer.toml"
    answer.write_text((DATA / "minimal.toml").read_text().replace('"sda"', '"sdq"'))
    proc = appliance_cmd("answer", "resolve", str(answer), *LAB)
    assert proc.returncode == 6
    assert "disk-setup.disk-list[0]: no disk 'sdq'" in proc.stderr
    assert "nvme0n1 (931.51 GiB) ID_MODEL=Samsung SSD 980 PRO 1TB" in proc.stderr


def test_recorded_and_machine_files_do_not_mix() -> None:
    proc = appliance_cmd("answer", "resolve", str(DATA / "minimal.toml"), "--recorded", "x", *LAB)
    assert proc.returncode == 6 and "cannot be combined" in proc.stderr


@pytest.mark.usefixtures("umockdev")
def test_resolve_on_a_recorded_machine_sees_its_disks_and_nics() -> None:
    code, plan = appliance_json("answer", "resolve", "--json", str(DATA / "minimal.toml"),
                                recorded="intel-server")
    assert code == 0
    disk = plan["storage"]["disks"][0]
    assert disk["devnode"] == "/dev/sda" and disk["size_bytes"] == 7814037168 * 512
    assert disk["properties"]["ID_SERIAL_SHORT"] == "ZC11ABCD"
    assert plan["network"]["device"] == "eno1" and plan["network"]["source"] == "fallback"
    assert plan["hardware_virtualization"] is True
    assert "/dev/sda is in use (member of md127): installing wipes it" in plan["warnings"]


@pytest.mark.usefixtures("umockdev")
def test_recorded_machine_without_vtx_fails_a_required_check(tmp_path: Path) -> None:
    answer = tmp_path / "answer.toml"
    answer.write_text((DATA / "minimal.toml").read_text().replace(
        'root-password = "correct horse"',
        'root-password = "correct horse"\nrequire-hardware-virtualization = true').replace(
        '"sda"', '"sda"'))
    proc = appliance_cmd("answer", "resolve", str(answer), recorded="amd-svm-disabled")
    assert proc.returncode == 6, proc.stdout
    assert "global.require-hardware-virtualization" in proc.stderr
    assert "disabled" in proc.stderr.lower()


def test_keys_lists_the_table() -> None:
    code, ref = appliance_json("answer", "keys", "--json")
    assert code == 0
    by_key: dict[str, Any] = {k["key"]: k for k in ref}
    assert by_key["global.root-password"]["aliases"] == ["root_password"]
    text = appliance_cmd("answer", "keys").stdout
    assert "disk-setup.zfs.arc-max (also arc_max)" in text


def test_device_info_output_is_accepted_as_udev_json(tmp_path: Path) -> None:
    """`appliance device-info` output has no sizes: resolving says what is missing."""
    if shutil.which("udevadm") is None:
        pytest.skip("udevadm missing")
    info = appliance_cmd("device-info")
    assert info.returncode == 0, info.stderr
    path = tmp_path / "udev.json"
    path.write_text(info.stdout)
    assert "disks" in json.loads(info.stdout)
    proc = appliance_cmd("answer", "resolve", str(DATA / "minimal.toml"), "--udev-json",
                         str(path))
    assert proc.returncode == 6
    assert "disk-setup" in proc.stderr and "Traceback" not in proc.stderr


@pytest.mark.usefixtures("umockdev")
def test_example_answer_filter_picks_the_nvme_disk_of_a_recorded_server() -> None:
    example = DATA.parents[2] / "templates/answer/answer.example.toml"
    code, plan = appliance_json("answer", "resolve", "--json", str(example),
                                recorded="intel-server")
    assert code == 0
    disks = plan["storage"]["disks"]
    assert [d["devnode"] for d in disks] == ["/dev/nvme0n1"]
    assert disks[0]["properties"]["ID_PATH"] == "pci-0000:01:00.0-nvme-1"
    assert plan["storage"]["swapsize"] == 8.0
