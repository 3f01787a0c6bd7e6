"""Configuring the copied system (on a directory standing in for /target)."""

from __future__ import annotations

from pathlib import Path

import pytest

from appliance.installer import target
from appliance.installer.layout import GiB, plan
from appliance.installer.plan import Network, Plan

HASH = "$6$salt$abcdefghijklmnopqrstuvwxyz0123456789"


def make_plan(**kw: object) -> Plan:
    args: dict[str, object] = dict(
        disk="/dev/vdb", disk_model="QEMU", layout=plan(16 * GiB, 2 * GiB), filesystem="ext4",
        fqdn="pve1.example.org", root_password_hash=HASH, ssh_keys=["ssh-ed25519 AAAA test"],
        timezone="Europe/Vienna", keyboard="de-ch",
        network=Network("enp0s2", "52:54:00:12:34:56", dhcp=False, cidr="10.0.2.15/24",
                        gateway="10.0.2.2", dns="10.0.2.3"),
        answer_source="test")
    args.update(kw)
    return Plan(**args)  # type: ignore[arg-type]


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    root = tmp_path / "target"
    (root / "etc/ssh").mkdir(parents=True)
    (root / "etc/shadow").write_text("root:*:19000:0:99999:7:::\ndaemon:*:19000:0:99999:7:::\n")
    (root / "etc/ssh/ssh_host_ed25519_key").write_text("baked into the image")
    zone = root / "usr/share/zoneinfo/Europe/Vienna"
    zone.parent.mkdir(parents=True)
    zone.write_bytes(b"TZif")
    return root


def test_configure_writes_the_answer_into_the_system(tree: Path) -> None:
    target.configure(tree, make_plan(), "r-uuid", "ABCD-1234", "s-uuid")
    fstab = (tree / "etc/fstab").read_text()
    assert "UUID=r-uuid / ext4 errors=remount-ro 0 1" in fstab
    assert "UUID=ABCD-1234 /boot/efi vfat" in fstab and "UUID=s-uuid none swap" in fstab
    assert (tree / "etc/hostname").read_text() == "pve1\n"
    assert "10.0.2.15 pve1.example.org pve1" in (tree / "etc/hosts").read_text()
    ifaces = (tree / "etc/network/interfaces").read_text()
    assert "iface vmbr0 inet static" in ifaces and "address 10.0.2.15/24" in ifaces
    assert "gateway 10.0.2.2" in ifaces and "bridge-ports enp0s2" in ifaces
    assert (tree / "etc/resolv.conf").read_text() == "search example.org\nnameserver 10.0.2.3\n"
    assert (tree / "etc/shadow").read_text().splitlines()[0] == f"root:{HASH}:19000:0:99999:7:::"
    keys = tree / "root/.ssh/authorized_keys"
    assert keys.read_text() == "ssh-ed25519 AAAA test\n" and keys.stat().st_mode & 0o777 == 0o600
    assert (tree / "etc/localtime").readlink() == Path("/usr/share/zoneinfo/Europe/Vienna")
    assert 'XKBLAYOUT="ch"' in (tree / "etc/default/keyboard").read_text()
    assert (tree / "etc/default/locale").read_text() == "LANG=C.UTF-8\n"
    assert (tree / "etc/machine-id").read_text() == ""
    assert not list((tree / "etc/ssh").glob("ssh_host_*")), "image host keys must go"


def test_pinned_interface_name_gets_a_link_file(tree: Path) -> None:
    net = Network("enp0s2", "52:54:00:aa:bb:cc", dhcp=False, cidr="10.0.0.5/24",
                  gateway="10.0.0.1", dns="10.0.0.1", interface_name="mgmt0")
    target.configure(tree, make_plan(network=net), "r", "E", "s")
    link = (tree / "etc/systemd/network/10-appliance-mgmt0.link").read_text()
    assert "MACAddress=52:54:00:aa:bb:cc" in link and "Name=mgmt0" in link
    assert "bridge-ports mgmt0" in (tree / "etc/network/interfaces").read_text()


def test_xfs_root_in_fstab(tree: Path) -> None:
    target.configure(tree, make_plan(filesystem="xfs"), "r", "E", "s")
    assert "UUID=r / xfs defaults 0 1" in (tree / "etc/fstab").read_text()


def test_guests_volume_is_mounted_on_the_state_dir_only_when_there_is_one(tree: Path) -> None:
    target.configure(tree, make_plan(), "r", "E", "s")
    assert "/var/lib/appliance" not in (tree / "etc/fstab").read_text()
    target.configure(tree, make_plan(), "r", "E", "s", "g-uuid")
    lines = (tree / "etc/fstab").read_text().splitlines()
    assert "UUID=g-uuid /var/lib/appliance ext4 defaults,discard 0 2" in lines


def test_a_hash_with_a_colon_is_refused(tree: Path) -> None:
    with pytest.raises(ValueError, match="cannot contain ':'"):
        target.set_root_password(tree / "etc/shadow", "bad:hash")
