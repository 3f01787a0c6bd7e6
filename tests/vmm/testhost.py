"""The nested test host for Linux boots of the monitor (boot test, bench).

On machines whose /dev/kvm cannot run a kernel at usable speed (PVM), QEMU
TCG with `-cpu max` offers AMD-V to its guest.  That guest (L1) is Debian's
kernel with an initramfs built here from this machine's own files: busybox,
the kvm/kvm_amd modules, Python with this package and its compiled monitor,
and optionally QEMU.  Inside L1 our monitor boots the L2 guest: Debian's
kernel again with a tiny initramfs whose /init (native/guests/linux_init.c)
writes the boot-done port, prints MARKER and powers off.
"""

from __future__ import annotations

import importlib.util
import os
import py_compile
import re
import shlex
import stat
import sys
import sysconfig
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import appliance
from appliance.errors import ToolError, VmmError
from appliance.runner import require_tools, run

MARKER = "APPLIANCE-L2-USERSPACE-OK"
ROOT = Path(appliance.__file__).resolve().parent.parent
NATIVE = ROOT / "native"
# the interpreter running us (a venv's python resolves to Debian's), its stdlib
PYTHON = Path(os.path.realpath(sys.executable))
STDLIB = Path(sysconfig.get_paths()["stdlib"])
KVM_MODULES = ("virt/lib/irqbypass.ko", "arch/x86/kvm/kvm.ko", "drivers/crypto/ccp/ccp.ko",
               "arch/x86/kvm/kvm-amd.ko")  # fmt: skip
STDLIB_SKIP = {
    "test", "idlelib", "tkinter", "turtledemo", "lib2to3", "ensurepip", "pydoc_data",
    "distutils", "site-packages", "dist-packages", "unittest", "xmlrpc", "sqlite3",
    "curses", "dbm", "tomllib", "wsgiref", "multiprocessing",
}  # fmt: skip
QEMU_FIRMWARE = (  # Debian's QEMU looks in /usr/share/qemu and /usr/share/seabios
    "/usr/share/seabios/bios-256k.bin",
    "/usr/share/qemu/bios-microvm.bin",
    "/usr/share/qemu/linuxboot_dma.bin",
    "/usr/share/qemu/kvmvapic.bin",
)

# L2 command line: serial console, no PCI scan, no PS/2 mouse probe, quiet so
# the console does not dominate the boot time.
L2_CMDLINE = "console=ttyS0 reboot=k panic=-1 acpi=off pci=off i8042.noaux i8042.nomux quiet"


class Cpio:
    """An in-memory newc ("070701") archive, as the kernel's initramfs wants."""

    def __init__(self) -> None:
        self._chunks: list[bytes] = []
        self._ino = 1
        self._dirs: set[str] = {""}

    def _entry(
        self,
        name: str,
        mode: int,
        data: bytes = b"",
        rdev: tuple[int, int] = (0, 0),
        mtime: int = 0,
    ) -> None:
        name_b = name.encode() + b"\0"
        fields = [
            self._ino,
            mode,
            0,
            0,
            1,
            mtime,
            len(data),
            0,
            0,
            rdev[0],
            rdev[1],
            len(name_b),
            0,
        ]
        self._ino += 1
        hdr = b"070701" + b"".join(b"%08x" % f for f in fields)
        self._chunks.append(hdr + name_b + b"\0" * (-(len(hdr) + len(name_b)) % 4))
        self._chunks.append(data + b"\0" * (-len(data) % 4))

    def dir(self, path: str) -> None:
        path = path.strip("/")
        if path in self._dirs:
            return
        self.dir(os.path.dirname(path))
        self._dirs.add(path)
        self._entry(path, stat.S_IFDIR | 0o755)

    def file(self, path: str, data: bytes, mode: int = 0o644, mtime: int = 0) -> None:
        path = path.strip("/")
        self.dir(os.path.dirname(path))
        self._entry(path, stat.S_IFREG | mode, data, mtime=mtime)

    def copy(self, host: Path, path: str | None = None) -> None:
        # the real mtime keeps Python's timestamp-checked .pyc files valid
        st = host.stat()
        self.file(path or str(host), host.read_bytes(), stat.S_IMODE(st.st_mode), int(st.st_mtime))

    def symlink(self, path: str, target: str) -> None:
        path = path.strip("/")
        self.dir(os.path.dirname(path))
        self._entry(path, stat.S_IFLNK | 0o777, target.encode())

    def chardev(self, path: str, major: int, minor: int) -> None:
        path = path.strip("/")
        self.dir(os.path.dirname(path))
        self._entry(path, stat.S_IFCHR | 0o600, rdev=(major, minor))

    def tree(self, host: Path, dest: str, skip: Iterable[str] = ()) -> None:
        skip = set(skip)
        for dirpath, dirnames, filenames in os.walk(host):
            rel = os.path.relpath(dirpath, host)
            dirnames[:] = sorted(d for d in dirnames if rel != "." or d not in skip)
            for f in sorted(filenames):
                src = Path(dirpath) / f
                if src.is_file():
                    self.copy(src, os.path.normpath(os.path.join(dest, rel, f)))

    def write(self, path: Path) -> Path:
        self._entry("TRAILER!!!", 0)
        path.write_bytes(b"".join(self._chunks))
        return path


