"""What the CPU says about virtualization: CPUID, /proc/cpuinfo, MSRs.

Three independent sources, each injectable so a recorded machine can stand
in for this one:

- CPUID, executed directly by the C helper `appliance.hw._cpuid` (see
  native/hw_cpuid.c) or replayed from a recording (`RecordedCpuid`);
- `<root>/proc/cpuinfo`, which shows what the *kernel* made of CPUID (it
  hides vmx/svm when firmware disabled them);
- model-specific registers through `<root>/dev/cpu/N/msr` (`DevMsr`), or a
  recording (`RecordedMsr`): Intel IA32_FEATURE_CONTROL and AMD VM_CR say
  whether firmware locked VT-x / AMD-V off, as kvm-ok checks.
"""

from __future__ import annotations

import contextlib
import json
import os
import struct
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from appliance import procfs
from appliance.errors import HardwareError

Regs = tuple[int, int, int, int]
CpuidReader = Callable[[int, int], Regs]
"""`cpuid(leaf, subleaf) -> (eax, ebx, ecx, edx)`."""
MsrReader = Callable[[int, int], "int | None"]
"""`msr(cpu, index) -> value`, or None when the register cannot be read."""

# CPUID bits (Intel SDM vol. 2A "CPUID"; AMD APM vol. 3 appendix E).
LEAF1_ECX_VMX = 1 << 5
LEAF1_ECX_HYPERVISOR = 1 << 31
EXT1_ECX_SVM = 1 << 2
SVM_EDX_NPT = 1 << 0  # leaf 0x8000000A EDX bit 0: nested paging

# MSRs.
MSR_IA32_FEATURE_CONTROL = 0x3A
FEATURE_CONTROL_LOCKED = 1 << 0
FEATURE_CONTROL_VMX_OUTSIDE_SMX = 1 << 2
MSR_VM_CR = 0xC0010114
VM_CR_SVMDIS = 1 << 4

HYPERVISOR_NAMES = {
    "KVMKVMKVM": "KVM",
    "TCGTCGTCGTCG": "QEMU TCG",
    "Microsoft Hv": "Hyper-V",
    "VMwareVMware": "VMware",
    "XenVMMXenVMM": "Xen",
    "VBoxVBoxVBox": "VirtualBox",
    "bhyve bhyve": "bhyve",
    "lrpepyh  vr": "Parallels",
    "ACRNACRNACRN": "ACRN",
    "QNXQVMBSQG": "QNX",
    "Linux KVM Hv": "KVM (Hyper-V enlightenments)",
}


# --- CPUID sources -----------------------------------------------------------


def native_cpuid(leaf: int, subleaf: int = 0) -> Regs:
    """Execute CPUID on this CPU through the cffi helper."""
    try:
        from appliance.hw._cpuid import ffi, lib  # type: ignore[import-not-found,unused-ignore]
    except ImportError as e:  # the package was installed without its native part
        raise HardwareError(
            "the CPUID helper appliance.hw._cpuid is not built; run `./run setup`"
        ) from e
    out = ffi.new("uint32_t[4]")
    if lib.appliance_cpuid(leaf, subleaf, out) != 0:
        raise HardwareError("CPUID is not available on this architecture")
    return (int(out[0]), int(out[1]), int(out[2]), int(out[3]))


@dataclass
class RecordedCpuid:
    """CPUID replayed from a recording: `{"0x1": [eax, ebx, ecx, edx], ...}`.

    Keys are `leaf` or `leaf.subleaf` (hex); values hex strings or ints.
    Leaves that were not recorded read as zeros, as an unsupported leaf would.
    """

    leaves: dict[tuple[int, int], Regs]

    @classmethod
    def load(cls, path: Path) -> RecordedCpuid:
        try:
            raw = json.loads(path.read_text())
        except (OSError, ValueError) as e:
            raise HardwareError(f"{path}: cannot read recorded CPUID: {e}") from e
        leaves: dict[tuple[int, int], Regs] = {}
        for key, regs in raw.items():
            leaf, _, sub = key.partition(".")
            values = tuple(int(v, 0) if isinstance(v, str) else int(v) for v in regs)
            if len(values) != 4:
                raise HardwareError(f"{path}: leaf {key}: expected [eax, ebx, ecx, edx]")
            leaves[(int(leaf, 16), int(sub, 16) if sub else 0)] = values
        return cls(leaves)

    def __call__(self, leaf: int, subleaf: int = 0) -> Regs:
        return self.leaves.get((leaf, subleaf)) or self.leaves.get((leaf, 0)) or (0, 0, 0, 0)


