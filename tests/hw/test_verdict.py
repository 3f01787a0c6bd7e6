"""Verdicts for recorded machines, judged in-process from their recordings."""

import shutil

import pytest

from appliance.hw import detect, load_recording
from appliance.hw.cpu import RecordedMsr
from appliance.hw.kvm import RecordedKvm
from appliance.hw.report import (
    ACCELERATED,
    FIRMWARE_DISABLED,
    KVM_NOT_LOADED,
    KVM_UNUSABLE,
    NO_CPU_SUPPORT,
    SOFTWARE_ONLY,
)

from .conftest import machine


def judge(name: str, **override):
    rec = load_recording(machine(name))
    kwargs = {"cpuid": rec.cpuid, "msr": rec.msr, "kvm": rec.kvm, **override}
    root = kwargs.pop("root", rec.root)
    return detect(root, inventory=False, **kwargs)


def check(report, name):
    found = [c for c in report.checks if c.name == name]
    assert found, [c.name for c in report.checks]
    return found[0]


def test_intel_server_with_vtx_and_iommu_is_accelerated():
    r = judge("intel-server")
    assert (r.status, r.accelerated, r.exit_code) == (ACCELERATED, True, 0)
    assert r.verdict == "hardware-accelerated (VT-x, kvm_intel)"
    assert check(r, "Firmware enables virtualization (MSR)").result == "PASS"
    assert check(r, "IOMMU").result == "PASS"
    assert "6 IOMMU groups" in check(r, "IOMMU").detail
    assert check(r, "cgroup v2 (LXC)").result == "PASS"
    assert r.facts.nested == "Y"


def test_amd_with_svm_disabled_in_firmware():
    r = judge("amd-svm-disabled")
    assert (r.status, r.accelerated, r.exit_code) == (FIRMWARE_DISABLED, False, 11)
    assert r.verdict == "disabled in firmware: enable SVM in BIOS setup"
    fw = check(r, "Firmware enables virtualization (MSR)")
    assert fw.result == "FAIL" and "SVMDIS" in fw.detail
    # modprobe would fail: every hint points at the firmware
    assert check(r, "/dev/kvm").hint == "enable SVM in BIOS setup"
    assert check(r, "KVM module").hint == "enable SVM in BIOS setup"


def test_firmware_disabled_is_inferred_when_the_kernel_hides_the_flag(tmp_path):
    """No readable MSR, but CPUID has SVM and the kernel dropped 'svm'."""
    root = tmp_path / "root"
    shutil.copytree(machine("amd-svm-disabled") / "root", root)
    cpuinfo = root / "proc/cpuinfo"
    cpuinfo.write_text(cpuinfo.read_text().replace(" svm ", " "))
    r = judge("amd-svm-disabled", root=root, msr=RecordedMsr())
    assert r.status == FIRMWARE_DISABLED
    assert "hides 'svm'" in r.verdict
    assert check(r, "Kernel CPU flags (/proc/cpuinfo)").result == "WARN"


def test_svm_enabled_in_firmware_but_no_kvm_amd_is_not_a_firmware_problem():
    r = judge("amd-svm-disabled", msr=RecordedMsr({0xC0010114: 0x8}))
    assert r.status == KVM_NOT_LOADED
    assert r.verdict.endswith("modprobe kvm_amd")


def test_nested_guest_with_vmx_is_accelerated_and_says_it_is_a_guest():
    r = judge("intel-nested-guest")
    assert r.status == ACCELERATED
    assert r.verdict == "hardware-accelerated (VT-x, kvm_intel)"
    assert r.facts.cpuid.hypervisor and r.facts.cpuid.hypervisor_name == "KVM"
    assert "guest of KVM" in check(r, "Hypervisor").detail
    assert "nested=Y" in check(r, "Nested virtualization").detail
    assert check(r, "Firmware enables virtualization (MSR)").result == "NOTE"


