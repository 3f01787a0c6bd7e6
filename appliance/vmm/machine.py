"""The object model over the C monitor: a Machine is one KVM microVM.

    with Machine(MachineConfig(memory_mib=256, cpus=2)) as vm:
        info = vm.load_linux(kernel, initrd=initrd, cmdline="console=ttyS0")
        result = vm.run(timeout=30)

Serial output is collected (or handed to a console); input is fed with
send_input().  send_ctrl_alt_del() asks the guest to shut down, stop() ends
it from the host.  Every failure is a VmmError naming the reason.
"""

from __future__ import annotations

import contextlib
import enum
import os
import select
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from appliance.errors import VmmError
from appliance.vmm._native import ffi, lib

if TYPE_CHECKING:
    from appliance.hw import Report

MIB = 1 << 20
DEFAULT_KVM = "/dev/kvm"

# Guest-visible constants, from vmm.h.
ZERO_PAGE_ADDR: int = lib.VMM_ZERO_PAGE_ADDR
BOOT_DONE_PORT: int = lib.VMM_PORT_BOOT_DONE
DEBUG_EXIT_PORT: int = lib.VMM_PORT_DEBUG_EXIT
MAX_CPUS: int = lib.VMM_MAX_CPUS

OutputSink = Callable[[bytes], None]


class EntryMode(enum.IntEnum):
    REAL16 = lib.VMM_ENTRY_REAL16
    PROT32 = lib.VMM_ENTRY_PROT32
    LONG64 = lib.VMM_ENTRY_LONG64


class ExitStatus(enum.Enum):
    POWERED_OFF = "powered off"
    RESET = "reset"
    SHUT_DOWN = "shut down"  # a reset after send_ctrl_alt_del(): the guest did as asked
    CRASHED = "crashed"
    KILLED = "killed"


_STATUS_OF_REASON = {
    lib.VMM_EXIT_POWEROFF: ExitStatus.POWERED_OFF,
    lib.VMM_EXIT_RESET_I8042: ExitStatus.RESET,
    lib.VMM_EXIT_TRIPLE_FAULT: ExitStatus.RESET,
    lib.VMM_EXIT_CRASH: ExitStatus.CRASHED,
    lib.VMM_EXIT_KILLED: ExitStatus.KILLED,
}

# Raw KVM exit reasons worth a name in a crash report (linux/kvm.h).
_KVM_EXIT_NAMES = {
    2: "KVM_EXIT_IO",
    6: "KVM_EXIT_MMIO",
    8: "KVM_EXIT_SHUTDOWN",
    9: "KVM_EXIT_FAIL_ENTRY",
    17: "KVM_EXIT_INTERNAL_ERROR",
    24: "KVM_EXIT_SYSTEM_EVENT",
}

COUNTER_NAMES = (
    "exits_total",
    "io_in",
    "io_out",
    "mmio_read",
    "mmio_write",
    "hlt",
    "shutdown",
    "interrupted",
    "unhandled_io",
    "unhandled_mmio",
    "serial_tx_bytes",
    "serial_rx_bytes",
)


def explain_kvm_failure(reason: str, report: Report | None = None) -> str:
    """Add hardware detection's verdict (the sentence `appliance detect`
    prints, with what to do) to a failure to open or use /dev/kvm."""
    from appliance.hw import detect

    report = report or detect(inventory=False)
    return f"{reason}\nhardware detection: {report.verdict}"


@dataclass(frozen=True)
class MachineConfig:
    memory_mib: int = 256
    cpus: int = 1
    kvm_path: str = DEFAULT_KVM
    seccomp: bool = False  # confine each vCPU thread with a seccomp filter

    def validate(self) -> None:
        if not 1 <= self.cpus <= MAX_CPUS:
            raise VmmError(f"--cpus {self.cpus}: 1 to {MAX_CPUS} vCPUs are supported")
        if self.memory_mib < 16:
            raise VmmError(f"--memory {self.memory_mib}: at least 16 MiB are needed")


