"""Run an installer ISO in QEMU against target disk images and wait for its
verdict (the installer's console markers, appliance/installer/run.py).
Used by the installer's end-to-end tests and bench/install.py.

Disks are virtio-blk with a serial number (udev's ID_SERIAL, what answer
filters match). The NIC, when asked for, is QEMU user networking with
restrict=on: the guest reaches nothing but the forwards given here."""

from __future__ import annotations

import contextlib
import re
import shlex
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from appliance.boot import firmware as fw
from appliance.boot import qemu
from appliance.errors import BootError
from appliance.runner import spawn, stop

OK = re.compile(rb"APPLIANCE-INSTALL: OK")
FAILED = re.compile(rb"APPLIANCE-INSTALL: FAILED: ([^\r\n]*)[\r\n]")


@dataclass
class Disk:
    path: Path
    serial: str
    fmt: str = "raw"


@dataclass
class InstallRun:
    ok: bool
    failure: str | None
    seconds: float
    exited: bool  # QEMU ended (the installer powered off / rebooted)
    serial_log: Path
    command: list[str] = field(default_factory=list)

    def text(self) -> str:
        return self.serial_log.read_bytes().decode(errors="replace")


def command(iso: Path, disks: list[Disk], firmware: str, accel: str, serial_log: Path,
            vars_copy: Path, memory_mib: int = 2048, nic: str | None = None,
            mac: str = "52:54:00:12:34:56") -> list[str]:
    argv = [
        qemu.QEMU, "-nodefaults", "-display", "none", "-no-reboot",
        "-machine", "q35", "-m", str(memory_mib), "-smp", "2",
        "-accel", accel, "-cpu", "max" if accel == "tcg" else "host",
        "-serial", f"file:{serial_log}",
        *fw.qemu_args(firmware, vars_copy),
        "-drive", f"if=none,id=cd,media=cdrom,readonly=on,format=raw,file={iso}",
        "-device", "ide-cd,drive=cd,bootindex=0",
    ]
    for i, d in enumerate(disks):
        if "," in str(d.path):
            raise BootError(f"{d.path}: QEMU cannot take a path with a comma")
        argv += ["-drive", f"if=none,id=d{i},format={d.fmt},file={d.path}",
                 "-device", f"virtio-blk-pci,drive=d{i},serial={d.serial}"]
    if nic is None:
        argv += ["-nic", "none"]
    else:
        argv += ["-netdev", f"user,id=n0,restrict=on{nic}",
                 "-device", f"virtio-net-pci,netdev=n0,mac={mac}"]
    return argv


def run_installer(iso: Path, disks: list[Disk], firmware: str = "uefi",
                  timeout: float = 1200, nic: str | None = None, workdir: Path | None = None,
                  accel: str = "tcg") -> InstallRun:
    """Boot `iso` (prepared for an unattended install), wait for the
    installer's marker and, after OK, for the machine to power off."""
    workdir = workdir or iso.parent
    serial = workdir / f"{iso.name}.install.serial.log"
    vars_copy = workdir / f"{iso.name}.install.OVMF_VARS.fd"
    qemu_log = workdir / f"{iso.name}.install.qemu.log"
    serial.unlink(missing_ok=True)
    argv = command(iso.resolve(), disks, firmware, accel, serial, vars_copy, nic=nic)
    qemu_log.write_text(shlex.join(argv) + "\n")
    t0 = time.monotonic()
    proc = spawn(argv, output=qemu_log, what="QEMU")
    ok, failure, exited = False, None, False
    try:
        while time.monotonic() - t0 < timeout:
            data = serial.read_bytes() if serial.exists() else b""
            m = FAILED.search(data)
            if m:
                failure = m.group(1).decode(errors="replace")
                break
            if OK.search(data):
                ok = True
                with contextlib.suppress(subprocess.TimeoutExpired):
                    proc.wait(max(1.0, min(180.0, timeout - (time.monotonic() - t0))))
                break
            if proc.poll() is not None:
                break
            time.sleep(1)
        else:
            failure = f"timeout after {timeout:.0f}s without an installer verdict"
        exited = proc.poll() is not None
        if not ok and failure is None:
            failure = f"QEMU exited ({proc.returncode}) without an installer verdict"
    finally:
        stop(proc)
        vars_copy.unlink(missing_ok=True)
    return InstallRun(ok, failure, round(time.monotonic() - t0, 1), exited, serial, argv)
