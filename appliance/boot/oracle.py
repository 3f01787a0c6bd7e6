"""Reads a serial console log and decides how a boot went.

The boot-check unit in our images (templates/overlays/boot-check) prints
    APPLIANCE-BOOT-CHECK state=<systemctl is-system-running> failed=<units|none>
once start-up is over. A boot is good when that line says state=running and
failed=none. Some failures are recognized earlier, from the console text."""

from __future__ import annotations

import re
from dataclasses import dataclass

# Only a complete line counts: the UART delivers the marker byte by byte, so
# the log may end in the middle of it.
MARKER = re.compile(rb"APPLIANCE-BOOT-CHECK state=(\S+) failed=(\S+)[\r\n]")

# (pattern, reason): a boot that shows one of these will not reach the marker.
FATAL = (
    (re.compile(rb"Kernel panic - not syncing[^\r\n]*"), "kernel panic"),
    (re.compile(rb"You are in emergency mode|Entering emergency mode"), "emergency shell"),
    (re.compile(rb"Give root password for maintenance"), "emergency shell"),
    (re.compile(rb"Unable to find a medium containing a live file system"),
     "live-boot found no medium with the live file system"),
    (re.compile(rb"ALERT! [^\r\n]*"), "initramfs could not find the root file system"),
    (re.compile(rb"\(initramfs\) "), "dropped to the initramfs shell"),
)


@dataclass
class Verdict:
    done: bool  # a decision is made (marker or fatal pattern seen)
    ok: bool = False
    state: str | None = None
    failed_units: tuple[str, ...] = ()
    reason: str = ""
    end: int | None = None  # where in the log the decision was made


def judge(log: bytes) -> Verdict:
    """The verdict on the serial output so far."""
    m = MARKER.search(log)
    if m:
        state = m.group(1).decode(errors="replace")
        failed_raw = m.group(2).decode(errors="replace")
        failed = () if failed_raw == "none" else tuple(u for u in failed_raw.split(",") if u)
        ok = state == "running" and not failed
        if ok:
            reason = "system running, no failed units"
        elif failed:
            reason = f"system {state}; failed units: {', '.join(failed)}"
        else:
            reason = f"system {state} (expected running)"
        return Verdict(True, ok, state, failed, reason, m.end() - 1)
    for rx, reason in FATAL:
        f = rx.search(log)
        if f:
            detail = f.group(0).decode(errors="replace").strip()
            return Verdict(True, False, None, (), f"{reason}: {detail}" if detail != reason
                           else reason, f.end())
    return Verdict(False)


def tail(log: bytes, lines: int = 30) -> str:
    """The last lines of a console log, escape sequences and CRs removed."""
    text = re.sub(rb"\x1b\[[0-9;?]*[A-Za-z]", b"", log).replace(b"\r", b"")
    return "\n".join(text.decode(errors="replace").splitlines()[-lines:])
