"""Which QEMU accelerator can boot a Linux guest here, and why.

The decision is hardware detection's verdict (`appliance.hw.detect`, the same
one `appliance detect` prints): KVM only when the machine is
hardware-accelerated (VT-x/AMD-V enabled, kvm_intel/kvm_amd loaded, /dev/kvm
usable). Anything else, a /dev/kvm backed by kvm_pvm included, gets TCG with
`-cpu max`: QEMU+KVM hangs on PVM (see DESIGN.md)."""

from __future__ import annotations

from appliance.hw import Report, detect


def choose_accelerator(report: Report | None = None) -> tuple[str, str]:
    """("kvm" or "tcg", the reason), from `report` or a fresh detection."""
    report = report or detect(inventory=False)
    if report.accelerated:
        return "kvm", report.verdict
    return "tcg", f"{report.verdict}: TCG with -cpu max"
