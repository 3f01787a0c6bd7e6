"""`appliance vm run`: boot a bzImage in a microVM with its console attached."""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

from appliance.errors import VmmError
from appliance.vmm.console import SocketConsole, TerminalConsole
from appliance.vmm.machine import DEFAULT_KVM, ExitStatus, Machine, MachineConfig, RunResult
from appliance.vmm.net import NetSpec, check_tap

# Serial console on COM1, reset through the i8042 (a clean stop for us), no
# PS/2 mouse to probe.  PCI only when there are virtio devices on it: then
# through configuration mechanism #1 (ports 0xcf8/0xcfc), our host bridge.
DEFAULT_CMDLINE = "console=ttyS0 reboot=k panic=-1 pci=off i8042.noaux i8042.nomux"
DEVICES_CMDLINE = "console=ttyS0 reboot=k panic=-1 pci=conf1 i8042.noaux i8042.nomux"


@dataclass(frozen=True)
class DiskSpec:
    path: Path
    read_only: bool = False


def parse_disk(spec: str) -> DiskSpec:
    """`PATH` or `PATH,ro` (read-write unless ro)."""
    path, *opts = spec.split(",")
    if not path:
        raise VmmError(f"--disk {spec}: no image path")
    for opt in opts:
        if opt not in ("ro", "rw"):
            raise VmmError(f"--disk {spec}: unknown option {opt!r} (known: ro, rw)")
    return DiskSpec(Path(path), read_only=opts[-1:] == ["ro"])


def default_cmdline(with_devices: bool) -> str:
    return DEVICES_CMDLINE if with_devices else DEFAULT_CMDLINE

EXIT_KILLED = 124  # like timeout(1)
EXIT_CRASHED = 70  # EX_SOFTWARE


@dataclass(frozen=True)
class VmRun:
    kernel: Path
    initrd: Path | None = None
    cmdline: str | None = None  # None: default_cmdline() for the devices present
    memory_mib: int = 256
    cpus: int = 1
    console_socket: Path | None = None
    timeout: float | None = None
    kvm_path: str = DEFAULT_KVM
    entry_64: bool = True  # the 64-bit entry if the kernel offers it, else 32-bit
    disks: tuple[DiskSpec, ...] = ()
    nets: tuple[NetSpec, ...] = ()
    seccomp: bool = False


def run_vm(spec: VmRun) -> RunResult:
    """Create, load and run the guest in the foreground until it stops."""
    for net in spec.nets:
        check_tap(net.tap)
    config = MachineConfig(
        memory_mib=spec.memory_mib, cpus=spec.cpus, kvm_path=spec.kvm_path, seccomp=spec.seccomp
    )
    cmdline = spec.cmdline
    if cmdline is None:
        cmdline = default_cmdline(bool(spec.disks or spec.nets))
    with Machine(config) as vm:
        for disk in spec.disks:
            vm.add_disk(disk.path, read_only=disk.read_only)
        for net in spec.nets:
            vm.add_net(net.tap, net.mac)
        vm.load_linux(spec.kernel, initrd=spec.initrd, cmdline=cmdline, prefer_64=spec.entry_64)
        console: SocketConsole | TerminalConsole
        if spec.console_socket is not None:
            console = SocketConsole(spec.console_socket)
        else:
            console = TerminalConsole(sys.stdin.fileno(), sys.stdout.fileno())
        with console.attached(vm):
            return vm.run(timeout=spec.timeout, sink=console.write)


def exit_status(result: RunResult) -> int:
    """Process exit status for a finished run."""
    if result.status is ExitStatus.POWERED_OFF:
        return result.exit_code & 0xFF
    if result.status is ExitStatus.RESET:
        return 0
    if result.status is ExitStatus.KILLED:
        return EXIT_KILLED
    return EXIT_CRASHED


def summary(result: RunResult) -> str:
    boot = f"; boot done after {result.boot_done_s:.3f} s" if result.boot_done_s else ""
    c = result.counters
    return (
        f"vm: {result.status.value}: {result.detail} after {result.run_s:.3f} s{boot} "
        f"({c['exits_total']} exits: {c['io_in'] + c['io_out']} port, "
        f"{c['mmio_read'] + c['mmio_write']} MMIO)"
    )
