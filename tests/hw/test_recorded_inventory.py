"""Verdicts and disk/NIC inventory of recorded machines through the CLI,
replayed with umockdev-run."""

import pytest

from .conftest import appliance_cmd, appliance_json

pytestmark = pytest.mark.usefixtures("umockdev")


# What each recorded machine is known to be (tests/data/hw/README.md), and
# the exit status `appliance detect` owes a script for it.
KNOWN = [
    ("intel-server", 0, "hardware-accelerated", "hardware-accelerated (VT-x, kvm_intel)"),
    ("intel-nested-guest", 0, "hardware-accelerated", "hardware-accelerated (VT-x, kvm_intel)"),
    ("pvm-dev-vm", 10, "software-only",
     "software-only: /dev/kvm is backed by kvm_pvm and the CPU exposes no VT-x/AMD-V"),
    ("amd-svm-disabled", 11, "disabled-in-firmware",
     "disabled in firmware: enable SVM in BIOS setup"),
    ("cloud-guest-no-vmx", 12, "no-cpu-support",
     "no CPU support: the CPU exposes no VT-x/AMD-V (this is a KVM guest: enable nested"),
    ("intel-no-kvm-module", 13, "kvm-not-loaded",
     "KVM not loaded: the CPU has VT-x but there is no /dev/kvm — modprobe kvm_intel"),
]


@pytest.mark.parametrize(("name", "code", "status", "verdict"), KNOWN,
                         ids=[k[0] for k in KNOWN])
def test_detect_cli_gives_each_recorded_machine_its_known_verdict(name, code, status, verdict):
    got_code, data = appliance_json("detect", "--json", recorded=name)
    assert (got_code, data["exit_code"], data["status"]) == (code, code, status)
    assert data["verdict"].startswith(verdict)
    assert data["accelerated"] is (code == 0)


@pytest.fixture(scope="module")
def server():
    code, data = appliance_json("detect", "--json", recorded="intel-server")
    assert code == 0
    return data


def _by_name(items):
    return {i["name"]: i for i in items}


def test_server_offers_only_nvme_sata_and_usb_stick(server):
    disks = _by_name(server["disks"])
    offered = [d["devnode"] for d in server["disks"] if d["install_target"]]
    assert offered == ["/dev/nvme0n1", "/dev/sda", "/dev/sdb"]
    assert set(disks) == {"nvme0n1", "sda", "sdb", "sr0", "loop0", "zram0", "dm-0", "md127"}


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        ("sr0", "live medium this system booted from (mounted at /run/live/medium)"),
        ("loop0", "loop device"),
        ("zram0", "compressed RAM disk (zram)"),
        ("dm-0", "device-mapper device"),
        ("md127", "software RAID (md) device"),
    ],
)
def test_server_never_offers_virtual_disks_or_the_live_cd(server, name, reason):
    d = _by_name(server["disks"])[name]
    assert d["install_target"] is False
    assert d["excluded_reason"] == reason


def test_server_disk_details_come_from_udev_and_sysfs(server):
    disks = _by_name(server["disks"])
    nvme, sda, sdb = disks["nvme0n1"], disks["sda"], disks["sdb"]
    assert nvme["size_bytes"] == 1953525168 * 512
    assert nvme["model"] == "Samsung SSD 980 PRO 1TB"
    assert nvme["serial"] == "S5GXNF0R123456A"
    assert nvme["wwn"] == "eui.002538b111b2c3d4"
    assert nvme["bus"] == "nvme" and nvme["rotational"] is False
    assert [p["fstype"] for p in nvme["partitions"]] == ["vfat", "ntfs"]
    assert nvme["by_path"] == ["/dev/disk/by-path/pci-0000:01:00.0-nvme-1"]
    assert nvme["in_use"] is False
    assert (sda["bus"], sda["rotational"], sda["wwn"]) == ("ata", True, "0x5000c500a1b2c3d4")
    assert sda["holders"] == ["md127"] and sda["in_use"] is True  # an md member
    assert sda["by_id"] == [
        "/dev/disk/by-id/ata-ST4000NM0035-1V4107_ZC11ABCD",
        "/dev/disk/by-id/wwn-0x5000c500a1b2c3d4",
    ]
    assert (sdb["bus"], sdb["removable"]) == ("usb", True)
    assert sdb["in_use"] is True and sdb["mountpoints"] == ["/media/usb"]
    assert sdb["partitions"][0]["label"] == "DATA"
    assert disks["zram0"]["swap"] is True
    assert disks["sr0"]["logical_block_size"] == 2048


