"""The product installer ISO as a person boots it: written to a USB stick,
UEFI, nobody at the GRUB menu. GRUB must pick its DEFAULT entry by itself
(no boot-check flag in the SMBIOS serial, no forced entry, no edited command
line) and the installer's live system must come up from the stick.

The default entry puts the installer on the screen (tty0, the last console=)
and the kernel's messages and a login prompt on ttyS0 as well: the serial
log is the evidence; a screenshot of the screen is kept next to it."""

from __future__ import annotations

import contextlib
import re
import socket
import time
from pathlib import Path

import pytest

from appliance.boot import accel as accel_mod
from appliance.boot import qemu
from appliance.runner import spawn, stop

pytestmark = pytest.mark.e2e

TIMEOUT = 240.0
LOGIN = re.compile(rb"\n\S+ login: ")
DEFAULT_CMDLINE = ("appliance.install systemd.mask=getty@tty1.service "
                   "console=ttyS0,115200n8 console=tty0")


def screendump(monitor: Path, out: Path) -> bytes:
    """The screen as PPM, through QEMU's human monitor (`screendump`)."""
    with socket.socket(socket.AF_UNIX) as s:
        s.connect(str(monitor))
        s.settimeout(10)
        s.sendall(f"screendump {out}\n".encode())
        deadline = time.monotonic() + 10
        while not out.exists() and time.monotonic() < deadline:
            with contextlib.suppress(TimeoutError):
                s.recv(4096)
            time.sleep(0.2)
    time.sleep(0.5)  # QEMU writes it in one go; let it finish
    return out.read_bytes()


def test_installer_iso_default_entry_boots_from_a_usb_stick_uefi(
        installer_iso: Path, tmp_path: Path, record_property: pytest.RecordProperty) -> None:
    spec = qemu.make_spec(installer_iso, "uefi", "usb")
    accel, _ = accel_mod.choose_accelerator()
    serial = tmp_path / "default-entry.serial.log"
    monitor = tmp_path / "monitor.sock"
    argv = qemu.command(spec, accel, serial, tmp_path / "OVMF_VARS.fd", boot_check=False)
    assert "-smbios" not in argv  # GRUB's check-entry override cannot trigger
    # a screen, as a real machine has (QEMU's -nodefaults left none)
    argv += ["-device", "VGA", "-monitor", f"unix:{monitor},server=on,wait=off"]
    t0 = time.monotonic()
    proc = spawn(argv, output=tmp_path / "qemu.log", what="QEMU")
    data = b""
    try:
        while time.monotonic() - t0 < TIMEOUT and proc.poll() is None:
            with contextlib.suppress(FileNotFoundError):
                data = serial.read_bytes()
            if LOGIN.search(data):
                break
            time.sleep(0.5)
        seconds = time.monotonic() - t0
        shot = screendump(monitor, tmp_path / "screen.ppm") if proc.poll() is None else b""
    finally:
        stop(proc)
    record_property("seconds_to_login_prompt", round(seconds, 1))
    print(f"installer ISO, default entry, UEFI USB stick: login prompt on ttyS0 after "
          f"{seconds:.1f}s [{accel}]; serial log {serial}")
    text = data.decode(errors="replace")
    tail = "\n".join(text.splitlines()[-30:])
    assert LOGIN.search(data), f"no login prompt on ttyS0 within {TIMEOUT:.0f}s:\n{tail}"
    # GRUB showed its menu (on the serial terminal too) and booted the first
    # entry, "Install appliance", with its own command line
    assert "Install appliance (serial console)" in text, "GRUB's menu was not shown"
    cmdline = re.search(r"Command line: (.*)", text)
    assert cmdline, f"the kernel did not print its command line:\n{tail}"
    assert DEFAULT_CMDLINE in cmdline.group(1), cmdline.group(1)
    assert "appliance.boot_check" not in cmdline.group(1)
    # the only medium is the USB stick: the live system came from it
    assert "USB Mass Storage device detected" in text
    # the screen is /dev/console (tty0 last), where the installer runs
    # (appliance-installer.service: TTYPath=/dev/console): systemd's status
    # lines ("[  OK  ] Started ...") go there, never to ttyS0
    assert "  OK  " not in text, "systemd's status lines are on ttyS0: it is /dev/console"
    # the screen shows something (GRUB, the kernel, the installer): not one colour
    assert shot.startswith(b"P6"), shot[:20]
    pixels = shot[shot.index(b"255\n") + 4:] if b"255\n" in shot else b""
    assert len(set(pixels[i:i + 3] for i in range(0, min(len(pixels), 3 << 20), 3))) > 1, \
        "the screen is blank"