# --- MSR sources -------------------------------------------------------------


@dataclass
class DevMsr:
    """MSRs through the msr driver's `<root>/dev/cpu/N/msr` (needs root and
    `modprobe msr`). Any failure reads as None: an MSR we cannot read is
    reported as unknown, never guessed."""

    root: Path = Path("/")

    def path(self, cpu: int) -> Path:
        return self.root / f"dev/cpu/{cpu}/msr"

    def __call__(self, cpu: int, index: int) -> int | None:
        try:
            fd = os.open(self.path(cpu), os.O_RDONLY)
        except OSError:
            return None
        try:
            data = os.pread(fd, 8, index)
        except OSError:  # EIO: the CPU raised #GP, the MSR does not exist
            return None
        finally:
            os.close(fd)
        return struct.unpack("<Q", data)[0] if len(data) == 8 else None

    def why_unreadable(self) -> str:
        p = self.path(0)
        if not p.parent.exists():
            return f"{p.parent} missing"
        if not p.exists():
            return f"{p} missing (the msr module is not loaded: modprobe msr)"
        if not os.access(p, os.R_OK):
            return f"{p} not readable (needs root)"
        return "the register cannot be read"


@dataclass
class RecordedMsr:
    """MSRs replayed from a recording: `{"0x3a": "0x5"}`; others unreadable."""

    values: dict[int, int] = field(default_factory=dict)

    @classmethod
    def load(cls, path: Path) -> RecordedMsr:
        if not path.exists():
            return cls()
        try:
            raw = json.loads(path.read_text())
        except (OSError, ValueError) as e:
            raise HardwareError(f"{path}: cannot read recorded MSRs: {e}") from e
        return cls(
            {int(k, 16): int(v, 0) if isinstance(v, str) else int(v) for k, v in raw.items()}
        )

    def __call__(self, cpu: int, index: int) -> int | None:
        return self.values.get(index)

    def why_unreadable(self) -> str:
        return "not in the recording"


# --- facts -------------------------------------------------------------------


def _regs_text(*regs: int) -> str:
    return b"".join(struct.pack("<I", r) for r in regs).decode("ascii", "replace").rstrip("\0")


@dataclass
class CpuidFacts:
    """What CPUID says, bit by bit."""

    vendor: str  # "GenuineIntel", "AuthenticAMD", ...
    brand: str
    vmx: bool
    svm: bool
    npt: bool  # AMD nested paging (leaf 0x8000000A)
    hypervisor: bool  # leaf 1 ECX bit 31: we are a guest
    hypervisor_signature: str  # leaf 0x40000000 EBX/ECX/EDX, "" when not a guest

    @property
    def hypervisor_name(self) -> str:
        sig = self.hypervisor_signature.strip("\0 ")
        return HYPERVISOR_NAMES.get(sig, sig or "unknown")

    @property
    def extension(self) -> str | None:
        """'VT-x', 'AMD-V' or None."""
        return "VT-x" if self.vmx else "AMD-V" if self.svm else None


def read_cpuid(cpuid: CpuidReader) -> CpuidFacts:
    max_basic, b, c, d = cpuid(0, 0)
    vendor = _regs_text(b, d, c)
    ecx1 = cpuid(1, 0)[2] if max_basic >= 1 else 0
    max_ext = cpuid(0x80000000, 0)[0]
    has_ext = 0x80000000 < max_ext < 0x80010000  # garbage above range on some CPUs
    ecx_ext1 = cpuid(0x80000001, 0)[2] if has_ext and max_ext >= 0x80000001 else 0
    brand = ""
    if has_ext and max_ext >= 0x80000004:
        brand = "".join(_regs_text(*cpuid(leaf, 0)) for leaf in range(0x80000002, 0x80000005))
    svm = bool(ecx_ext1 & EXT1_ECX_SVM)
    npt = svm and max_ext >= 0x8000000A and bool(cpuid(0x8000000A, 0)[3] & SVM_EDX_NPT)
    hypervisor = bool(ecx1 & LEAF1_ECX_HYPERVISOR)
    signature = ""
    if hypervisor:
        _, hb, hc, hd = cpuid(0x40000000, 0)
        signature = _regs_text(hb, hc, hd)
    return CpuidFacts(
        vendor=vendor,
        brand=brand.strip(),
        vmx=bool(ecx1 & LEAF1_ECX_VMX),
        svm=svm,
        npt=npt,
        hypervisor=hypervisor,
        hypervisor_signature=signature,
    )