def test_no_kvm_module_loaded():
    r = judge("intel-no-kvm-module")
    assert (r.status, r.exit_code) == (KVM_NOT_LOADED, 13)
    assert "modprobe kvm_intel" in r.verdict
    assert check(r, "/dev/kvm").result == "FAIL"
    assert check(r, "/dev/kvm").hint == "modprobe kvm_intel"
    assert check(r, "IOMMU").result == "WARN"  # DMAR present, VT-d not switched on


def test_cloud_guest_without_vmx_has_no_cpu_support():
    r = judge("cloud-guest-no-vmx")
    assert (r.status, r.exit_code) == (NO_CPU_SUPPORT, 12)
    assert r.verdict.startswith("no CPU support")
    assert "enable nested virtualization" in r.verdict
    assert check(r, "IOMMU").hint == "give the VM a virtual IOMMU on its host"


def test_kvm_device_that_refuses_vms_is_unusable():
    kvm = RecordedKvm(
        {
            "present": True,
            "api_version": 12,
            "create_vm": False,
            "create_vm_error": "Device or resource busy",
        }
    )
    r = judge("intel-server", kvm=kvm)
    assert (r.status, r.exit_code) == (KVM_UNUSABLE, 14)
    assert check(r, "KVM_CREATE_VM").result == "FAIL"


def test_pvm_development_vm_is_software_only():
    """Our development machines: kvm_pvm built in, no VT-x/AMD-V, KVM ioctls work."""
    r = judge("pvm-dev-vm")
    assert (r.status, r.accelerated, r.exit_code) == (SOFTWARE_ONLY, False, 10)
    assert r.verdict == (
        "software-only: /dev/kvm is backed by kvm_pvm and the CPU exposes no VT-x/AMD-V "
        "— full guests will not run at usable speed"
    )
    assert r.facts.backend == "kvm_pvm"
    assert check(r, "KVM module").result == "WARN"
    assert check(r, "KVM_CREATE_VM").result == "PASS"  # it works, it is just not hardware
    assert check(r, "cgroup v2 (LXC)").result == "WARN"  # hybrid layout


def test_pvm_without_access_to_dev_kvm_is_still_named():
    kvm = RecordedKvm({"present": True, "accessible": False, "error": "Permission denied"})
    r = judge("pvm-dev-vm", kvm=kvm)
    assert r.status == SOFTWARE_ONLY
    assert "backed by kvm_pvm" in r.verdict and "Permission denied" in r.verdict
    assert check(r, "/dev/kvm access").result == "FAIL"


@pytest.mark.parametrize(
    ("value", "status"),
    [(0x1, FIRMWARE_DISABLED), (0x3, FIRMWARE_DISABLED), (0x5, ACCELERATED), (0x0, ACCELERATED)],
)
def test_intel_feature_control_decides_firmware_verdict(value, status):
    r = judge("intel-server", msr=RecordedMsr({0x3A: value}))
    assert r.status == status
    if status == FIRMWARE_DISABLED:
        assert r.verdict == (
            "disabled in firmware: enable VT-x (Intel Virtualization Technology) in BIOS setup"
        )


def test_pvm_next_to_a_capable_cpu_says_which_module_to_load(tmp_path):
    root = tmp_path / "root"
    shutil.copytree(machine("intel-no-kvm-module") / "root", root)
    (root / "sys/module/kvm_pvm/parameters").mkdir(parents=True)
    kvm = RecordedKvm({"present": True, "api_version": 12, "create_vm": True})
    r = judge("intel-no-kvm-module", root=root, kvm=kvm)
    assert r.status == SOFTWARE_ONLY
    assert "although the CPU has VT-x" in r.verdict and "kvm_intel" in r.verdict


def test_report_json_carries_verdict_checks_and_sources():
    data = judge("intel-server").to_json()
    assert data["verdict"] == "hardware-accelerated (VT-x, kvm_intel)"
    assert data["accelerated"] is True
    assert data["virtualization"]["kvm_module"] == "kvm_intel"
    assert data["virtualization"]["firmware"]["value"] == 5
    assert {c["result"] for c in data["checks"]} <= {"PASS", "WARN", "FAIL", "NOTE"}
    assert data["cpu"]["sockets"] == 2
