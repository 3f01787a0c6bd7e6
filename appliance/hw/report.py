"""The verdict and the PASS/WARN/FAIL/NOTE checks of `appliance detect`.

Exit status of `appliance detect` (also `Report.exit_code`):

    0   hardware-accelerated: this machine can host VMs with VT-x/AMD-V
    10  software-only: /dev/kvm works but without VT-x/AMD-V (e.g. kvm_pvm)
    11  disabled in firmware: the CPU has VT-x/AMD-V but firmware turned it off
    12  no CPU support: the CPU exposes no VT-x/AMD-V (and no usable /dev/kvm)
    13  KVM not loaded: the CPU is capable but there is no /dev/kvm
    14  KVM unusable: /dev/kvm exists but cannot be opened or refuses to create a VM
    5   detection itself failed (HardwareError)
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any

from appliance.hw.cpu import CpuidFacts, CpuInfo, FirmwareState
from appliance.hw.host import LXC_CONTROLLERS, HostFeatures
from appliance.hw.kvm import HARDWARE_MODULES, KVM_API_VERSION, KvmDevice
from appliance.hw.udevinfo import VIRTUAL_PREFIXES, Inventory

PASS, WARN, FAIL, NOTE = "PASS", "WARN", "FAIL", "NOTE"

ACCELERATED = "hardware-accelerated"
SOFTWARE_ONLY = "software-only"
FIRMWARE_DISABLED = "disabled-in-firmware"
NO_CPU_SUPPORT = "no-cpu-support"
KVM_NOT_LOADED = "kvm-not-loaded"
KVM_UNUSABLE = "kvm-unusable"

EXIT_CODES = {
    ACCELERATED: 0,
    SOFTWARE_ONLY: 10,
    FIRMWARE_DISABLED: 11,
    NO_CPU_SUPPORT: 12,
    KVM_NOT_LOADED: 13,
    KVM_UNUSABLE: 14,
}


@dataclass
class Check:
    name: str
    result: str  # PASS, WARN, FAIL or NOTE
    detail: str
    hint: str | None = None


@dataclass
class VirtFacts:
    """Everything the verdict is judged from."""

    cpuid: CpuidFacts
    cpuid_source: str  # "cpuid" (the instruction or a recording) or "cpuinfo" (fallback)
    cpuinfo: CpuInfo
    firmware: FirmwareState
    kvm: KvmDevice
    modules: list[str]
    backend: str | None  # kvm_intel, kvm_amd, kvm_pvm, other, None
    nested: str | None

    @property
    def kernel_flag(self) -> str | None:
        return "vmx" if self.cpuid.vmx else "svm" if self.cpuid.svm else None

    @property
    def kernel_hides_flag(self) -> bool:
        flag = self.kernel_flag
        return flag is not None and bool(self.cpuinfo.flags) and flag not in self.cpuinfo.flags


def _bios_hint(ext: str) -> str:
    if ext == "AMD-V":
        return "enable SVM in BIOS setup"
    return "enable VT-x (Intel Virtualization Technology) in BIOS setup"


def _module_for(ext: str | None) -> str:
    return "kvm_intel" if ext == "VT-x" else "kvm_amd"


def judge(f: VirtFacts) -> tuple[str, str]:
    """(status, verdict sentence). See the module doc for the statuses."""
    ext = f.cpuid.extension
    if ext is not None and f.firmware.disabled:
        return FIRMWARE_DISABLED, f"disabled in firmware: {_bios_hint(ext)}"
    hw_backend = f.backend in HARDWARE_MODULES
    if ext is not None and f.firmware.disabled is None and f.kernel_hides_flag and not hw_backend:
        return FIRMWARE_DISABLED, (
            f"disabled in firmware: {_bios_hint(ext)} (the kernel hides '{f.kernel_flag}' "
            f"although CPUID reports {ext}; the firmware MSR could not be read to confirm)"
        )
    if ext is None:
        if f.kvm.present and f.backend is not None:
            unusable = ""
            if not f.kvm.works:
                why = f.kvm.error or f.kvm.create_vm_error or "KVM_CREATE_VM failed"
                unusable = f" (and /dev/kvm is not usable here: {why})"
            return SOFTWARE_ONLY, (
                f"software-only: /dev/kvm is backed by {f.backend} and the CPU exposes no "
                f"VT-x/AMD-V — full guests will not run at usable speed{unusable}"
            )
        guest = (
            f" (this is a {f.cpuid.hypervisor_name} guest: enable nested virtualization "
            "on its host)"
            if f.cpuid.hypervisor
            else ""
        )
        return NO_CPU_SUPPORT, f"no CPU support: the CPU exposes no VT-x/AMD-V{guest}"
    if not f.kvm.present or f.backend is None:
        module = _module_for(ext)
        return KVM_NOT_LOADED, (
            f"KVM not loaded: the CPU has {ext} but there is no /dev/kvm — modprobe {module}"
        )
    if not f.kvm.works:
        why = f.kvm.error or f.kvm.create_vm_error or "KVM_CREATE_VM failed"
        return KVM_UNUSABLE, f"KVM unusable: /dev/kvm exists but {why}"
    if not hw_backend:
        module = _module_for(ext)
        return SOFTWARE_ONLY, (
            f"software-only: /dev/kvm is backed by {f.backend} although the CPU has {ext} "
            f"— load {module} instead"
        )
    return ACCELERATED, f"hardware-accelerated ({ext}, {f.backend})"


def virt_checks(f: VirtFacts) -> list[Check]:
    c = f.cpuid
    cpu_name = f"{c.vendor or f.cpuinfo.vendor} {c.brand or f.cpuinfo.model}".strip()
    out = [Check("CPU", NOTE, cpu_name)]
    if f.cpuid_source != "cpuid":
        out.append(
            Check(
                "CPUID",
                WARN,
                "CPUID helper unavailable; judged from /proc/cpuinfo",
                "run `./run setup` to build appliance.hw._cpuid",
            )
        )
    if c.vmx:
        out.append(Check("Hardware virtualization (CPUID)", PASS, "VT-x (leaf 1 ECX bit 5)"))
    elif c.svm:
        npt = ", nested paging" if c.npt else ""
        out.append(
            Check(
                "Hardware virtualization (CPUID)", PASS, f"AMD-V (leaf 0x80000001 ECX bit 2{npt})"
            )
        )
    else:
        out.append(
            Check(
                "Hardware virtualization (CPUID)",
                FAIL,
                "neither VT-x (leaf 1 ECX bit 5) nor AMD-V (leaf 0x80000001 ECX bit 2)",
                "a guest needs nested virtualization enabled on its host"
                if c.hypervisor
                else "this CPU cannot run hardware-assisted VMs",
            )
        )
    flags = f.cpuinfo.flags
    in_flags = sorted({"vmx", "svm"} & flags)
    if f.kernel_hides_flag:
        out.append(
            Check(
                "Kernel CPU flags (/proc/cpuinfo)",
                WARN,
                f"'{f.kernel_flag}' missing although CPUID reports it",
                "the kernel disables it when firmware does: check BIOS setup",
            )
        )
    elif in_flags and c.extension is None:
        out.append(
            Check(
                "Kernel CPU flags (/proc/cpuinfo)",
                WARN,
                f"{', '.join(in_flags)} listed but CPUID does not report it",
            )
        )
    else:
        out.append(
            Check(
                "Kernel CPU flags (/proc/cpuinfo)",
                PASS if in_flags else NOTE,
                f"{', '.join(in_flags)} (agrees with CPUID)"
                if in_flags
                else "no vmx/svm (agrees with CPUID)",
            )
        )
    if c.hypervisor:
        sig = c.hypervisor_signature
        out.append(
            Check(
                "Hypervisor",
                NOTE,
                f"running as a guest of {c.hypervisor_name}"
                + (f" (signature {sig!r})" if sig else ""),
            )
        )
    else:
        out.append(Check("Hypervisor", NOTE, "none: bare metal"))
    fw = f.firmware
    if fw.disabled is True:
        ext = c.extension or "VT-x/AMD-V"
        out.append(Check("Firmware enables virtualization (MSR)", FAIL, fw.detail, _bios_hint(ext)))
    elif fw.disabled is False:
        out.append(Check("Firmware enables virtualization (MSR)", PASS, fw.detail))
    else:
        out.append(Check("Firmware enables virtualization (MSR)", NOTE, fw.detail))
    k = f.kvm
    load_hint = None
    if c.extension:
        load_hint = (
            _bios_hint(c.extension) if fw.disabled else f"modprobe {_module_for(c.extension)}"
        )
    if not k.present:
        out.append(
            Check(
                "/dev/kvm",
                FAIL,
                "missing",
                load_hint,
            )
        )
    else:
        out.append(Check("/dev/kvm", PASS, "present"))
        if not k.accessible:
            out.append(
                Check(
                    "/dev/kvm access",
                    FAIL,
                    f"cannot open: {k.error}",
                    "run as root or join the kvm group",
                )
            )
        else:
            out.append(Check("/dev/kvm access", PASS, "opened read-write"))
            if k.api_version == KVM_API_VERSION:
                out.append(Check("KVM_GET_API_VERSION", PASS, str(k.api_version)))
            else:
                out.append(
                    Check(
                        "KVM_GET_API_VERSION",
                        FAIL,
                        f"{k.api_version} (expected {KVM_API_VERSION}) {k.error or ''}",
                    )
                )
            if k.create_vm:
                out.append(Check("KVM_CREATE_VM", PASS, "a VM was created"))
            elif k.create_vm is False:
                out.append(Check("KVM_CREATE_VM", FAIL, k.create_vm_error or "failed"))
            else:
                out.append(Check("KVM_CREATE_VM", NOTE, "not tried (only the API version "
                                 "was asked, as the installer does)"))
    if f.backend in HARDWARE_MODULES:
        out.append(Check("KVM module", PASS, f"{f.backend} ({HARDWARE_MODULES[f.backend]})"))
    elif f.backend == "kvm_pvm":
        out.append(
            Check(
                "KVM module",
                WARN,
                "kvm_pvm: paravirtualized KVM without VT-x/AMD-V",
                "only PVM-aware guests run well; full guests crawl",
            )
        )
    elif f.backend == "other" and not k.present:
        out.append(
            Check(
                "KVM module",
                FAIL if c.extension else NOTE,
                "only the generic kvm module is loaded; no vendor module serves /dev/kvm",
                load_hint,
            )
        )
    elif f.backend:
        out.append(Check("KVM module", WARN, f"{f.backend} (unknown backend)"))
    else:
        out.append(
            Check("KVM module", FAIL if c.extension else NOTE, "no KVM module present", load_hint)
        )
    if f.nested is not None:
        on = f.nested in ("Y", "1")
        out.append(
            Check(
                "Nested virtualization",
                NOTE,
                f"{f.backend} nested={f.nested}: guests "
                + ("can" if on else "cannot")
                + " run their own VMs",
            )
        )
    return out


def host_checks(h: HostFeatures, guest: bool = False) -> list[Check]:
    """Checks of IOMMU, vhost-net, TUN, namespaces, cgroups. `guest`: we run
    under a hypervisor, so firmware hints become hints for the host."""
    out = []
    firmware = "enable VT-d / AMD-Vi (IOMMU) in BIOS setup"
    if guest:
        firmware = "give the VM a virtual IOMMU on its host"
    io = h.iommu
    if io.acpi_tables and io.groups:
        out.append(
            Check("IOMMU", PASS, f"{'/'.join(io.acpi_tables)} table, {io.groups} IOMMU groups")
        )
    elif io.acpi_tables:
        param = "intel_iommu=on" if "DMAR" in io.acpi_tables else "amd_iommu=on iommu=pt"
        out.append(
            Check(
                "IOMMU",
                WARN,
                f"{'/'.join(io.acpi_tables)} table present but no IOMMU groups",
                f"add {param} to the kernel command line for PCI passthrough",
            )
        )
    else:
        out.append(
            Check(
                "IOMMU",
                WARN,
                "no DMAR/IVRS ACPI table: no PCI passthrough",
                firmware,
            )
        )
    out.append(
        Check("/dev/vhost-net", PASS, "present")
        if h.vhost_net
        else Check(
            "/dev/vhost-net", WARN, "missing: virtio-net runs in userspace", "modprobe vhost_net"
        )
    )
    out.append(
        Check("/dev/net/tun", PASS, "present")
        if h.tun
        else Check("/dev/net/tun", FAIL, "missing: no TAP networking for VMs", "modprobe tun")
    )
    missing = [n for n, ok in h.namespaces.items() if not ok]
    out.append(
        Check(
            "Namespaces (LXC)",
            FAIL,
            f"missing: {', '.join(missing)}",
            "the kernel needs CONFIG_NAMESPACES and all its kinds",
        )
        if missing
        else Check("Namespaces (LXC)", PASS, ", ".join(h.namespaces))
    )
    cg = h.cgroups
    if cg.v2_mount is None:
        out.append(
            Check(
                "cgroup v2 (LXC)",
                FAIL,
                "no cgroup2 mount",
                "boot with systemd.unified_cgroup_hierarchy=1",
            )
        )
    elif cg.missing:
        where = "" if cg.unified else f" (hybrid layout, v2 at {cg.v2_mount})"
        out.append(
            Check(
                "cgroup v2 (LXC)",
                WARN,
                f"controllers missing: {', '.join(cg.missing)}{where}",
                "boot with systemd.unified_cgroup_hierarchy=1 so v2 gets "
                + ", ".join(LXC_CONTROLLERS),
            )
        )
    else:
        out.append(Check("cgroup v2 (LXC)", PASS, f"{cg.v2_mount}: {' '.join(cg.controllers)}"))
    return out


@dataclass
class Report:
    """The result of `appliance.hw.detect()`.

    `status` is one of the constants above, `verdict` the sentence shown to
    people, `accelerated` whether VMs get VT-x/AMD-V through /dev/kvm (the
    boot-test harness picks KVM over TCG on it), `checks` the lines of the
    report, and `cpu`/`inventory` what the installer offers.
    """

    status: str
    verdict: str
    checks: list[Check]
    facts: VirtFacts
    host: HostFeatures
    inventory: Inventory | None = None
    timings_ms: dict[str, float] = field(default_factory=dict)

    @property
    def accelerated(self) -> bool:
        return self.status == ACCELERATED

    @property
    def exit_code(self) -> int:
        return EXIT_CODES[self.status]

    @property
    def cpu(self) -> CpuInfo:
        return self.facts.cpuinfo

    def to_json(self) -> dict[str, Any]:
        f = self.facts
        out: dict[str, Any] = {
            "verdict": self.verdict,
            "status": self.status,
            "accelerated": self.accelerated,
            "exit_code": self.exit_code,
            "checks": [asdict(c) for c in self.checks],
            "virtualization": {
                "extension": f.cpuid.extension,
                "cpuid": {**asdict(f.cpuid), "source": f.cpuid_source},
                "cpuinfo_flags": sorted({"vmx", "svm", "hypervisor"} & f.cpuinfo.flags),
                "firmware": asdict(f.firmware),
                "kvm_device": asdict(f.kvm),
                "kvm_module": f.backend,
                "kvm_modules_present": f.modules,
                "nested": f.nested,
            },
            "host": asdict(self.host),
            "cpu": f.cpuinfo.to_json(),
        }
        if self.inventory is not None:
            out.update(self.inventory.to_json())
        return out

    def to_text(self) -> str:
        width = max(len(c.name) for c in self.checks)
        lines = []
        for c in self.checks:
            lines.append(f"{c.result:4}  {c.name:<{width}} : {c.detail}")
            if c.hint and c.result != PASS:
                lines.append(f"{'':4}  {'':<{width}}   hint: {c.hint}")
        lines.append("")
        lines.append(f"Verdict: {self.verdict}")
        cpu = self.cpu
        lines.append("")
        lines.append(
            f"CPU: {cpu.model or cpu.vendor}, {cpu.sockets} socket(s), {cpu.cores} core(s), "
            f"{cpu.threads} thread(s); memory {cpu.memory_bytes / 2**30:.1f} GiB"
        )
        if self.inventory is not None:
            virtual: dict[str, list[str]] = {}
            for d in self.inventory.disks:
                if d.excluded_reason is not None and d.excluded_reason in VIRTUAL_PREFIXES.values():
                    virtual.setdefault(d.excluded_reason, []).append(d.name)
                    continue
                offer = "install target" if d.install_target else "not offered"
                if d.excluded_reason:
                    offer += f": {d.excluded_reason}"
                lines.append(
                    f"Disk {d.devnode}: {d.size_bytes / 1e9:.1f} GB, {d.model or '-'}, "
                    f"bus {d.bus or '-'}{', in use' if d.in_use else ''} — {offer}"
                )
            for why, names in virtual.items():
                lines.append(f"Not offered ({why}): {' '.join(names)}")
            for n in self.inventory.nics:
                speed = f", {n.speed_mbps} Mb/s" if n.speed_mbps else ""
                lines.append(
                    f"NIC {n.name}: {n.mac or '-'}, driver {n.driver or '-'}, "
                    f"link {n.operstate or '-'}{speed}"
                )
        return "\n".join(lines) + "\n"

    def to_json_text(self) -> str:
        return json.dumps(self.to_json(), indent=2, default=str)
