"""The install, in order: answer -> hardware verdict -> plan -> disk ->
copy -> configure -> boot loader -> done. Console progress, a full log
(copied to the target's /var/log/appliance-install.log), and on failure a
clear message, the log's tail, and what the answer says to do next.

Console markers (read by the tests and by anyone watching a serial console):
    APPLIANCE-INSTALL: OK
    APPLIANCE-INSTALL: FAILED: <reason>
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

from appliance import procfs
from appliance.errors import InstallerError
from appliance.installer import bootloader, disk, files, hooks, layout, target
from appliance.installer.plan import Plan
from appliance.runner import run

log = logging.getLogger("appliance.install")

SQUASHFS = Path("/run/live/medium/live/filesystem.squashfs")
TARGET = Path("/target")
RUN_LOG = Path("/run/appliance-install.log")
TARGET_LOG = "var/log/appliance-install.log"
OK_MARKER = "APPLIANCE-INSTALL: OK"
FAIL_MARKER = "APPLIANCE-INSTALL: FAILED"


class InstallError(InstallerError):
    """The install stopped."""


@dataclass
class Console:
    """Progress for people: one line per step, percentages for the copy."""

    out: TextIO = field(default_factory=lambda: sys.stdout)
    started: float = field(default_factory=time.monotonic)

    def say(self, text: str) -> None:
        line = f"[{time.monotonic() - self.started:6.1f}s] {text}"
        print(line, file=self.out, flush=True)
        log.info("%s", text)


def memory_bytes(meminfo: Path = procfs.MEMINFO) -> int:
    return procfs.meminfo(meminfo).get("MemTotal", 0)


def disk_bytes(dev: str) -> int:
    name = os.path.basename(os.path.realpath(dev))
    return int(Path(f"/sys/class/block/{name}/size").read_text()) * 512


@contextlib.contextmanager
def mounted(device: str, where: Path, options: str | None = None) -> Iterator[Path]:
    where.mkdir(parents=True, exist_ok=True)
    run(["mount", *(["-o", options] if options else []), device, where], what=f"mount {device}")
    try:
        yield where
    finally:
        run(["umount", "-R", where], what=f"umount {where}", check=False)


@contextlib.contextmanager
def guests_mounted(vols: disk.Volumes, root: Path) -> Iterator[None]:
    """The guests' thin volume on the target's /var/lib/appliance, before the copy:
    the bundled templates land on it (nothing to do without a data pool)."""
    if vols.guests is None:
        yield
        return
    where = root / layout.GUESTS_MOUNT.lstrip("/")
    where.mkdir(parents=True, exist_ok=True)
    with mounted(vols.guests, where):
        yield


def copy_system(squashfs: Path, dest: Path, progress: Callable[[int], None]) -> None:
    """unsquashfs the live system onto the target, reporting percent done
    (files extracted of the inodes the squashfs holds)."""
    info = run(["unsquashfs", "-s", squashfs], what="unsquashfs -s", capture=True)
    m = re.search(r"Number of inodes (\d+)", info.stdout.decode(errors="replace"))
    total = int(m.group(1)) if m else 0
    proc = subprocess.Popen(["unsquashfs", "-f", "-i", "-d", str(dest), str(squashfs)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    assert proc.stdout is not None
    last, tail = 0, list[str]()
    for done, line in enumerate(proc.stdout, 1):
        tail = [*tail, line.rstrip()][-20:]
        pct = min(99, done * 100 // total) if total else 0
        if pct // 10 > last // 10:
            last = pct
            progress(pct)
    if proc.wait() != 0:
        raise InstallError("copying the system failed (unsquashfs):\n" + "\n".join(tail))
    progress(100)


def install(plan: Plan, console: Console, squashfs: Path = SQUASHFS,
            target_dir: Path = TARGET) -> None:
    """Write the system to plan.disk. Raises InstallError (or ApplianceError)."""
    if not squashfs.is_file():
        raise InstallError(f"{squashfs} not found: `appliance install` runs on the live "
                           "installer system, which carries the system to install")
    # Fetched before the disk is touched: a missing hook stops the install early.
    first_boot = hooks.first_boot_script(plan)
    steps = 6
    console.say(f"[1/{steps}] partitioning {plan.disk}: {plan.layout.describe()}")
    vols = disk.prepare(plan.disk, plan.layout, plan.filesystem, plan.disk_identity)
    try:
        root_uuid = disk.fs_uuid(vols.root)
        with mounted(vols.root, target_dir) as tgt:
            efi = tgt / "boot/efi"
            with mounted(vols.esp, efi, "umask=0077"), guests_mounted(vols, tgt):
                try:
                    console.say(f"[2/{steps}] copying the system from {squashfs.name}")
                    copy_system(squashfs, tgt,
                                lambda pct: console.say(f"      copying the system: {pct}%"))
                    console.say(f"[3/{steps}] configuring {plan.fqdn}")
                    target.configure(tgt, plan, root_uuid, disk.fs_uuid(vols.esp),
                                     disk.fs_uuid(vols.swap),
                                     disk.fs_uuid(vols.guests) if vols.guests else None)
                    console.say(f"[4/{steps}] removing live-only packages, new initramfs")
                    target.finish(tgt)
                    if first_boot is not None:
                        hooks.install_first_boot(tgt, plan, first_boot)
                        console.say("      first-boot hook installed "
                                    f"({plan.first_boot['ordering'] if plan.first_boot else ''})")
                    console.say(f"[5/{steps}] boot loader (BIOS and UEFI) on {plan.disk}")
                    bootloader.install(tgt, vols, root_uuid)
                    console.say(f"[6/{steps}] saving the install log")
                except BaseException as e:
                    log.error("install failed: %s", e)
                    # Where possible the log stays on the target too.
                    with contextlib.suppress(OSError):
                        save_log(tgt)
                        console.say(f"the install log is also on {plan.disk}: {TARGET_LOG} "
                                    "on the root volume")
                    raise
                if plan.webhook is not None:
                    console.say(hooks.post_webhook(plan, tgt))
                save_log(tgt)
                run(["sync"], what="sync")
    finally:
        disk.deactivate()


def save_log(root: Path) -> None:
    if RUN_LOG.exists():
        dest = root / TARGET_LOG
        dest.parent.mkdir(parents=True, exist_ok=True)
        files.write_private(dest, RUN_LOG.read_bytes())


def start_log(path: Path = RUN_LOG) -> logging.Handler:
    files.create_private(path)  # the log is for root only
    handler = logging.FileHandler(path)
    handler.setFormatter(logging.Formatter("%(asctime)s %(name)s %(levelname)s %(message)s"))
    handler.setLevel(logging.DEBUG)
    logging.getLogger().addHandler(handler)
    logging.getLogger().setLevel(logging.DEBUG)
    return handler


def make_plan(disk_path: str, model: str, filesystem: str, sizes: layout.Sizes,
              disk_size: int | None = None, **settings: object) -> Plan:
    size = disk_size if disk_size is not None else disk_bytes(disk_path)
    lay = layout.plan(size, memory_bytes(), sizes)
    return Plan(disk=disk_path, disk_model=model, layout=lay, filesystem=filesystem,
                **settings)  # type: ignore[arg-type]
