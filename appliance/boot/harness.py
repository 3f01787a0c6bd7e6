"""`appliance boot-test`: boot an image in QEMU, watch its serial console,
decide (oracle.py), and keep the serial log next to the image."""

from __future__ import annotations

import contextlib
import logging
import shlex
import subprocess
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from appliance.boot import accel as accel_mod
from appliance.boot import oracle, qemu
from appliance.errors import BootError
from appliance.runner import require_tools, spawn, stop

log = logging.getLogger("appliance.boot")

POLL_SECONDS = 0.5
POWEROFF_GRACE = 15.0


@dataclass
class BootResult:
    image: str
    kind: str
    medium: str
    firmware: str
    accelerator: str
    accelerator_reason: str
    ok: bool
    reason: str
    state: str | None
    failed_units: list[str]
    seconds: float  # from QEMU start to the decision (the marker, if reached)
    marker_reached: bool
    powered_off: bool
    serial_log: str
    command: list[str] = field(default_factory=list)
    log_tail: str = ""

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    def summary(self) -> str:
        what = f"{Path(self.image).name} ({self.kind}, {self.firmware}, as {self.medium})"
        if self.ok:
            return (f"PASS {what}: {self.reason} after {self.seconds:.1f}s "
                    f"[{self.accelerator}]; serial log {self.serial_log}")
        return (f"FAIL {what}: {self.reason} after {self.seconds:.1f}s [{self.accelerator}]; "
                f"serial log {self.serial_log}\n--- serial console (last lines) ---\n"
                f"{self.log_tail}")


def log_path(spec: qemu.BootSpec) -> Path:
    """The serial log lives next to the image: IMAGE.FIRMWARE-MEDIUM.serial.log."""
    return spec.image.with_name(f"{spec.image.name}.{spec.firmware}-{spec.medium}.serial.log")


def boot_test(image: Path, firmware: str = "bios", medium: str | None = None,
              timeout: float = 300.0, memory_mib: int = 2048,
              accelerator: tuple[str, str] | None = None,
              nic_mac: str | None = None) -> BootResult:
    """Boot `image` once and judge it. Never raises for a bad boot (the result
    says why); raises BootError when the boot cannot even be attempted."""
    spec = qemu.make_spec(image, firmware, medium, memory_mib)
    require_tools(qemu.QEMU, why="to boot images")
    accel, why = accelerator or accel_mod.choose_accelerator()
    serial = log_path(spec)
    qemu_log = serial.with_name(serial.name.replace(".serial.log", ".qemu.log"))
    vars_copy = serial.with_name(serial.name.replace(".serial.log", ".OVMF_VARS.fd"))
    serial.unlink(missing_ok=True)
    qemu_log.unlink(missing_ok=True)
    http_log = serial.with_name(serial.name.replace(".serial.log", ".http.log"))
    http_log.unlink(missing_ok=True)
    argv = qemu.command(spec, accel, serial, vars_copy, http_log, nic_mac)
    log.info("booting %s: %s", image, shlex.join(argv))
    t0 = time.monotonic()
    proc = spawn(argv, output=qemu_log, what="QEMU")
    verdict = oracle.Verdict(False)
    data = b""
    exited = False
    try:
        while True:
            with contextlib.suppress(FileNotFoundError):
                data = serial.read_bytes()
            verdict = oracle.judge(data)
            if verdict.done:
                break
            if proc.poll() is not None:
                # It may have written the marker just before powering off.
                with contextlib.suppress(FileNotFoundError):
                    data = serial.read_bytes()
                verdict = oracle.judge(data)
                exited = not verdict.done
                break
            if time.monotonic() - t0 > timeout:
                break
            time.sleep(POLL_SECONDS)
        seconds = time.monotonic() - t0
        powered_off = False
        if verdict.done and verdict.state is not None:
            # The boot check powers the machine off; give it a moment.
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(POWEROFF_GRACE)
                powered_off = True
    finally:
        stop(proc)
        vars_copy.unlink(missing_ok=True)
    with contextlib.suppress(FileNotFoundError):
        data = serial.read_bytes()
    if verdict.done:
        reason = verdict.reason
    elif exited:
        qemu_out = qemu_log.read_text(errors="replace").strip() if qemu_log.exists() else ""
        reason = (f"QEMU exited with status {proc.returncode} before the boot check reported"
                  + (f": {qemu_out.splitlines()[-1]}" if qemu_out else ""))
    else:
        reason = (f"timeout: no boot-check marker within {timeout:.0f}s (is the image built "
                  "with the boot-check unit? see templates/overlays/boot-check)")
    return BootResult(
        image=str(spec.image), kind=spec.kind, medium=spec.medium, firmware=spec.firmware,
        accelerator=accel, accelerator_reason=why, ok=verdict.ok, reason=reason,
        state=verdict.state, failed_units=list(verdict.failed_units),
        seconds=round(seconds, 1), marker_reached=verdict.state is not None,
        powered_off=powered_off, serial_log=str(serial), command=argv,
        # On a decision: the console up to it (not the shutdown after it).
        log_tail="" if verdict.ok else oracle.tail(data[:verdict.end] if verdict.end else data),
    )


def check(result: BootResult) -> None:
    """Raise BootError for a bad boot."""
    if not result.ok:
        raise BootError(result.summary())
