"""The whole detector inside a QEMU TCG `-cpu max` guest, where AMD-V is
real: kvm_amd loads there, so the verdict must be hardware-accelerated."""

import shutil

import pytest

from .nested_guest import build_initramfs, find_debian_kernel, run_guest

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="session")
def nested_guest(tmp_path_factory):
    if shutil.which("qemu-system-x86_64") is None:
        pytest.fail(
            "qemu-system-x86_64 missing: ./run setup installs it (deps/apt-packages-hw.txt)"
        )
    kernel = find_debian_kernel()
    if kernel is None:
        pytest.fail(
            "no Debian kernel with kvm-amd.ko in /boot: ./run setup installs linux-image-amd64"
        )
    initramfs = build_initramfs(kernel, tmp_path_factory.mktemp("nested-guest"))
    run = run_guest(kernel, initramfs)
    assert run.report is not None, f"no report on the guest console:\n{run.console[-3000:]}"
    return run


def test_detect_in_tcg_guest_sees_amd_v_and_kvm_amd(nested_guest):
    report = nested_guest.report
    assert report["verdict"] == "hardware-accelerated (AMD-V, kvm_amd)"
    assert report["accelerated"] is True
    assert nested_guest.exit_code == report["exit_code"] == 0


def test_tcg_guest_sources_agree(nested_guest):
    virt = nested_guest.report["virtualization"]
    assert virt["cpuid"]["svm"] is True and virt["cpuid"]["source"] == "cpuid"
    assert virt["cpuid"]["hypervisor"] is True  # QEMU sets the bit and its leaf 0x40000000
    assert virt["cpuid"]["hypervisor_signature"] == "TCGTCGTCGTCG"
    assert "svm" in virt["cpuinfo_flags"]
    assert virt["kvm_module"] == "kvm_amd"
    assert virt["nested"] == "1"  # kvm_amd's own parameter, read in the guest
    assert virt["kvm_device"]["api_version"] == 12
    assert virt["kvm_device"]["create_vm"] is True
    assert virt["firmware"]["disabled"] is False  # VM_CR read through the msr driver
    results = {c["name"]: c["result"] for c in nested_guest.report["checks"]}
    assert results["Hardware virtualization (CPUID)"] == "PASS"
    assert results["KVM module"] == "PASS"