def shared_libraries(binaries: Sequence[Path]) -> set[Path]:
    """Every shared library (and the loader) the binaries need, per ldd."""
    libs: set[Path] = set()
    for b in binaries:
        out = run(["ldd", b], capture=True, check=False).stdout.decode()
        for line in out.splitlines():
            m = re.search(r"(?:=>\s*)?(/\S+)\s+\(0x", line)
            if m:
                libs.add(Path(m.group(1)))
    return libs


def kernel_release(kernel: Path) -> str:
    m = re.match(r"vmlinuz-(.+)$", kernel.name)
    if not m or not Path("/lib/modules", m.group(1)).is_dir():
        raise VmmError(f"{kernel}: cannot find the modules of this kernel in /lib/modules")
    return m.group(1)


def module_closure(release: str, names: Sequence[str]) -> list[Path]:
    """Kernel modules (by name, e.g. "virtio_blk") and everything they depend
    on, per modules.dep, in an order insmod can load them (dependencies first)."""
    base = Path("/lib/modules") / release
    deps: dict[str, list[str]] = {}
    by_name: dict[str, str] = {}
    for line in (base / "modules.dep").read_text().splitlines():
        mod, _, rest = line.partition(":")
        deps[mod] = rest.split()
        by_name[Path(mod).name.split(".")[0].replace("-", "_")] = mod
    order: list[str] = []

    def visit(mod: str) -> None:
        if mod in order:
            return
        for d in deps.get(mod, []):
            visit(d)
        order.append(mod)

    for name in names:
        key = name.replace("-", "_")
        if key not in by_name:
            raise VmmError(f"kernel {release} has no module {name} (built in, or missing)")
        visit(by_name[key])
    return [base / m for m in order]


def build_l2_busybox_initramfs(
    workdir: Path, kernel: Path, modules: Sequence[str], script: str, name: str
) -> Path:
    """An L2 initramfs: busybox, the named modules with their dependencies
    (loaded in order by /init), then `script` run by busybox sh."""
    cpio = Cpio()
    for d in ("proc", "sys", "dev", "tmp", "mnt"):
        cpio.dir(d)
    cpio.chardev("dev/console", 5, 1)
    cpio.copy(Path("/bin/busybox"), "bin/busybox")
    paths = module_closure(kernel_release(kernel), modules)
    for m in paths:
        cpio.copy(m, f"modules/{m.name}")
    load = "\n".join(
        f"insmod /modules/{m.name} || echo 'L2: insmod {m.name} failed'" for m in paths
    )
    cpio.file(
        "init",
        f"""#!/bin/busybox sh
/bin/busybox --install -s /bin
export PATH=/bin
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
{load}
{script}
""".encode(),
        0o755,
    )
    return cpio.write(workdir / f"{name}.cpio")


def build_l2_initramfs(workdir: Path) -> Path:
    """The L2 guest's initramfs: /init (linux_init.c), /dev/console, /dev/port."""
    init = workdir / "linux_init"
    run(
        ["gcc", "-static", "-Os", "-Wall", "-Wextra", "-Werror", "-o", init,
         NATIVE / "guests" / "linux_init.c"],
        what="building the L2 guest's /init",
    )  # fmt: skip
    cpio = Cpio()
    cpio.copy(init, "init")
    cpio.chardev("dev/console", 5, 1)
    cpio.chardev("dev/port", 1, 4)
    cpio.dir("proc")
    return cpio.write(workdir / "l2-initrd.cpio")


def _cffi_backend() -> Path:
    import _cffi_backend  # type: ignore[import-untyped]

    return Path(_cffi_backend.__file__)


