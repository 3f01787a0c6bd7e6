"""A tiny Linux guest that runs `appliance detect --json` under QEMU TCG.

The initramfs holds busybox, this machine's python3 with the stdlib, pyudev,
cffi's backend, the project's `appliance` package (with its compiled CPUID
helper) and Debian's kvm/kvm_amd modules. Its /init loads the modules,
prints the JSON report between markers on the serial console and powers off.
QEMU runs with `-cpu max` (which exposes AMD-V) and `-nic none`.
"""

from __future__ import annotations

import gzip
import json
import os
import re
import shutil
import subprocess
import sys
import sysconfig
from dataclasses import dataclass
from pathlib import Path

PROJECT = Path(__file__).resolve().parents[2]
BEGIN, END = "@@APPLIANCE-DETECT-BEGIN@@", "@@APPLIANCE-DETECT-END@@"
# Modules to load in the guest, in order; their dependencies are added.
GUEST_MODULES = ("kvm-amd", "msr")
STDLIB_SKIP = {
    "test", "idlelib", "tkinter", "turtledemo", "ensurepip", "lib2to3", "pydoc_data",
    "unittest", "distutils", "venv", "site-packages", "dist-packages",
}  # fmt: skip

INIT = f"""#!/bin/busybox sh
/bin/busybox --install -s /bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
for m in $(cat /modules.order); do
    insmod /modules/$m.ko || echo "insmod $m failed"
done
echo {BEGIN}
PYTHONPATH=/opt/appliance /usr/bin/python3 -m appliance detect --json
echo "{END} exit=$?"
poweroff -f
"""


@dataclass
class GuestKernel:
    version: str
    vmlinuz: Path
    modules: Path  # /lib/modules/<version>


def find_debian_kernel() -> GuestKernel | None:
    """A Debian kernel in /boot whose modules include kvm-amd."""
    for vmlinuz in sorted(Path("/boot").glob("vmlinuz-*"), reverse=True):
        version = vmlinuz.name.removeprefix("vmlinuz-")
        mods = Path("/lib/modules") / version
        if (mods / "kernel/arch/x86/kvm/kvm-amd.ko").exists() and os.access(vmlinuz, os.R_OK):
            return GuestKernel(version, vmlinuz, mods)
    return None


