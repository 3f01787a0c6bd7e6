"""Accelerator choice follows hardware detection's verdict (recorded machines)."""

from __future__ import annotations

import pytest

from appliance.boot.accel import choose_accelerator
from appliance.hw import Report, detect, load_recording
from tests.hw.conftest import machine


def recorded(name: str) -> Report:
    rec = load_recording(machine(name))
    return detect(rec.root, cpuid=rec.cpuid, msr=rec.msr, kvm=rec.kvm, inventory=False)


def test_pvm_backed_kvm_chooses_tcg_and_says_why() -> None:
    name, why = choose_accelerator(recorded("pvm-dev-vm"))
    assert name == "tcg"
    assert "kvm_pvm" in why and "-cpu max" in why


def test_intel_server_chooses_kvm() -> None:
    assert choose_accelerator(recorded("intel-server")) == (
        "kvm", "hardware-accelerated (VT-x, kvm_intel)")


@pytest.mark.parametrize("name", ["amd-svm-disabled", "cloud-guest-no-vmx", "intel-no-kvm-module"])
def test_machines_without_usable_hardware_virtualization_choose_tcg(name: str) -> None:
    report = recorded(name)
    chosen, why = choose_accelerator(report)
    assert chosen == "tcg"
    assert why.startswith(report.verdict)


def test_this_machine_follows_its_detect_verdict() -> None:
    report = detect(inventory=False)
    assert choose_accelerator()[0] == ("kvm" if report.accelerated else "tcg")
