"""`appliance detect` on the machine the tests run on, checked against
independent tools (udevadm, lsblk, ip) and the kernel's own files."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from appliance.hw import detect
from appliance.hw.report import ACCELERATED, SOFTWARE_ONLY

from .conftest import appliance_json

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="probing /dev/kvm needs root")


@pytest.fixture(scope="module")
def report():
    return detect()


def _cpu_flags() -> set[str]:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("flags"):
            return set(line.split(":", 1)[1].split())
    return set()


def test_verdict_names_what_backs_dev_kvm(report):
    flags = _cpu_flags()
    pvm = Path("/sys/module/kvm_pvm").is_dir()
    if pvm and not flags & {"vmx", "svm"}:  # our development machines
        assert report.status == SOFTWARE_ONLY
        assert report.accelerated is False
        assert report.facts.backend == "kvm_pvm"
        assert "kvm_pvm" in report.verdict and "no VT-x/AMD-V" in report.verdict
        assert report.facts.cpuid.extension is None
    elif flags & {"vmx", "svm"} and Path("/dev/kvm").exists():
        assert report.status == ACCELERATED
    else:
        assert report.accelerated is False


def test_detect_cli_exit_status_follows_from_the_cpu_and_dev_kvm():
    """The exit status is predicted from /proc/cpuinfo, /sys/module and
    /dev/kvm, not from detect() itself (the CLI is built on it)."""
    code, data = appliance_json("detect", "--json")
    assert code == data["exit_code"]
    flags = _cpu_flags()
    if Path("/sys/module/kvm_pvm").is_dir() and not flags & {"vmx", "svm"}:
        assert code == 10 and data["status"] == SOFTWARE_ONLY
    elif flags & {"vmx", "svm"} and Path("/dev/kvm").exists():
        assert code == 0 and data["status"] == ACCELERATED
    else:
        assert code in (11, 12, 13, 14), data["verdict"]


def test_kvm_ioctls_really_ran(report):
    if not Path("/dev/kvm").exists():
        pytest.skip("no /dev/kvm here")
    assert report.facts.kvm.api_version == 12
    assert report.facts.kvm.create_vm is True


def _udev_properties(node: str) -> dict[str, str]:
    which = f"--path={node}" if node.startswith("/sys/") else f"--name={node}"
    out = subprocess.run(
        ["udevadm", "info", "--query=property", which],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return dict(line.split("=", 1) for line in out.splitlines() if "=" in line)


def test_disks_match_udevadm_and_lsblk(report):
    lsblk = json.loads(
        subprocess.run(
            ["lsblk", "-J", "-a", "-b", "-d", "-o", "NAME,SIZE,LOG-SEC,ROTA,RM,TYPE"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    )["blockdevices"]
    expected = {d["name"]: d for d in lsblk}
    disks = {d.name: d for d in report.inventory.disks}
    assert set(disks) == set(expected)
    for name, want in expected.items():
        d = disks[name]
        assert d.properties == _udev_properties(d.devnode), name
        assert d.devnode == _udev_properties(d.devnode)["DEVNAME"]
        assert d.size_bytes == int(want["size"]), name
        assert d.logical_block_size == int(want["log-sec"]), name
        assert d.rotational == bool(
            int(want["rota"]) if isinstance(want["rota"], str) else want["rota"]
        )
        assert d.removable == bool(int(want["rm"]) if isinstance(want["rm"], str) else want["rm"])
    virtio = [d for d in disks.values() if d.name.startswith("vd")]
    for d in virtio:
        assert d.bus == "virtio"
    for d in disks.values():
        if d.name.startswith(("loop", "zram", "ram", "dm-", "sr")):
            assert not d.install_target


def test_root_disk_is_in_use_and_not_offered(report):
    root_src = next(
        line.split()[0]
        for line in Path("/proc/mounts").read_text().splitlines()
        if line.split()[1] == "/"
    )
    for d in report.inventory.disks:
        if root_src == d.devnode or any(p.devnode == root_src for p in d.partitions):
            assert d.in_use and not d.install_target
            assert "/" in d.mountpoints
            return
    pytest.skip(f"/ is on {root_src}, not on a disk")


def test_nics_match_ip_link_and_udevadm(report):
    links = json.loads(
        subprocess.run(["ip", "-j", "link"], capture_output=True, text=True, check=True).stdout
    )
    physical = {
        link["ifname"]: link
        for link in links
        if Path(f"/sys/class/net/{link['ifname']}/device").exists()
    }
    nics = {n.name: n for n in report.inventory.nics}
    assert set(nics) == set(physical)
    for name, link in physical.items():
        n = nics[name]
        assert n.mac == link["address"]
        assert n.operstate == link["operstate"].lower()
        driver = Path(f"/sys/class/net/{name}/device/driver").resolve().name
        assert n.driver == driver
        assert n.properties == _udev_properties(f"/sys/class/net/{name}")


def _physical_links() -> set[str]:
    links = json.loads(
        subprocess.run(["ip", "-j", "link"], capture_output=True, text=True, check=True).stdout
    )
    return {link["ifname"] for link in links
            if Path(f"/sys/class/net/{link['ifname']}/device").exists()}


def test_device_info_lists_offered_disks_and_nics_with_udev_properties():
    """Checked against ip, udevadm and /proc/mounts, not against detect()."""
    code, data = appliance_json("device-info")
    assert code == 0
    assert set(data) == {"disks", "nics"}
    assert set(data["nics"]) == _physical_links()
    for name, props in data["nics"].items():
        assert props == _udev_properties(f"/sys/class/net/{name}")
    mounted = {line.split()[0] for line in Path("/proc/mounts").read_text().splitlines()}
    for props in data["disks"].values():
        node = props["DEVNAME"]
        assert props == _udev_properties(node)
        assert props["DEVTYPE"] == "disk"
        assert not Path(node).name.startswith(("loop", "zram", "ram", "dm-", "sr", "md"))
        assert node not in mounted
        assert not any(m.startswith(node) for m in mounted), f"{node} has a mounted partition"


def test_device_match_selects_this_machines_nic_by_glob(report):
    if not report.inventory.nics:
        pytest.skip("no physical NIC")
    nic = report.inventory.nics[0]
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "appliance",
            "device-match",
            "network",
            f"INTERFACE={nic.name[:2]}*",
        ],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0
    assert nic.name in proc.stdout.split()
    miss = subprocess.run(
        [sys.executable, "-m", "appliance", "device-match", "network", "INTERFACE=nomatch*"],
        capture_output=True,
        text=True,
    )
    assert miss.returncode == 1 and miss.stdout == ""