@dataclass(frozen=True)
class E820Entry:
    addr: int
    size: int
    type: int  # 1 = RAM, 2 = reserved

    @property
    def end(self) -> int:
        return self.addr + self.size


@dataclass(frozen=True)
class BootInfo:
    """What the bzImage loader read from the setup header and where it put things."""

    protocol: str
    setup_sects: int
    loadflags: int
    xloadflags: int
    initrd_addr_max: int
    kernel_alignment: int
    cmdline_size: int
    init_size: int
    pref_address: int
    kernel_addr: int
    kernel_size: int
    entry: int
    entry_mode: EntryMode
    initrd_addr: int
    initrd_size: int
    zero_page: int
    cmdline_addr: int
    e820: tuple[E820Entry, ...]


@dataclass(frozen=True)
class DeviceInfo:
    """One virtio device as the monitor sees it (vmm_get_device)."""

    index: int
    kind: str  # "block" or "net"
    pci_slot: int
    irq: int
    status: int  # virtio device status; 0x40 = DEVICE_NEEDS_RESET
    features: int
    driver_features: int
    requests: int
    errors: int
    bytes_read: int  # device -> guest
    bytes_written: int  # guest -> device
    interrupts: int
    rx_dropped: int
    last_error: str

    @property
    def needs_reset(self) -> bool:
        return bool(self.status & 0x40)


@dataclass(frozen=True)
class RunResult:
    status: ExitStatus
    reason: str  # poweroff, i8042-reset, triple-fault, crash, killed
    detail: str
    exit_code: int
    cpu: int | None
    boot_done_s: float | None
    boot_done_value: int | None
    run_s: float
    counters: dict[str, int] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "status": self.status.value,
            "reason": self.reason,
            "detail": self.detail,
            "exit_code": self.exit_code,
            "cpu": self.cpu,
            "boot_done_s": self.boot_done_s,
            "boot_done_value": self.boot_done_value,
            "run_s": self.run_s,
            "counters": self.counters,
        }


def _counters(c: Any) -> dict[str, int]:
    return {name: int(getattr(c, name)) for name in COUNTER_NAMES}


