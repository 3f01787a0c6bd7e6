"""The QEMU command line boot-test builds: media, firmware, and a network that
never leaves the machine."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from appliance.boot import qemu
from appliance.errors import BootError


def iso_file(tmp_path: Path) -> Path:
    iso = tmp_path / "x.iso"
    with open(iso, "wb") as f:
        f.seek(0x8001)
        f.write(b"CD001")
        f.truncate(0x10000)
    return iso


def netboot_dir(tmp_path: Path, url: str = "http://10.0.2.100/") -> Path:
    d = tmp_path / "x.netboot"
    d.mkdir()
    (d / "netboot.json").write_text(json.dumps({
        "kernel": "vmlinuz", "initrd": "initrd.img", "base-url": url,
        "cmdline": f"boot=live fetch={url}filesystem.squashfs"}))
    return d


def argv(spec: qemu.BootSpec, tmp_path: Path, accel: str = "tcg") -> str:
    return " ".join(qemu.command(spec, accel, tmp_path / "serial.log", tmp_path / "vars.fd"))


def test_iso_defaults_to_cdrom_without_network(tmp_path: Path) -> None:
    spec = qemu.make_spec(iso_file(tmp_path), "bios", None)
    cmd = argv(spec, tmp_path)
    assert spec.medium == "cdrom" and "ide-cd,drive=boot,bootindex=0" in cmd
    assert "-nic none" in cmd and "-accel tcg -cpu max" in cmd
    assert "-smbios type=1,serial=appliance.boot_check=1" in cmd
    assert "pflash" not in cmd


def test_iso_as_usb_stick_on_uefi(tmp_path: Path) -> None:
    spec = qemu.make_spec(iso_file(tmp_path), "uefi", "usb")
    cmd = argv(spec, tmp_path)
    assert "usb-storage,bus=xhci.0,drive=boot,bootindex=0" in cmd
    assert "snapshot=on" in cmd  # the guest never writes to the image
    assert "OVMF_CODE" in cmd and (tmp_path / "vars.fd").is_file()


def test_disk_image_cannot_be_a_cdrom(tmp_path: Path) -> None:
    img = tmp_path / "x.img"
    img.write_bytes(bytes(4096))
    with pytest.raises(BootError, match="cannot be attached as a CD-ROM"):
        qemu.make_spec(img, "bios", "cdrom")
    assert "format=raw" in argv(qemu.make_spec(img, "bios", None), tmp_path)


def test_unknown_firmware_and_missing_image(tmp_path: Path) -> None:
    with pytest.raises(BootError, match="unknown firmware 'coreboot'"):
        qemu.make_spec(iso_file(tmp_path), "coreboot", None)
    with pytest.raises(BootError, match="no such image"):
        qemu.make_spec(tmp_path / "nope.iso", "bios", None)


def test_netboot_uses_restricted_user_network_and_the_responder(tmp_path: Path) -> None:
    spec = qemu.make_spec(netboot_dir(tmp_path), "bios", None)
    cmd = argv(spec, tmp_path)
    assert spec.medium == "net"
    assert "restrict=on" in cmd and "hostfwd" not in cmd
    assert "guestfwd=tcp:10.0.2.100:80-cmd:" in cmd and "appliance.boot.httpd" in cmd
    assert "appliance.boot_check=1" in cmd.split("-append", 1)[1]


def test_netboot_url_outside_the_user_network_is_refused(tmp_path: Path) -> None:
    spec = qemu.make_spec(netboot_dir(tmp_path, "http://192.0.2.7/"), "bios", None)
    with pytest.raises(BootError, match="cannot be served by boot-test"):
        argv(spec, tmp_path)


def test_kvm_uses_host_cpu(tmp_path: Path) -> None:
    assert "-accel kvm -cpu host" in argv(qemu.make_spec(iso_file(tmp_path), "bios", None),
                                          tmp_path, accel="kvm")
