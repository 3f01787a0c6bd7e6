"""`appliance vm run`: boot a bzImage in a microVM with its console attached.

SIGTERM while the guest runs asks it to shut down (Ctrl-Alt-Delete on its
keyboard; Linux with reboot=k then resets, and the run ends SHUT_DOWN); a
second SIGTERM, or `shutdown_grace` seconds without the guest ending, stops
it from the host.
"""

from __future__ import annotations

import contextlib
import signal
import sys
import threading
import types
from collections.abc import Iterator
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

# After SIGTERM, how long the guest may take to shut down before it is
# stopped: systemd's own default stop timeout (DefaultTimeoutStopSec).
DEFAULT_SHUTDOWN_GRACE = 90.0

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
    shutdown_grace: float | None = DEFAULT_SHUTDOWN_GRACE  # None: wait for the guest for ever


class _ShutdownOnSigterm:
    """The SIGTERM handler while a guest runs (it runs in the main thread,
    between the waits of Machine.run)."""

    def __init__(self, vm: Machine, grace: float | None) -> None:
        self._vm = vm
        self._grace = grace
        self._timer: threading.Timer | None = None
        self._requested = False

    def __call__(self, signum: int, frame: types.FrameType | None) -> None:
        if self._requested:
            self._vm.stop()  # asked twice: do not wait for the guest any longer
            return
        self._requested = True
        try:
            self._vm.send_ctrl_alt_del()
        except VmmError:
            self._vm.stop()  # its keyboard is full: the guest is not listening
            return
        if self._grace is not None:
            self._timer = threading.Timer(self._grace, self._vm.stop)
            self._timer.daemon = True
            self._timer.start()

    def cancel(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer.join()


@contextlib.contextmanager
def _shutdown_on_sigterm(vm: Machine, grace: float | None) -> Iterator[None]:
    """SIGTERM asks the guest to shut down while the block runs (main thread
    only: Python delivers signals there; elsewhere nothing changes)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    handler = _ShutdownOnSigterm(vm, grace)
    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        # None: a handler not set from Python; the default is the closest
        signal.signal(signal.SIGTERM, signal.SIG_DFL if previous is None else previous)
        handler.cancel()  # before the machine is closed: the timer may still call stop()


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
        with console.attached(vm), _shutdown_on_sigterm(vm, spec.shutdown_grace):
            return vm.run(timeout=spec.timeout, sink=console.write)


def exit_status(result: RunResult) -> int:
    """Process exit status for a finished run."""
    if result.status is ExitStatus.POWERED_OFF:
        return result.exit_code & 0xFF
    if result.status in (ExitStatus.RESET, ExitStatus.SHUT_DOWN):
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