@dataclass
class CpuInfo:
    """`/proc/cpuinfo` and `/proc/meminfo`: the kernel's view and the inventory."""

    vendor: str
    model: str
    flags: set[str]
    sockets: int
    cores: int
    threads: int
    memory_bytes: int

    def to_json(self) -> dict[str, object]:
        return {
            "vendor": self.vendor,
            "model": self.model,
            "sockets": self.sockets,
            "cores": self.cores,
            "threads": self.threads,
            "memory_bytes": self.memory_bytes,
        }


def read_cpuinfo(root: Path) -> CpuInfo:
    try:
        text = (root / "proc/cpuinfo").read_text()
    except OSError as e:
        raise HardwareError(f"cannot read {root / 'proc/cpuinfo'}: {e}") from e
    processors: list[dict[str, str]] = []
    for block in text.split("\n\n"):
        entry = {}
        for line in block.splitlines():
            key, sep, value = line.partition(":")
            if sep:
                entry[key.strip()] = value.strip()
        if "processor" in entry:
            processors.append(entry)
    first = processors[0] if processors else {}
    sockets = {p.get("physical id", "0") for p in processors}
    cores = {(p.get("physical id", "0"), p.get("core id", p["processor"])) for p in processors}
    memory = 0
    with contextlib.suppress(OSError):
        memory = procfs.meminfo(root / "proc/meminfo").get("MemTotal", 0)
    return CpuInfo(
        vendor=first.get("vendor_id", ""),
        model=first.get("model name", ""),
        flags=set(first.get("flags", "").split()),
        sockets=max(len(sockets), 1),
        cores=max(len(cores), 1),
        threads=max(len(processors), 1),
        memory_bytes=memory,
    )


@dataclass
class FirmwareState:
    """Whether firmware locked the CPU's virtualization off (from MSRs).

    `disabled` is True/False when the MSR was read, None when it could not be.
    """

    msr: str  # "IA32_FEATURE_CONTROL (0x3a)" / "VM_CR (0xc0010114)" / ""
    value: int | None
    disabled: bool | None
    detail: str


def read_firmware_state(facts: CpuidFacts, msr: MsrReader) -> FirmwareState:
    why = getattr(msr, "why_unreadable", lambda: "the register cannot be read")
    if facts.vmx:
        name = "IA32_FEATURE_CONTROL (0x3a)"
        value = msr(0, MSR_IA32_FEATURE_CONTROL)
        if value is None:
            return FirmwareState(name, None, None, f"{name} not readable: {why()}")
        locked = bool(value & FEATURE_CONTROL_LOCKED)
        enabled = bool(value & FEATURE_CONTROL_VMX_OUTSIDE_SMX)
        if locked and not enabled:
            return FirmwareState(name, value, True, f"{name}={value:#x}: locked with VMX off")
        state = "locked with VMX on" if locked else "unlocked (the kernel enables VMX)"
        return FirmwareState(name, value, False, f"{name}={value:#x}: {state}")
    if facts.svm:
        name = "VM_CR (0xc0010114)"
        value = msr(0, MSR_VM_CR)
        if value is None:
            return FirmwareState(name, None, None, f"{name} not readable: {why()}")
        if value & VM_CR_SVMDIS:
            return FirmwareState(name, value, True, f"{name}={value:#x}: SVMDIS set")
        return FirmwareState(name, value, False, f"{name}={value:#x}: SVMDIS clear")
    return FirmwareState("", None, None, "no VT-x/AMD-V to check")
