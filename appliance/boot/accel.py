"""Which QEMU accelerator can boot a Linux guest here, and why."""

from __future__ import annotations

import os
from pathlib import Path

# Hardware virtualization: the CPU flag and the KVM module that uses it.
VENDORS = (("vmx", "kvm_intel", "VT-x"), ("svm", "kvm_amd", "AMD-V"))


def cpu_flags(cpuinfo: Path) -> set[str]:
    flags: set[str] = set()
    try:
        text = cpuinfo.read_text()
    except OSError:
        return flags
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if sep and key.strip() == "flags":
            flags.update(value.split())
    return flags


def choose_accelerator(
    cpuinfo: Path = Path("/proc/cpuinfo"),
    sys_module: Path = Path("/sys/module"),
    dev_kvm: Path = Path("/dev/kvm"),
) -> tuple[str, str]:
    """("kvm" or "tcg", the reason). KVM only with real hardware
    virtualization (VT-x/AMD-V in the CPU flags and kvm_intel/kvm_amd loaded):
    a /dev/kvm backed by anything else (e.g. kvm_pvm) runs guests far too
    slowly and QEMU hangs on it, so TCG with `-cpu max` is used there."""
    flags = cpu_flags(cpuinfo)
    kvm_usable = dev_kvm.exists() and os.access(dev_kvm, os.R_OK | os.W_OK)
    for flag, module, name in VENDORS:
        if flag in flags and (sys_module / module).exists():
            if kvm_usable:
                return "kvm", f"{name} ({flag}) in the CPU flags, {module} loaded, {dev_kvm} usable"
            return "tcg", (f"{name} ({flag}) and {module} present but {dev_kvm} is missing or "
                           "not accessible: TCG with -cpu max")
    if dev_kvm.exists():
        backing = [m for m in ("kvm_pvm", "kvm_intel", "kvm_amd") if (sys_module / m).exists()]
        what = f"backed by {', '.join(backing)}" if backing else "backed by an unknown module"
        return "tcg", (f"{dev_kvm} exists ({what}) but the CPU shows no vmx/svm flag: no "
                       "hardware virtualization, QEMU+KVM would hang; TCG with -cpu max")
    return "tcg", "no hardware virtualization (no vmx/svm flag, no /dev/kvm): TCG with -cpu max"
