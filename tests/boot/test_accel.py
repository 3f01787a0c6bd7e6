"""Accelerator choice from injected /proc/cpuinfo and /sys/module roots."""

from __future__ import annotations

from pathlib import Path

from appliance.boot.accel import choose_accelerator


def machine(tmp_path: Path, flags: str, modules: list[str], kvm: bool) -> dict[str, Path]:
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text(f"processor\t: 0\nvendor_id\t: X\nflags\t\t: fpu sse2 {flags}\n\n")
    sysmod = tmp_path / "module"
    for m in modules:
        (sysmod / m).mkdir(parents=True)
    dev = tmp_path / "kvm"
    if kvm:
        dev.write_bytes(b"")
    return {"cpuinfo": cpuinfo, "sys_module": sysmod, "dev_kvm": dev}


def test_pvm_backed_kvm_chooses_tcg_and_says_why(tmp_path: Path) -> None:
    name, why = choose_accelerator(**machine(tmp_path, "", ["kvm", "kvm_pvm"], kvm=True))
    assert name == "tcg"
    assert "kvm_pvm" in why and "-cpu max" in why


def test_vmx_with_kvm_intel_chooses_kvm(tmp_path: Path) -> None:
    name, why = choose_accelerator(**machine(tmp_path, "vmx", ["kvm", "kvm_intel"], kvm=True))
    assert (name, "VT-x" in why) == ("kvm", True)


def test_svm_with_kvm_amd_chooses_kvm(tmp_path: Path) -> None:
    name, why = choose_accelerator(**machine(tmp_path, "svm", ["kvm", "kvm_amd"], kvm=True))
    assert (name, "AMD-V" in why) == ("kvm", True)


def test_vmx_without_kvm_intel_module_chooses_tcg(tmp_path: Path) -> None:
    name, _ = choose_accelerator(**machine(tmp_path, "vmx", ["kvm"], kvm=True))
    assert name == "tcg"


def test_no_dev_kvm_chooses_tcg(tmp_path: Path) -> None:
    name, why = choose_accelerator(**machine(tmp_path, "svm", ["kvm", "kvm_amd"], kvm=False))
    assert name == "tcg" and "/kvm" in why


def test_this_machine_uses_tcg_when_cpu_has_no_virtualization_flags() -> None:
    flags = Path("/proc/cpuinfo").read_text()
    name, _ = choose_accelerator()
    if " vmx" not in flags and " svm" not in flags:
        assert name == "tcg"
