"""/dev/kvm and the kernel module behind it.

The device is probed for real (open, KVM_GET_API_VERSION, KVM_CREATE_VM) by
`probe_device`; a recorded machine supplies a `RecordedKvm` instead. Which
module backs the device comes from `<root>/sys/module` (loadable and
built-in modules alike) and `<root>/proc/modules`.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import stat
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from appliance.errors import HardwareError

# <linux/kvm.h>: _IO(KVMIO=0xAE, nr)
KVM_GET_API_VERSION = 0xAE00
KVM_CREATE_VM = 0xAE01
KVM_API_VERSION = 12

# Vendor modules that implement KVM on x86, and the CPU feature each needs.
HARDWARE_MODULES = {"kvm_intel": "VT-x", "kvm_amd": "AMD-V"}
SOFTWARE_MODULES = {"kvm_pvm": "PVM (paravirtualized, no VT-x/AMD-V)"}
VENDOR_MODULES = (*HARDWARE_MODULES, *SOFTWARE_MODULES)


@dataclass
class KvmDevice:
    """What opening /dev/kvm showed."""

    path: str
    present: bool
    char_device: bool
    accessible: bool
    error: str | None = None  # why it could not be opened
    api_version: int | None = None
    create_vm: bool | None = None  # None: not tried
    create_vm_error: str | None = None

    @property
    def works(self) -> bool:
        """Opened, the right API version, and KVM_CREATE_VM did not fail (a
        probe that did not try it, `create_vm is None`, counts as working)."""
        return (self.accessible and self.api_version == KVM_API_VERSION
                and self.create_vm is not False)


KvmProbe = Callable[[Path], KvmDevice]
"""`probe(path_of_dev_kvm) -> KvmDevice`."""


def probe_without_vm(path: Path) -> KvmDevice:
    """`probe_device` without KVM_CREATE_VM (see there)."""
    return probe_device(path, create_vm=False)


def probe_device(path: Path, create_vm: bool = True) -> KvmDevice:
    """Open the device and ask it the two questions every VMM asks first.

    `create_vm=False` asks only the API version. The installer probes that
    way: KVM_CREATE_VM switches VT-x/AMD-V on in every CPU, which the
    installer does not need and which, nested under QEMU's TCG, wedged the
    whole machine now and then (issue 19, item 12)."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return KvmDevice(str(path), present=False, char_device=False, accessible=False)
    except OSError as e:
        return KvmDevice(str(path), True, False, False, error=e.strerror)
    dev = KvmDevice(str(path), present=True, char_device=stat.S_ISCHR(st.st_mode), accessible=False)
    if not dev.char_device:
        dev.error = "not a character device"
        return dev
    try:
        fd = os.open(path, os.O_RDWR | os.O_CLOEXEC)
    except OSError as e:
        dev.error = f"{e.strerror} ({errno.errorcode.get(e.errno or 0, '?')})"
        return dev
    dev.accessible = True
    try:
        dev.api_version = fcntl.ioctl(fd, KVM_GET_API_VERSION)
        if not create_vm:
            return dev
        try:
            vm = fcntl.ioctl(fd, KVM_CREATE_VM, 0)
        except OSError as e:
            dev.create_vm, dev.create_vm_error = False, e.strerror
        else:
            os.close(vm)
            dev.create_vm = True
    except OSError as e:
        dev.error = f"KVM_GET_API_VERSION: {e.strerror}"
    finally:
        os.close(fd)
    return dev


@dataclass
class RecordedKvm:
    """/dev/kvm as recorded on another machine (`kvm.json`):
    `{"present": true, "accessible": true, "api_version": 12, "create_vm": true}`.
    A missing file means the machine had no /dev/kvm."""

    data: dict[str, object] = field(default_factory=dict)

    @classmethod
    def load(cls, path: Path) -> RecordedKvm:
        if not path.exists():
            return cls({"present": False})
        try:
            return cls(json.loads(path.read_text()))
        except (OSError, ValueError) as e:
            raise HardwareError(f"{path}: cannot read recorded /dev/kvm state: {e}") from e

    def __call__(self, path: Path) -> KvmDevice:
        d = self.data
        present = bool(d.get("present", False))
        api = d.get("api_version")
        create = d.get("create_vm")
        return KvmDevice(
            path=str(path),
            present=present,
            char_device=present,
            accessible=present and bool(d.get("accessible", True)),
            error=str(d["error"]) if d.get("error") else None,
            api_version=int(api) if isinstance(api, int) else None,
            create_vm=bool(create) if create is not None else None,
            create_vm_error=str(d["create_vm_error"]) if d.get("create_vm_error") else None,
        )


@dataclass
class KernelModule:
    name: str
    builtin: bool  # in /sys/module but not in /proc/modules
    parameters: dict[str, str]


def read_modules(
    root: Path, names: tuple[str, ...] = ("kvm", *VENDOR_MODULES)
) -> dict[str, KernelModule]:
    """The KVM-related modules present, with their parameters."""
    loadable: set[str] = set()
    try:
        for line in (root / "proc/modules").read_text().splitlines():
            loadable.add(line.split(" ", 1)[0])
    except OSError:  # a kernel without module support has no /proc/modules
        pass
    out: dict[str, KernelModule] = {}
    for name in names:
        sysdir = root / "sys/module" / name
        if not sysdir.is_dir() and name not in loadable:
            continue
        params: dict[str, str] = {}
        pdir = sysdir / "parameters"
        if pdir.is_dir():
            for p in sorted(pdir.iterdir()):
                try:
                    params[p.name] = p.read_text().strip()
                except OSError:  # write-only or root-only parameters
                    continue
        out[name] = KernelModule(name, builtin=name not in loadable, parameters=params)
    return out


def backing_module(modules: dict[str, KernelModule], cpu_extension: str | None) -> str | None:
    """Which vendor module serves /dev/kvm.

    A hardware module (kvm_intel/kvm_amd) only loads when the CPU has its
    extension, so when one is present and the CPU has the matching feature it
    is the backend; otherwise kvm_pvm if present; otherwise "other" when the
    generic `kvm` module is there without a known vendor module; None when no
    KVM module is present at all.
    """
    for name, ext in HARDWARE_MODULES.items():
        if name in modules and cpu_extension == ext:
            return name
    for name in SOFTWARE_MODULES:
        if name in modules:
            return name
    for name in HARDWARE_MODULES:
        if name in modules:
            return name
    return "other" if "kvm" in modules else None


def nested_parameter(modules: dict[str, KernelModule], backend: str | None) -> str | None:
    """The backend's `nested` parameter ("Y"/"N"/"1"/"0"), None when it has none."""
    if backend is None or backend not in modules:
        return None
    return modules[backend].parameters.get("nested")
