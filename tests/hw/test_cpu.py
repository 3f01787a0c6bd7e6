import os
import struct
from pathlib import Path

import pytest

from appliance.hw.cpu import (
    MSR_IA32_FEATURE_CONTROL,
    MSR_VM_CR,
    CpuidFacts,
    DevMsr,
    RecordedCpuid,
    native_cpuid,
    read_cpuid,
    read_cpuinfo,
    read_firmware_state,
)

from .conftest import machine

CPUID_DEV = Path("/dev/cpu/0/cpuid")


def _kernel_cpuid(leaf: int, subleaf: int = 0) -> tuple[int, int, int, int]:
    """CPUID through the kernel's cpuid driver: an independent second source."""
    fd = os.open(CPUID_DEV, os.O_RDONLY)
    try:
        data = os.pread(fd, 16, leaf | (subleaf << 32))
    finally:
        os.close(fd)
    return struct.unpack("<4I", data)


@pytest.mark.skipif(not CPUID_DEV.exists(), reason="no /dev/cpu/0/cpuid on this kernel")
def test_native_cpuid_agrees_with_the_kernel_cpuid_driver():
    os.sched_setaffinity(0, {0})  # both sources must ask the same CPU
    try:
        for leaf in (0, 0x80000000, 0x80000001, 0x40000000):
            ours, kernel = native_cpuid(leaf, 0), _kernel_cpuid(leaf)
            assert ours == kernel, hex(leaf)
        # leaf 1 EBX carries the APIC id and CLFLUSH size; ECX is the flags word
        assert native_cpuid(1, 0)[2] == _kernel_cpuid(1)[2]
    finally:
        os.sched_setaffinity(0, set(range(os.cpu_count() or 1)))


def test_native_cpuid_facts_agree_with_proc_cpuinfo():
    facts = read_cpuid(native_cpuid)
    flags = read_cpuinfo(Path("/")).flags
    assert facts.vmx == ("vmx" in flags)
    assert facts.svm == ("svm" in flags)
    assert facts.hypervisor == ("hypervisor" in flags)
    assert facts.vendor == read_cpuinfo(Path("/")).vendor


def test_recorded_cpuid_decodes_vendor_brand_and_bits():
    facts = read_cpuid(RecordedCpuid.load(machine("intel-nested-guest") / "cpuid.json"))
    assert facts.vendor == "GenuineIntel"
    assert facts.brand == "Intel Xeon Processor (Cascadelake)"
    assert (facts.vmx, facts.svm, facts.hypervisor) == (True, False, True)
    assert facts.hypervisor_name == "KVM"
    amd = read_cpuid(RecordedCpuid.load(machine("amd-svm-disabled") / "cpuid.json"))
    assert (amd.vendor, amd.vmx, amd.svm, amd.npt, amd.hypervisor) == (
        "AuthenticAMD",
        False,
        True,
        True,
        False,
    )
    assert amd.extension == "AMD-V"


def test_hypervisor_leaf_is_ignored_without_the_hypervisor_bit():
    rec = RecordedCpuid.load(machine("intel-server") / "cpuid.json")
    rec.leaves[(0x40000000, 0)] = (0x40000001, 0x4B4D564B, 0x564B4D56, 0x4D)
    facts = read_cpuid(rec)
    assert not facts.hypervisor and facts.hypervisor_signature == ""


def test_cpuinfo_topology_counts_sockets_cores_threads():
    info = read_cpuinfo(machine("intel-server") / "root")
    assert (info.sockets, info.cores, info.threads) == (2, 4, 8)
    assert info.memory_bytes == 197823412 * 1024
    assert "vmx" in info.flags


def _facts(vmx: bool = False, svm: bool = False) -> CpuidFacts:
    return CpuidFacts("GenuineIntel" if vmx else "AuthenticAMD", "", vmx, svm, False, False, "")


def _msr_tree(tmp_path: Path, index: int, value: int) -> Path:
    """A file laid out like /dev/cpu/0/msr: the register's 8 bytes at offset=index."""
    dev = tmp_path / "dev/cpu/0"
    dev.mkdir(parents=True)
    with open(dev / "msr", "wb") as f:
        f.seek(index)
        f.write(struct.pack("<Q", value))
    return tmp_path


@pytest.mark.parametrize(
    ("value", "disabled"),
    [(0x5, False), (0x1, True), (0x3, True), (0x0, False), (0x4, False)],
)
def test_feature_control_lock_and_enable_bits(tmp_path, value, disabled):
    root = _msr_tree(tmp_path, MSR_IA32_FEATURE_CONTROL, value)
    state = read_firmware_state(_facts(vmx=True), DevMsr(root))
    assert state.value == value
    assert state.disabled is disabled


@pytest.mark.parametrize(("value", "disabled"), [(0x18, True), (0x10, True), (0x8, False)])
def test_vm_cr_svmdis_bit(tmp_path, value, disabled):
    root = _msr_tree(tmp_path, MSR_VM_CR, value)
    assert read_firmware_state(_facts(svm=True), DevMsr(root)).disabled is disabled


def test_unreadable_msr_is_unknown_with_a_reason(tmp_path):
    state = read_firmware_state(_facts(svm=True), DevMsr(tmp_path))
    assert state.disabled is None
    assert "missing" in state.detail