def test_server_nics_are_physical_only(server):
    nics = _by_name(server["nics"])
    assert list(nics) == ["eno1", "enp3s0"]  # no bridge, no loopback
    eno1 = nics["eno1"]
    assert (eno1["mac"], eno1["driver"], eno1["operstate"]) == ("3c:ec:ef:11:22:33", "e1000e", "up")
    assert (eno1["carrier"], eno1["speed_mbps"]) == (True, 1000)
    assert eno1["net_names"]["ID_NET_NAME_ONBOARD"] == "eno1"
    enp3s0 = nics["enp3s0"]
    assert (enp3s0["driver"], enp3s0["operstate"], enp3s0["speed_mbps"]) == ("igb", "down", None)


def test_live_usb_stick_is_not_offered():
    code, data = appliance_json("detect", "--json", recorded="amd-svm-disabled")
    assert code == 11
    disks = _by_name(data["disks"])
    assert disks["sdb"]["install_target"] is False
    assert "live medium" in disks["sdb"]["excluded_reason"]
    assert [d["name"] for d in data["disks"] if d["install_target"]] == ["sda"]


def test_nested_guest_does_not_offer_its_own_root_disk():
    code, data = appliance_json("detect", "--json", recorded="intel-nested-guest")
    assert code == 0
    assert data["verdict"] == "hardware-accelerated (VT-x, kvm_intel)"
    disks = _by_name(data["disks"])
    assert disks["vda"]["install_target"] is False and disks["vda"]["in_use"]
    assert disks["vdb"]["install_target"] is True
    assert disks["vdb"]["serial"] == "data-disk-1" and disks["vdb"]["bus"] == "virtio"


def test_device_info_has_proxmox_shape():
    code, data = appliance_json("device-info", recorded="intel-server")
    assert code == 0
    assert list(data["disks"]) == ["0", "1", "2"]
    assert [p["DEVNAME"] for p in data["disks"].values()] == [
        "/dev/nvme0n1",
        "/dev/sda",
        "/dev/sdb",
    ]
    assert data["disks"]["1"]["ID_SERIAL"] == "ST4000NM0035-1V4107_ZC11ABCD"
    assert list(data["nics"]) == ["eno1", "enp3s0"]
    assert data["nics"]["eno1"]["ID_NET_NAME_MAC"] == "enx3cecef112233"
    code, only = appliance_json("device-info", "--type", "network", recorded="intel-server")
    assert list(only) == ["nics"]


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["disk", "ID_BUS=usb"], ["/dev/sdb"]),
        (["disk", "ID_SERIAL=*", "ID_BUS=ata", "--filter-match", "all"], ["/dev/sda"]),
        (["disk", "ID_SERIAL=*", "ID_BUS=ata"], ["/dev/nvme0n1", "/dev/sda", "/dev/sdb"]),
        (["disk", "ID_FS_TYPE=iso9660"], []),  # the live CD is never a candidate
        (["network", "ID_NET_NAME_MAC=*112234"], ["enp3s0"]),
    ],
)
def test_device_match_on_recorded_server(args, expected):
    proc = appliance_cmd("device-match", *args, recorded="intel-server")
    assert proc.stdout.split() == expected
    assert proc.returncode == (0 if expected else 1)


def test_bad_filter_is_reported_without_traceback():
    proc = appliance_cmd("device-match", "disk", "ID_SERIAL=[abc", recorded="intel-server")
    assert proc.returncode == 5
    assert "never closed" in proc.stderr and "Traceback" not in proc.stderr


def test_text_report_has_one_line_per_check_verdict_and_inventory():
    proc = appliance_cmd("detect", recorded="amd-svm-disabled")
    assert proc.returncode == 11
    lines = proc.stdout.splitlines()
    checks = [ln for ln in lines if ln[:4] in ("PASS", "WARN", "FAIL", "NOTE")]
    assert any(ln.startswith("FAIL  Firmware enables virtualization (MSR)") for ln in checks)
    assert "Verdict: disabled in firmware: enable SVM in BIOS setup" in lines
    assert any("hint: enable SVM in BIOS setup" in ln for ln in lines)
    assert any(ln.startswith("Disk /dev/sda: 1000.2 GB, CT1000MX500SSD1") for ln in lines)
    assert any(ln.startswith("NIC enp5s0: 18:c0:4d:01:02:03, driver r8169") for ln in lines)
