"""Creating a machine fails with a reason a person can act on."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from appliance.errors import VmmError
from appliance.vmm import Machine, MachineConfig


def test_missing_kvm_device_is_named(tmp_path: Path) -> None:
    path = tmp_path / "kvm"
    with pytest.raises(VmmError, match=f"cannot open {path}: No such file or directory"):
        Machine(MachineConfig(kvm_path=str(path)))


def test_a_device_that_is_not_kvm_is_unusable() -> None:
    with pytest.raises(VmmError, match="/dev/null is not a KVM device"):
        Machine(MachineConfig(kvm_path="/dev/null"))


def test_kvm_device_without_permission(tmp_path: Path) -> None:
    path = tmp_path / "kvm"
    path.write_bytes(b"")
    path.chmod(0)
    if os.geteuid() == 0:
        # root ignores file modes; a directory cannot be opened for writing instead
        path.unlink()
        path.mkdir()
        match = "Is a directory"
    else:
        match = "Permission denied"
    with pytest.raises(VmmError, match=match):
        Machine(MachineConfig(kvm_path=str(path)))


def test_memory_above_what_the_host_has() -> None:
    host_mib = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE") // 2**20
    with pytest.raises(VmmError, match=f"host has only {host_mib} MiB"):
        Machine(MachineConfig(memory_mib=host_mib + 1024))


@pytest.mark.parametrize("cpus", [0, 33])
def test_vcpu_count_out_of_range(cpus: int) -> None:
    with pytest.raises(VmmError, match="vCPUs"):
        Machine(MachineConfig(cpus=cpus))


def test_too_little_memory() -> None:
    with pytest.raises(VmmError, match="16 MiB"):
        Machine(MachineConfig(memory_mib=8))


def test_loading_outside_guest_ram_is_refused() -> None:
    with Machine(MachineConfig(memory_mib=32)) as vm:
        with pytest.raises(VmmError, match="outside guest RAM"):
            vm.load_raw(32 * 2**20 - 2, b"abcd")
        with pytest.raises(VmmError, match="outside guest RAM"):
            vm.read_memory(2**64 - 2, 4)


def test_closed_machine_refuses_calls() -> None:
    vm = Machine(MachineConfig(memory_mib=32))
    vm.close()
    with pytest.raises(VmmError, match="closed"):
        vm.e820()


def _cycle(times: int) -> None:
    for _ in range(times):
        with Machine(MachineConfig(memory_mib=64, cpus=2)) as vm:
            vm.load_raw(0x100000, b"\xaa" * 2**20)  # touch 1 MiB of guest RAM


def test_create_and_close_release_every_fd() -> None:
    _cycle(1)
    before = len(os.listdir("/proc/self/fd"))
    _cycle(50)
    assert len(os.listdir("/proc/self/fd")) == before


def test_create_and_close_release_memory() -> None:
    # (not under AddressSanitizer: its quarantine keeps freed memory resident)
    def rss_kib() -> int:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
        raise AssertionError("no VmRSS")

    _cycle(1)
    before = rss_kib()
    _cycle(50)
    assert rss_kib() - before < 4096


@pytest.mark.parametrize(
    ("recorded", "says"),
    [
        ("intel-no-kvm-module", "modprobe kvm_intel"),
        ("amd-svm-disabled", "enable SVM in BIOS setup"),
        ("pvm-dev-vm", "backed by kvm_pvm"),
    ],
)
def test_kvm_failure_carries_the_detection_verdict(recorded: str, says: str) -> None:
    from appliance.vmm.machine import explain_kvm_failure
    from tests.boot.test_accel import recorded as recorded_report

    text = explain_kvm_failure("cannot open /dev/kvm: No such file or directory",
                               recorded_report(recorded))
    assert text.startswith("cannot open /dev/kvm: No such file or directory\n")
    assert says in text.splitlines()[1]
