"""The implicit last step of every recipe: remove what makes trees differ
between builds or hosts (logs, caches, machine-id), so the same recipe and
package versions give the same bytes, and each installed host gets its own
machine-id at first boot."""

from __future__ import annotations

import contextlib
import shutil
from pathlib import Path

from appliance.engine.context import StepContext

NAME = "finalize"
VERSION = 1

# Removed entirely (globs relative to the tree root).
REMOVE = (
    "var/lib/apt/lists/*_*",
    "var/lib/apt/lists/auxfiles",
    "var/cache/apt/*.bin",
    "var/cache/apt/archives/*.deb",
    "var/cache/apt/archives/partial/*",
    "var/cache/ldconfig/aux-cache",
    "var/cache/debconf/*-old",
    "var/lib/dpkg/*-old",
    "var/log/apt/*",
    "var/lib/dbus/machine-id",
    "var/lib/systemd/random-seed",
    "tmp/*",
    "var/tmp/*",
    "root/.bash_history",
)
# Kept but emptied: logs that record when packages were installed.
TRUNCATE = (
    "var/log/dpkg.log",
    "var/log/alternatives.log",
    "var/log/bootstrap.log",
    "var/log/lastlog",
    "var/log/wtmp",
    "var/log/btmp",
    "var/log/faillog",
)


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()


def run(ctx: StepContext) -> None:
    root = ctx.tree
    for pattern in REMOVE:
        for p in sorted(root.glob(pattern)):
            _remove(p)
    for rel in TRUNCATE:
        p = root / rel
        if p.is_file() and p.stat().st_size:
            p.write_bytes(b"")
    # The build host's DNS settings must not leak into the image.
    resolv = root / "etc/resolv.conf"
    if resolv.is_file() and not resolv.is_symlink() and resolv.stat().st_size:
        resolv.write_bytes(b"")
        resolv.chmod(0o644)
    machine_id = root / "etc/machine-id"
    # Empty: systemd generates a unique one on each host's first boot.
    if (root / "etc").is_dir() and (
        machine_id.is_symlink() or not machine_id.is_file() or machine_id.read_bytes()
    ):
        _remove(machine_id)
        machine_id.write_bytes(b"")
        machine_id.chmod(0o444)
