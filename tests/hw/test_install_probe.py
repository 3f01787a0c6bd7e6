"""The installer's hardware detection never issues KVM_CREATE_VM.

Creating a VM switches VT-x/AMD-V on in every CPU; nested under QEMU's TCG
that wedged the whole installer now and then (issue 19, item 12). The
installer only needs the verdict, so its probe asks /dev/kvm for the API
version and nothing more. strace shows which ioctls really reach the
kernel: `appliance detect` must issue KVM_CREATE_VM (so the check can
fail), the installer's detection must not."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from appliance.hw.kvm import KVM_CREATE_VM, KVM_GET_API_VERSION

pytestmark = [
    pytest.mark.skipif(os.geteuid() != 0, reason="probing /dev/kvm needs root"),
    pytest.mark.skipif(not Path("/dev/kvm").exists(), reason="no /dev/kvm here"),
]


def kvm_ioctls(code: str, tmp_path: Path) -> list[int]:
    """The KVM ioctl request numbers a Python snippet issues (strace -f)."""
    out = tmp_path / "strace.txt"
    subprocess.run(["strace", "-f", "-qq", "-e", "trace=ioctl", "-e", "signal=none",
                    "-o", str(out), "-X", "raw", sys.executable, "-c", code],
                   check=True, capture_output=True, timeout=120)
    requests = []
    for line in out.read_text().splitlines():
        if "ioctl(" not in line:
            continue
        args = line.split("ioctl(", 1)[1].split(",")
        if len(args) < 2:
            continue
        try:
            request = int(args[1].strip(), 0)
        except ValueError:
            continue
        if request >> 8 == 0xAE:  # KVMIO
            requests.append(request)
    return requests


def test_detect_creates_a_vm(tmp_path: Path) -> None:
    issued = kvm_ioctls("from appliance.hw import detect; detect(inventory=False)", tmp_path)
    assert KVM_GET_API_VERSION in issued and KVM_CREATE_VM in issued, issued


def test_installer_detection_never_creates_a_vm(tmp_path: Path) -> None:
    issued = kvm_ioctls(
        "from appliance.installer.main import detect_report; detect_report()\n"
        "from appliance.answer.machine import this_machine; this_machine()", tmp_path)
    assert KVM_GET_API_VERSION in issued, issued
    assert KVM_CREATE_VM not in issued, issued


def test_probe_without_vm_still_judges_kvm_usable() -> None:
    from appliance.hw import detect
    from appliance.hw.kvm import probe_without_vm

    full = detect(inventory=False)
    light = detect(inventory=False, kvm=probe_without_vm)
    assert light.facts.kvm.create_vm is None
    assert light.status == full.status and light.verdict == full.verdict
    note = [c for c in light.checks if c.name == "KVM_CREATE_VM"]
    assert note and note[0].result == "NOTE" and "not tried" in note[0].detail