def _read(path: Path | str, what: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as e:
        raise VmmError(f"{what} {path}: {e.strerror or e}") from e


def _open(path: Path | str, what: str, stack: contextlib.ExitStack) -> int:
    try:
        f = stack.enter_context(open(path, "rb"))  # noqa: SIM115 (the stack closes it)
    except OSError as e:
        raise VmmError(f"{what} {path}: {e.strerror or e}") from e
    return f.fileno()


class Machine:
    """One microVM. Create, load, run once, close (or use as a context manager)."""

    def __init__(self, config: MachineConfig | None = None) -> None:
        self.config = config or MachineConfig()
        self.config.validate()
        self._out_r, self._out_w = os.pipe()
        self._output = bytearray()
        self._output_lock = threading.Lock()
        self._sink: OutputSink | None = None
        self._running = threading.Event()
        self._shutdown_requested = False
        cfg = ffi.new(
            "struct vmm_config *",
            {
                "kvm_path": ffi.NULL,
                "mem_bytes": self.config.memory_mib * MIB,
                "ncpus": self.config.cpus,
                "console_out_fd": self._out_w,
                "kick_signal": 0,
                "seccomp": 1 if self.config.seccomp else 0,
            },
        )
        path = ffi.new("char[]", os.fsencode(self.config.kvm_path))
        cfg.kvm_path = path
        out = ffi.new("vmm_t **")
        msg = ffi.new("char[256]")
        rc = lib.vmm_create(cfg, out, msg, 256)
        if rc < 0:
            os.close(self._out_r)
            os.close(self._out_w)
            reason = ffi.string(msg).decode(errors="replace")
            if rc in (-lib.VMM_E_KVM_OPEN, -lib.VMM_E_KVM_UNUSABLE) and (
                os.path.realpath(self.config.kvm_path) == DEFAULT_KVM
            ):
                reason = explain_kvm_failure(reason)
            raise VmmError(reason)
        self._vm: Any = out[0]

    # -- life cycle ----------------------------------------------------------

    def close(self) -> None:
        if self._vm is None:
            return
        if self._running.is_set():
            raise VmmError("cannot close a running machine; stop it first")
        lib.vmm_destroy(self._vm)
        self._vm = None
        os.close(self._out_r)
        os.close(self._out_w)

    def __enter__(self) -> Machine:
        return self

    def __exit__(self, *exc: object) -> None:
        if self._running.is_set():
            self.stop()
        self.close()

    def _handle(self) -> Any:
        if self._vm is None:
            raise VmmError("the machine is closed")
        return self._vm

    def _check(self, rc: int) -> None:
        if rc < 0:
            raise VmmError(ffi.string(lib.vmm_last_error(self._handle())).decode(errors="replace"))

    # -- loading -------------------------------------------------------------

    def load_linux(
        self,
        kernel: Path | str | bytes,
        initrd: Path | str | bytes | None = None,
        cmdline: str = "",
        prefer_64: bool = True,
    ) -> BootInfo:
        """Load a bzImage (and initramfs) per the Linux x86 boot protocol."""
        info = ffi.new("struct vmm_boot_info *")
        args = (cmdline.encode(), 1 if prefer_64 else 0, info)
        if isinstance(kernel, bytes) or isinstance(initrd, bytes):
            # in-memory images (tests, callers that built them)
            kdata = kernel if isinstance(kernel, bytes) else _read(kernel, "kernel")
            idata = b""
            if initrd is not None:
                idata = initrd if isinstance(initrd, bytes) else _read(initrd, "initramfs")
            rc = lib.vmm_load_linux(
                self._handle(),
                ffi.from_buffer(kdata),
                len(kdata),
                ffi.from_buffer(idata) if idata else ffi.NULL,
                len(idata),
                *args,
            )
        else:
            # files are read by the C core straight into guest RAM
            with contextlib.ExitStack() as stack:
                kfd = _open(kernel, "kernel", stack)
                ifd = _open(initrd, "initramfs", stack) if initrd is not None else -1
                rc = lib.vmm_load_linux_fd(self._handle(), kfd, ifd, *args)
        if rc < 0:
            what = kernel if not isinstance(kernel, bytes) else "kernel"
            if rc == -lib.VMM_E_TOO_BIG and initrd is not None and "initramfs" in self._err():
                what = initrd if not isinstance(initrd, bytes) else "initramfs"
            raise VmmError(f"{what}: {self._err()}")
        return BootInfo(
            protocol=f"{info.protocol >> 8}.{info.protocol & 0xFF:02d}",
            setup_sects=info.setup_sects,
            loadflags=info.loadflags,
            xloadflags=info.xloadflags,
            initrd_addr_max=info.initrd_addr_max,
            kernel_alignment=info.kernel_alignment,
            cmdline_size=info.cmdline_size,
            init_size=info.init_size,
            pref_address=info.pref_address,
            kernel_addr=info.kernel_addr,
            kernel_size=info.kernel_size,
            entry=info.entry,
            entry_mode=EntryMode(info.entry_mode),
            initrd_addr=info.initrd_addr,
            initrd_size=info.initrd_size,
            zero_page=info.zero_page,
            cmdline_addr=info.cmdline_addr,
            e820=tuple(
                E820Entry(info.e820[i].addr, info.e820[i].size, info.e820[i].type)
                for i in range(min(info.e820_count, lib.VMM_MAX_E820))
            ),
        )

    def _err(self) -> str:
        return str(ffi.string(lib.vmm_last_error(self._handle())).decode(errors="replace"))

    def load_raw(self, gpa: int, data: bytes) -> None:
        """Copy bytes into guest RAM (test guests, firmware)."""
        self._check(lib.vmm_load_raw(self._handle(), gpa, ffi.from_buffer(data), len(data)))

    def set_entry(self, mode: EntryMode, entry: int, esi: int = ZERO_PAGE_ADDR) -> None:
        self._check(lib.vmm_set_entry(self._handle(), int(mode), entry, esi))

    def read_memory(self, gpa: int, length: int) -> bytes:
        buf = ffi.new("uint8_t[]", max(length, 1))
        if lib.vmm_read_mem(self._handle(), gpa, buf, length) < 0:
            raise VmmError(f"0x{gpa:x} + {length} bytes is outside guest RAM")
        return bytes(ffi.buffer(buf, length))

    # -- virtio devices ----------------------------------------------------------

    def add_disk(self, path: Path | str, read_only: bool = False) -> int:
        """Attach a raw image as a virtio-blk disk; returns the device index."""
        try:
            fd = os.open(path, os.O_RDONLY if read_only else os.O_RDWR)
        except OSError as e:
            raise VmmError(f"disk {path}: {e.strerror or e}") from e
        try:
            rc = lib.vmm_add_disk(self._handle(), fd, 1 if read_only else 0)
        finally:
            os.close(fd)  # the monitor keeps its own duplicate
        if rc < 0:
            raise VmmError(f"disk {path}: {self._err()}")
        return int(rc)

    def add_net(self, tap: str, mac: bytes) -> int:
        """Attach a virtio-net device to an existing TAP; returns the device index."""
        if len(mac) != 6:
            raise VmmError(f"MAC address must be 6 bytes, not {len(mac)}")
        rc = lib.vmm_add_net(self._handle(), tap.encode(), ffi.from_buffer(mac))
        if rc < 0:
            raise VmmError(self._err())
        return int(rc)

    def devices(self) -> list[DeviceInfo]:
        vm = self._handle()
        out = []
        info = ffi.new("struct vmm_device_info *")
        for i in range(lib.vmm_device_count(vm)):
            self._check(lib.vmm_get_device(vm, i, info))
            out.append(
                DeviceInfo(
                    index=i,
                    kind={lib.VMM_DEV_BLOCK: "block", lib.VMM_DEV_NET: "net"}.get(
                        info.kind, str(info.kind)
                    ),
                    pci_slot=int(info.pci_slot),
                    irq=int(info.irq),
                    status=int(info.status),
                    features=int(info.features),
                    driver_features=int(info.driver_features),
                    requests=int(info.requests),
                    errors=int(info.errors),
                    bytes_read=int(info.bytes_read),
                    bytes_written=int(info.bytes_written),
                    interrupts=int(info.interrupts),
                    rx_dropped=int(info.rx_dropped),
                    last_error=ffi.string(info.last_error).decode(errors="replace"),
                )
            )
        return out

    def e820(self) -> list[E820Entry]:
        entries = ffi.new("struct vmm_e820_entry[]", lib.VMM_MAX_E820)
        n = lib.vmm_get_e820(self._handle(), entries, lib.VMM_MAX_E820)
        return [E820Entry(entries[i].addr, entries[i].size, entries[i].type) for i in range(n)]

    # -- console ---------------------------------------------------------------

    @property
    def output(self) -> bytes:
        """Serial output collected so far (when no sink was given to run())."""
        with self._output_lock:
            return bytes(self._output)

    def send_input(self, data: bytes) -> int:
        """Queue bytes for the guest's COM1; returns how many the FIFO took."""
        n = lib.vmm_serial_input(self._handle(), ffi.from_buffer(data), len(data))
        self._check(n)
        return int(n)

    def send_all(self, data: bytes, timeout: float = 10.0) -> None:
        """Queue every byte, waiting while the guest drains the FIFO."""
        deadline = time.monotonic() + timeout
        while data:
            n = self.send_input(data)
            data = data[n:]
            if data:
                if time.monotonic() > deadline:
                    raise VmmError("serial input: the guest is not reading its console")
                time.sleep(0.005)

    def _pump_output(self, done: threading.Event) -> None:
        poller = select.poll()
        poller.register(self._out_r, select.POLLIN)
        while True:
            if not poller.poll(50):
                if done.is_set():
                    return  # the run is over and the pipe is drained
                continue
            chunk = os.read(self._out_r, 65536)
            if self._sink is not None:
                self._sink(chunk)
            else:
                with self._output_lock:
                    self._output += chunk

    # -- running ---------------------------------------------------------------

    def counters(self) -> dict[str, int]:
        c = ffi.new("struct vmm_counters *")
        lib.vmm_get_counters(self._handle(), c)
        return _counters(c)

    def stop(self) -> None:
        """Ask a running guest to stop (run() returns with KILLED)."""
        lib.vmm_stop(self._handle())

    def send_ctrl_alt_del(self) -> None:
        """Ask the guest to shut down: press Ctrl-Alt-Delete on its keyboard
        (Firecracker's SendCtrlAltDel). Linux with reboot=k then resets
        through the i8042, and run() reports SHUT_DOWN. Safe from any thread
        while the guest runs; a guest that ignores it runs on (stop() ends it)."""
        vm = self._handle()
        self._shutdown_requested = True
        if lib.vmm_send_ctrl_alt_del(vm) < 0:
            raise VmmError(self._err())

    def run(self, timeout: float | None = None, sink: OutputSink | None = None) -> RunResult:
        """Run until the guest stops, or kill it after `timeout` seconds."""
        vm = self._handle()
        self._sink = sink
        res = ffi.new("struct vmm_result *")
        rc: list[int] = []
        done = threading.Event()
        pump = threading.Thread(
            target=self._pump_output, args=(done,), name="vmm-console", daemon=True
        )
        worker = threading.Thread(
            target=lambda: rc.append(lib.vmm_run(vm, res)), name="vmm-run", daemon=True
        )
        self._running.set()
        pump.start()
        worker.start()
        try:
            worker.join(timeout)
            if worker.is_alive():
                self.stop()
                worker.join()
        except BaseException:
            self.stop()
            worker.join()
            raise
        finally:
            self._running.clear()
            done.set()  # the pump drains what the guest wrote, then ends
            pump.join()
        if rc and rc[0] < 0:
            raise VmmError(self._err())
        return self._result(res)

    def _result(self, res: Any) -> RunResult:
        status = _STATUS_OF_REASON.get(res.reason, ExitStatus.CRASHED)
        reason = ffi.string(lib.vmm_exit_reason_name(res.reason)).decode()
        detail = reason
        if res.reason == lib.VMM_EXIT_CRASH:
            kvm = _KVM_EXIT_NAMES.get(res.kvm_exit_reason, f"KVM exit {res.kvm_exit_reason}")
            detail = f"{kvm} (detail 0x{res.hw_reason:x})"
            if res.kvm_exit_reason == 0 and res.exit_code < 0:
                detail = f"KVM_RUN failed: {os.strerror(-res.exit_code)}"
        elif res.reason == lib.VMM_EXIT_POWEROFF:
            detail = f"guest powered off with code {res.exit_code}"
        elif res.reason == lib.VMM_EXIT_RESET_I8042:
            detail = "guest reset through the i8042 keyboard controller"
        elif res.reason == lib.VMM_EXIT_TRIPLE_FAULT:
            detail = "guest triple-faulted (KVM_EXIT_SHUTDOWN)"
        elif res.reason == lib.VMM_EXIT_KILLED:
            detail = "stopped by the host"
            if self._shutdown_requested:
                detail = "stopped by the host (the guest did not shut down on request)"
        if self._shutdown_requested and status is ExitStatus.RESET:
            status, detail = ExitStatus.SHUT_DOWN, "guest shut down on request"
        done = res.boot_done_ns
        return RunResult(
            status=status,
            reason=reason,
            detail=detail,
            exit_code=int(res.exit_code),
            cpu=None if res.cpu == 0xFFFFFFFF else int(res.cpu),
            boot_done_s=done / 1e9 if done >= 0 else None,
            boot_done_value=int(res.boot_done_value) if done >= 0 else None,
            run_s=res.run_ns / 1e9,
            counters=_counters(res.counters),
        )