def build_l1_initramfs(
    workdir: Path,
    kernel: Path,
    script: str,
    files: dict[str, Path],
    with_qemu: bool = False,
    extra_modules: Sequence[str] = (),
) -> Path:
    """The L1 test host: busybox, kvm_amd, Python + appliance, `script` run by /init.

    `files` maps paths inside L1 to host files to put there (L2 kernel, initrd,
    bench script...).
    """
    require_tools("ldd", "busybox", why="to build the nested test host")
    release = kernel_release(kernel)
    cpio = Cpio()
    for d in ("proc", "sys", "dev", "tmp", "run"):
        cpio.dir(d)
    cpio.chardev("dev/console", 5, 1)
    cpio.copy(Path("/bin/busybox"), "bin/busybox")
    modules = Path("/lib/modules") / release / "kernel"
    for m in KVM_MODULES:
        cpio.copy(modules / m, f"modules/{Path(m).name}")
    extra = module_closure(release, extra_modules) if extra_modules else []
    for path in extra:
        cpio.copy(path, f"modules/{path.name}")

    # Python, its standard library, this package with its monitor, cffi's backend
    binaries = [PYTHON, _cffi_backend()]
    dynload = STDLIB / "lib-dynload"
    binaries += sorted(dynload.glob("*.so"))
    cpio.copy(PYTHON, str(PYTHON))
    if Path("/usr/bin/python3") != PYTHON:
        cpio.symlink("usr/bin/python3", str(PYTHON))
    cpio.tree(STDLIB, str(STDLIB), skip=STDLIB_SKIP)
    cpio.copy(_cffi_backend(), f"opt/appliance/{_cffi_backend().name}")
    package = ROOT / "appliance"
    for src in sorted(package.rglob("*")):
        if src.is_file() and "__pycache__" not in src.parts and src.suffix in (".py", ".so"):
            dest = f"opt/appliance/appliance/{src.relative_to(package)}"
            cpio.copy(src, dest)
            if src.suffix == ".py":  # compiled once here, not at every start in TCG
                pyc = workdir / "pyc" / src.relative_to(package).with_suffix(".pyc")
                pyc.parent.mkdir(parents=True, exist_ok=True)
                py_compile.compile(
                    str(src), cfile=str(pyc), doraise=True,
                    invalidation_mode=py_compile.PycInvalidationMode.UNCHECKED_HASH,
                )  # fmt: skip
                cpio.file(importlib.util.cache_from_source(dest), pyc.read_bytes())
    if with_qemu:
        qemu = Path("/usr/bin/qemu-system-x86_64")
        binaries.append(qemu)
        cpio.copy(qemu, str(qemu))
        for fw in QEMU_FIRMWARE:
            cpio.file(fw, Path(fw).resolve().read_bytes())
    for lib in sorted(shared_libraries(binaries)):
        cpio.file(str(lib), lib.resolve().read_bytes(), 0o755)
    for dest, host in files.items():
        cpio.copy(host, dest)

    modprobe = "\n".join(
        f"insmod /modules/{name} || echo 'L1: insmod {name} failed'"
        for name in [Path(m).name for m in KVM_MODULES] + [p.name for p in extra]
    )
    cpio.file(
        "init",
        f"""#!/bin/busybox sh
/bin/busybox --install -s /bin
export PATH=/bin:/usr/bin PYTHONPATH=/opt/appliance PYTHONDONTWRITEBYTECODE=1
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
mount -t tmpfs tmp /tmp
{modprobe}
echo "L1-READY $(cat /sys/module/kvm_amd/parameters/npt 2>/dev/null)"
cat > /tmp/payload.sh <<'PAYLOAD_EOF'
{script}
PAYLOAD_EOF
sh /tmp/payload.sh
echo "L1-DONE"
poweroff -f
""".encode(),
        0o755,
    )
    return cpio.write(workdir / "l1-initrd.cpio")


@dataclass(frozen=True)
class L1Run:
    output: str
    seconds: float


def boot_l1(
    kernel: Path,
    initrd: Path,
    timeout: float,
    memory_mib: int = 2048,
    smp: int = 1,
    drives: Sequence[Path] = (),
) -> L1Run:
    """Boot the test host under QEMU TCG `-cpu max`; returns its console output.

    `drives` are attached as virtio disks (vda, vdb... in L1; the L1 initramfs
    needs virtio_pci and virtio_blk) in snapshot mode: the files stay as they are.

    The console is also written, as it happens, to l1-console.log beside the
    initramfs (`tail -f` it to watch a long run)."""
    import time

    require_tools("qemu-system-x86_64", why="for the nested test host")
    log = initrd.parent / "l1-console.log"
    log.unlink(missing_ok=True)
    cmd = [
        "qemu-system-x86_64", "-M", "pc", "-accel", "tcg", "-cpu", "max",
        "-m", str(memory_mib), "-smp", str(smp), "-nodefaults", "-no-user-config",
        "-display", "none", "-vga", "none", "-no-reboot", "-nic", "none",
        "-serial", f"file:{log}", "-kernel", str(kernel), "-initrd", str(initrd),
        "-append", "console=ttyS0 panic=-1 quiet",
    ]  # fmt: skip
    for d in drives:
        cmd += ["-drive", f"file={d},format=raw,if=virtio,snapshot=on"]
    t0 = time.monotonic()
    try:
        proc = run(cmd, capture=True, check=False, timeout=timeout, what="the nested test host")
    except ToolError as e:
        seen = log.read_bytes().decode(errors="replace") if log.exists() else ""
        raise VmmError(f"{e}\nconsole tail:\n" + "\n".join(seen.splitlines()[-40:])) from e
    console = log.read_bytes() if log.exists() else b""
    # two tty layers (L2's and L1's console) each turn "\n" into "\r\n"
    out = re.sub(r"\r+\n", "\n", console.decode(errors="replace"))
    if proc.returncode != 0:
        out += f"\n[qemu exit status {proc.returncode}] " + proc.stderr.decode(errors="replace")
    if "L1-DONE" not in out:
        tail = "\n".join(out.splitlines()[-40:])
        raise VmmError(f"the nested test host did not finish ({shlex.join(cmd)}):\n{tail}")
    return L1Run(out, time.monotonic() - t0)
