"""The QEMU command line of a boot test: machine, accelerator, firmware, the
boot medium and the serial console. Networking: none, except for netboot
(user networking with restrict=on; only the guestfwd to our HTTP responder)."""

from __future__ import annotations

import ipaddress
import json
import sys
import urllib.parse
from dataclasses import dataclass
from pathlib import Path

from appliance.boot import firmware as fw
from appliance.errors import BootError

KINDS = ("iso", "disk", "netboot")
MEDIA = ("cdrom", "disk", "usb", "pxe")
QEMU = "qemu-system-x86_64"
# The boot-check flag: images built by our recipes read it from the SMBIOS
# serial number in GRUB and put it on the kernel command line.
CHECK_FLAG = "appliance.boot_check=1"
USER_NET = ipaddress.ip_network("10.0.2.0/24")  # QEMU user networking's default


@dataclass
class BootSpec:
    image: Path
    kind: str  # iso | disk | netboot
    medium: str  # cdrom | disk | usb (iso, disk) | net (-kernel/-initrd) | pxe (netboot)
    firmware: str  # bios | uefi
    memory_mib: int = 2048
    smp: int = 2


def detect_kind(image: Path) -> str:
    if image.is_dir():
        if (image / "netboot.json").is_file():
            return "netboot"
        raise BootError(f"{image}: a directory, but not a netboot output (no netboot.json)")
    if not image.is_file():
        raise BootError(f"{image}: no such image")
    with open(image, "rb") as f:
        f.seek(0x8001)
        if f.read(5) == b"CD001":
            return "iso"
    return "disk"


def disk_format(image: Path) -> str:
    with open(image, "rb") as f:
        return "qcow2" if f.read(4) == b"QFI\xfb" else "raw"


def make_spec(image: Path, firmware: str, medium: str | None, memory_mib: int = 2048,
              smp: int = 2) -> BootSpec:
    if firmware not in fw.FIRMWARES:
        raise BootError(f"unknown firmware {firmware!r} (known: {', '.join(fw.FIRMWARES)})")
    if medium is not None and medium not in MEDIA:
        raise BootError(f"unknown medium {medium!r} (known: {', '.join(MEDIA)})")
    kind = detect_kind(image)
    if kind == "netboot":
        if medium not in (None, "pxe"):
            raise BootError(f"{image}: a netboot directory boots over the network: "
                            "directly (-kernel/-initrd, the default) or with --as pxe")
        medium = medium or "net"
    elif medium == "pxe":
        raise BootError(f"{image}: --as pxe is for netboot directories")
    elif kind == "iso":
        medium = medium or "cdrom"
    else:
        medium = medium or "disk"
        if medium == "cdrom":
            raise BootError(f"{image}: a disk image cannot be attached as a CD-ROM "
                            "(use --as disk or --as usb)")
    return BootSpec(image.resolve(), kind, medium, firmware, memory_mib, smp)


def _drive(spec: BootSpec) -> list[str]:
    img = str(spec.image)
    if "," in img:
        raise BootError(f"{img}: QEMU cannot take a path with a comma")
    if spec.medium == "cdrom":
        return ["-drive", f"if=none,id=boot,media=cdrom,readonly=on,format=raw,file={img}",
                "-device", "ide-cd,drive=boot,bootindex=0"]
    fmt = disk_format(spec.image)
    # snapshot=on: the guest's writes never reach the image.
    drive = f"if=none,id=boot,format={fmt},snapshot=on,file={img}"
    if spec.medium == "usb":
        return ["-device", "qemu-xhci,id=xhci", "-drive", drive,
                "-device", "usb-storage,bus=xhci.0,drive=boot,bootindex=0"]
    return ["-drive", drive, "-device", "virtio-blk-pci,drive=boot,bootindex=0"]


def netboot_info(directory: Path) -> dict[str, str]:
    try:
        info: dict[str, str] = json.loads((directory / "netboot.json").read_text())
    except (OSError, ValueError) as e:
        raise BootError(f"{directory}/netboot.json: cannot read it: {e}") from None
    for key in ("kernel", "initrd", "cmdline", "base-url"):
        if key not in info:
            raise BootError(f"{directory}/netboot.json: no {key!r}")
    return info


def _netboot(spec: BootSpec, http_log: Path) -> list[str]:
    info = netboot_info(spec.image)
    url = urllib.parse.urlsplit(info["base-url"])
    try:
        addr = ipaddress.ip_address(url.hostname or "")
    except ValueError:
        addr = None
    if url.scheme != "http" or addr is None or addr not in USER_NET or url.path not in ("", "/"):
        raise BootError(
            f"{spec.image}: base-url {info['base-url']} cannot be served by boot-test; it "
            f"needs http://<address in {USER_NET}>/ (the netboot output's default is "
            "http://10.0.2.100/)")
    if "," in f"{spec.image}{http_log}" or " " in f"{spec.image}{http_log}":
        raise BootError(f"{spec.image}: QEMU's guestfwd cannot take a path with a comma "
                        "or a space")
    serve = f"{sys.executable} -m appliance.boot.httpd --log {http_log} {spec.image}"
    net = f"user,id=net0,restrict=on,guestfwd=tcp:{addr}:{url.port or 80}-cmd:{serve}"
    if spec.medium == "pxe":
        # The firmware's iPXE (QEMU's NIC option ROM) gets boot.ipxe over the
        # user network's built-in TFTP; the script loads the rest over HTTP.
        return ["-netdev", f"{net},tftp={spec.image},bootfile=boot.ipxe",
                "-device", "virtio-net-pci,netdev=net0,bootindex=0"]
    return [
        "-kernel", str(spec.image / info["kernel"]),
        "-initrd", str(spec.image / info["initrd"]),
        "-append", f"{info['cmdline']} {CHECK_FLAG}",
        "-netdev", net, "-device", "virtio-net-pci,netdev=net0",
    ]


def command(spec: BootSpec, accel: str, serial_log: Path, vars_copy: Path,
            http_log: Path | None = None, nic_mac: str | None = None,
            boot_check: bool = True) -> list[str]:
    """`boot_check=False`: no boot-check flag in the SMBIOS serial number, so
    GRUB boots its default entry after its timeout, as on any machine."""
    argv = [
        QEMU, "-nodefaults", "-display", "none", "-no-reboot",
        "-machine", "q35", "-m", str(spec.memory_mib), "-smp", str(spec.smp),
        "-accel", accel, "-cpu", "max" if accel == "tcg" else "host",
        "-serial", f"file:{serial_log}",
        *(["-smbios", f"type=1,serial={CHECK_FLAG}"] if boot_check else []),
        *fw.qemu_args(spec.firmware, vars_copy),
    ]
    if spec.kind == "netboot":
        argv += _netboot(spec, http_log or serial_log.with_suffix(".http.log"))
    elif nic_mac:
        # A NIC on an isolated user network (restrict=on: nothing leaves this machine).
        argv += ["-netdev", "user,id=n0,restrict=on",
                 "-device", f"virtio-net-pci,netdev=n0,mac={nic_mac}", *_drive(spec)]
    else:
        argv += ["-nic", "none", *_drive(spec)]
    return argv
