"""Mounts the build needs, always undone: overlay stacks of cached layers and
the API filesystems (/proc, /sys, /dev) of a chroot. Every mount is pushed on
an ExitStack, so failures, Ctrl-C and SIGTERM unmount in reverse order."""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import signal
from collections.abc import Iterator, Sequence
from pathlib import Path
from types import FrameType

from appliance.runner import run

log = logging.getLogger("appliance.mounts")


def mountpoints_under(path: Path) -> list[Path]:
    """Mount points at or below `path`, deepest first."""
    prefix = os.fspath(path.resolve())
    found = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            mnt = line.split()[4].encode().decode("unicode_escape")
            if mnt == prefix or mnt.startswith(prefix.rstrip("/") + "/"):
                found.append(Path(mnt))
    return sorted(set(found), key=lambda p: len(p.parts), reverse=True)


def umount(path: Path) -> None:
    run(["umount", "--lazy", path], what=f"unmounting {path}")


def umount_all_under(path: Path) -> None:
    for mnt in mountpoints_under(path):
        umount(mnt)


@contextlib.contextmanager
def mounted(
    source: str | Path, target: Path, fstype: str | None = None, options: Sequence[str] = ()
) -> Iterator[Path]:
    argv: list[str | Path] = ["mount"]
    if fstype:
        argv += ["-t", fstype]
    if options:
        argv += ["-o", ",".join(options)]
    argv += [source, target]
    run(argv, what=f"mounting {target}")
    try:
        yield target
    finally:
        umount_all_under(target)


@contextlib.contextmanager
def overlay(lowers: Sequence[Path], upper: Path | None, work: Path | None,
            target: Path) -> Iterator[Path]:
    """Mount `lowers` (top first) with an optional writable `upper` at `target`.
    Without upper the view is read-only."""
    target.mkdir(parents=True, exist_ok=True)
    if upper is None and len(lowers) == 1:
        with mounted(lowers[0], target, options=["bind", "ro"]):
            yield target
        return
    opts = ["lowerdir=" + ":".join(os.fspath(p) for p in lowers)]
    if upper is not None:
        assert work is not None
        work.mkdir(parents=True, exist_ok=True)
        opts += [f"upperdir={upper}", f"workdir={work}"]
    opts += ["index=off", "xino=off"]
    with mounted("overlay", target, "overlay", opts):
        yield target


def _write_resolv(tree: Path, stack: contextlib.ExitStack) -> None:
    """Give the chroot the host's DNS configuration for the step's duration."""
    resolv = tree / "etc/resolv.conf"
    if not Path("/etc/resolv.conf").exists() or not (tree / "etc").is_dir():
        return
    if resolv.is_symlink() or not resolv.exists():
        saved = os.readlink(resolv) if resolv.is_symlink() else None
        if saved is not None:
            resolv.unlink()
        shutil.copyfile("/etc/resolv.conf", resolv)

        def restore() -> None:
            resolv.unlink(missing_ok=True)
            if saved is not None:
                os.symlink(saved, resolv)

        stack.callback(restore)
    else:
        stack.enter_context(mounted("/etc/resolv.conf", resolv, options=["bind", "ro"]))


POLICY_RC_D = "#!/bin/sh\n# installed by appliance while building: no daemons start\nexit 101\n"


@contextlib.contextmanager
def chroot_env(tree: Path) -> Iterator[Path]:
    """/proc, /sys, /dev, /run and DNS inside `tree`, and a policy-rc.d so
    package scripts start no daemons; all undone on exit, error or signal."""
    with contextlib.ExitStack() as stack:
        for sub, mode in (("proc", 0o555), ("sys", 0o555), ("dev", 0o755), ("run", 0o755)):
            d = tree / sub
            if not d.exists():
                d.mkdir(mode=mode)
                stack.callback(_rmdir_quiet, d)
        stack.enter_context(mounted("proc", tree / "proc", "proc", ["nosuid", "nodev", "noexec"]))
        stack.enter_context(mounted("/sys", tree / "sys", options=["rbind", "ro"]))
        run(["mount", "--make-rslave", tree / "sys"])
        stack.enter_context(mounted("/dev", tree / "dev", options=["rbind"]))
        run(["mount", "--make-rslave", tree / "dev"])
        stack.enter_context(mounted("tmpfs", tree / "run", "tmpfs", ["mode=0755", "nosuid"]))
        _write_resolv(tree, stack)
        policy = tree / "usr/sbin/policy-rc.d"
        if policy.parent.is_dir() and not policy.exists():
            policy.write_text(POLICY_RC_D)
            policy.chmod(0o755)
            stack.callback(policy.unlink, missing_ok=True)
        yield tree


def _rmdir_quiet(d: Path) -> None:
    with contextlib.suppress(OSError):
        d.rmdir()


class _Terminated(KeyboardInterrupt):
    pass


@contextlib.contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """Turn SIGTERM into KeyboardInterrupt so `finally` blocks unmount."""

    def handler(signum: int, frame: FrameType | None) -> None:
        raise _Terminated()

    try:
        old = signal.signal(signal.SIGTERM, handler)
    except ValueError:  # not the main thread
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, old)
