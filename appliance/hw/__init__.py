"""Hardware detection: can this machine host VMs, and what disks and NICs
does it have. Used by `appliance detect`, the installer, the boot-test
harness and the web UI.

    from appliance.hw import detect
    report = detect()
    report.accelerated        # True: use KVM; False: fall back to TCG
    report.verdict            # "hardware-accelerated (AMD-V, kvm_amd)", ...
    report.inventory.install_targets

Every source can be redirected: `root` prefixes /proc, /sys and /dev reads,
`cpuid`, `msr` and `kvm` replace the CPUID instruction, the MSR device and
the /dev/kvm probe, and the udev inventory follows whatever pyudev sees (run
under `umockdev-run` to replay a recorded machine). `load_recording(dir)`
builds all of these from a recorded machine directory (see tests/data/hw/).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import pyudev  # type: ignore[import-untyped,unused-ignore]

from appliance.errors import HardwareError
from appliance.hw import cpu as _cpu
from appliance.hw import host as _host
from appliance.hw import kvm as _kvm
from appliance.hw import report as _report
from appliance.hw import udevinfo
from appliance.hw.match import match_devices
from appliance.hw.report import Check, Report

__all__ = [
    "Check",
    "Recording",
    "Report",
    "detect",
    "load_recording",
    "match_devices",
]


@dataclass
class Recording:
    """A recorded machine: `root/` (proc, sys, dev files), `cpuid.json`,
    optional `msr.json` and `kvm.json`, and `devices.umockdev` for udev."""

    path: Path
    root: Path
    cpuid: _cpu.RecordedCpuid
    msr: _cpu.RecordedMsr
    kvm: _kvm.RecordedKvm

    @property
    def umockdev(self) -> Path | None:
        p = self.path / "devices.umockdev"
        return p if p.exists() else None


def load_recording(path: Path) -> Recording:
    if not (path / "cpuid.json").is_file() or not (path / "root").is_dir():
        raise HardwareError(f"{path}: not a recorded machine (needs cpuid.json and root/)")
    return Recording(
        path=path,
        root=path / "root",
        cpuid=_cpu.RecordedCpuid.load(path / "cpuid.json"),
        msr=_cpu.RecordedMsr.load(path / "msr.json"),
        kvm=_kvm.RecordedKvm.load(path / "kvm.json"),
    )


def _facts_from_flags(info: _cpu.CpuInfo) -> _cpu.CpuidFacts:
    return _cpu.CpuidFacts(
        vendor=info.vendor,
        brand=info.model,
        vmx="vmx" in info.flags,
        svm="svm" in info.flags,
        npt="npt" in info.flags,
        hypervisor="hypervisor" in info.flags,
        hypervisor_signature="",
    )


def detect(
    root: Path = Path("/"),
    cpuid: _cpu.CpuidReader | None = None,
    msr: _cpu.MsrReader | None = None,
    kvm: _kvm.KvmProbe | None = None,
    udev: pyudev.Context | None = None,
    inventory: bool = True,
) -> Report:
    """Judge this machine (or a recorded one) and list its disks and NICs.

    root:      prefix for /proc, /sys and /dev reads (default: the real ones)
    cpuid:     `cpuid(leaf, subleaf) -> (eax, ebx, ecx, edx)`; default: the
               CPU's own instruction through appliance.hw._cpuid
    msr:       `msr(cpu, index) -> int | None`; default: <root>/dev/cpu/N/msr
    kvm:       `probe(path) -> KvmDevice`; default: open <root>/dev/kvm and
               issue KVM_GET_API_VERSION and KVM_CREATE_VM
    udev:      the pyudev context to list devices from
    inventory: False skips the disk/NIC inventory (verdict only)

    Never raises for a machine that cannot virtualize: that is the verdict.
    """
    t0 = time.perf_counter()
    timings: dict[str, float] = {}

    def lap(name: str) -> None:
        nonlocal t0
        now = time.perf_counter()
        timings[name] = round((now - t0) * 1000, 2)
        t0 = now

    cpuinfo = _cpu.read_cpuinfo(root)
    source = "cpuid"
    try:
        facts = _cpu.read_cpuid(cpuid or _cpu.native_cpuid)
    except HardwareError:
        facts, source = _facts_from_flags(cpuinfo), "cpuinfo"
    firmware = _cpu.read_firmware_state(facts, msr or _cpu.DevMsr(root))
    lap("cpu")
    device = (kvm or _kvm.probe_device)(root / "dev/kvm")
    modules = _kvm.read_modules(root)
    backend = _kvm.backing_module(modules, facts.extension)
    lap("kvm")
    vf = _report.VirtFacts(
        cpuid=facts,
        cpuid_source=source,
        cpuinfo=cpuinfo,
        firmware=firmware,
        kvm=device,
        modules=sorted(modules),
        backend=backend,
        nested=_kvm.nested_parameter(modules, backend),
    )
    status, verdict = _report.judge(vf)
    features = _host.read_host_features(root)
    lap("host")
    inv = udevinfo.read_inventory(udev, root) if inventory else None
    lap("inventory")
    return Report(
        status=status,
        verdict=verdict,
        checks=_report.virt_checks(vf) + _report.host_checks(features, guest=facts.hypervisor),
        facts=vf,
        host=features,
        inventory=inv,
        timings_ms=timings,
    )