def _modinfo(kernel: GuestKernel, name: str, field: str) -> str:
    out = subprocess.run(
        ["modinfo", "-k", kernel.version, "-F", field, name],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    return out.stdout.strip()


def module_closure(kernel: GuestKernel, names: tuple[str, ...]) -> list[tuple[str, Path]]:
    """(name, .ko path) for `names` and their dependencies, dependencies first."""
    ordered: list[tuple[str, Path]] = []
    seen: set[str] = set()

    def visit(name: str) -> None:
        key = name.replace("-", "_")
        if key in seen:
            return
        seen.add(key)
        for dep in filter(None, _modinfo(kernel, name, "depends").split(",")):
            visit(dep)
        ordered.append((key, Path(_modinfo(kernel, name, "filename"))))

    for name in names:
        visit(name)
    return ordered


def _shared_libs(binaries: list[Path]) -> set[Path]:
    libs: set[Path] = set()
    for binary in binaries:
        out = subprocess.run(["ldd", str(binary)], capture_output=True, text=True).stdout
        for match in re.finditer(r"(/\S+) \(0x", out):
            libs.add(Path(match.group(1)))
    return libs


def _copy(src: Path, staging: Path) -> None:
    dst = staging / src.relative_to("/")
    dst.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy2(src, dst, follow_symlinks=True)


def build_initramfs(kernel: GuestKernel, workdir: Path) -> Path:
    staging = workdir / "root"
    if staging.exists():
        shutil.rmtree(staging)
    for d in ("bin", "sbin", "usr/bin", "usr/sbin", "proc", "sys", "dev", "tmp", "modules", "etc"):
        (staging / d).mkdir(parents=True, exist_ok=True)
    shutil.copy2("/bin/busybox", staging / "bin/busybox")
    shutil.copy2("/sbin/ldconfig", staging / "sbin/ldconfig")  # ctypes.util.find_library
    shutil.copy2("/etc/ld.so.cache", staging / "etc/ld.so.cache")

    # python3 and its stdlib, at the same paths as here
    python = Path(os.path.realpath(sys._base_executable))  # type: ignore[attr-defined]
    _copy(python, staging)
    (staging / "usr/bin/python3").unlink(missing_ok=True)
    os.symlink(python.name, staging / "usr/bin/python3")
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    shutil.copytree(
        stdlib,
        staging / stdlib.relative_to("/"),
        ignore=lambda d, names: [n for n in names if Path(d) == stdlib and n in STDLIB_SKIP],
        symlinks=False,
        dirs_exist_ok=True,
    )
    # the project and the third-party modules it imports
    import _cffi_backend
    import pyudev

    site = staging / "opt/appliance"
    shutil.copytree(
        PROJECT / "appliance", site / "appliance", ignore=shutil.ignore_patterns("__pycache__")
    )
    shutil.copytree(Path(pyudev.__file__).parent, site / "pyudev")
    shutil.copy2(_cffi_backend.__file__, site)
    udev_lib = Path("/lib/x86_64-linux-gnu/libudev.so.1")
    binaries = [python, Path(_cffi_backend.__file__), udev_lib]
    binaries += list((site / "appliance").rglob("*.so"))
    binaries += list((staging / stdlib.relative_to("/") / "lib-dynload").glob("*.so"))
    for lib in _shared_libs(binaries) | {udev_lib}:
        _copy(lib, staging)
        real = Path(os.path.realpath(lib))
        if real != lib:
            _copy(real, staging)

    order = []
    for name, ko in module_closure(kernel, GUEST_MODULES):
        shutil.copy2(ko, staging / "modules" / f"{name}.ko")
        order.append(name)
    (staging / "modules.order").write_text("\n".join(order) + "\n")
    init = staging / "init"
    init.write_text(INIT)
    init.chmod(0o755)

    files = subprocess.run(
        ["find", ".", "-mindepth", "1"], cwd=staging, capture_output=True, check=True
    ).stdout
    cpio = subprocess.run(
        ["cpio", "--quiet", "-o", "-H", "newc", "--owner=0:0"],
        cwd=staging, input=files, capture_output=True, check=True,
    )  # fmt: skip
    out = workdir / "initramfs.cpio.gz"
    out.write_bytes(gzip.compress(cpio.stdout, compresslevel=1))
    shutil.rmtree(staging)
    return out


@dataclass
class GuestRun:
    console: str
    exit_code: int | None
    report: dict[str, object] | None


def run_guest(kernel: GuestKernel, initramfs: Path, timeout: float = 240) -> GuestRun:
    cmd = [
        "qemu-system-x86_64",
        "-accel", "tcg",
        "-cpu", "max",
        "-m", "1024",
        "-smp", "1",
        "-nic", "none",
        "-display", "none",
        "-serial", "stdio",
        "-monitor", "none",
        "-no-reboot",
        "-kernel", str(kernel.vmlinuz),
        "-initrd", str(initramfs),
        "-append", "console=ttyS0 quiet loglevel=3 panic=-1",
    ]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, timeout=timeout)
    console = proc.stdout.decode(errors="replace").replace("\r", "")
    report, code = None, None
    if BEGIN in console and END in console:
        body = console.split(BEGIN, 1)[1].split(END, 1)[0]
        start = body.find("{")
        if start >= 0:
            report = json.loads(body[start : body.rfind("}") + 1])
        m = re.search(re.escape(END) + r" exit=(\d+)", console)
        code = int(m.group(1)) if m else None
    return GuestRun(console, code, report)
