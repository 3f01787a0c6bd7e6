"""Devices and exit paths, exercised by tiny guests on the real /dev/kvm."""

from __future__ import annotations

import struct
import threading
import time
from collections.abc import Callable

import pytest

from appliance.errors import VmmError
from appliance.vmm import EntryMode, ExitStatus, Machine, MachineConfig, RunResult

GUEST_LOAD = 0x10000  # where conftest links and loads the test guests
RunGuest = Callable[..., tuple[RunResult, bytes]]


def test_serial_output_reaches_the_host(run_guest: RunGuest) -> None:
    result, out = run_guest("hello")
    assert out == b"hello from the guest\n"
    assert result.status is ExitStatus.POWERED_OFF
    assert result.exit_code == 7
    assert result.cpu == 0


def test_exit_counters_count_each_kind_of_exit(run_guest: RunGuest) -> None:
    result, out = run_guest("hello")
    c = result.counters
    # per byte: one LSR read (THR is always empty) and one THR write;
    # then the boot-done write and the power-off write
    assert c["io_in"] == len(out)
    assert c["io_out"] == len(out) + 2
    assert c["exits_total"] == c["io_in"] + c["io_out"]
    assert c["serial_tx_bytes"] == len(out)
    assert c["mmio_read"] == c["mmio_write"] == c["unhandled_io"] == 0


def test_boot_done_port_records_time_and_value(run_guest: RunGuest) -> None:
    result, _ = run_guest("hello")
    assert result.boot_done_value == 0x42
    assert result.boot_done_s is not None
    assert 0 < result.boot_done_s <= result.run_s


def test_boot_timer_is_empty_when_the_guest_never_writes_it(run_guest: RunGuest) -> None:
    result, _ = run_guest("long64", mode=EntryMode.LONG64)
    assert result.boot_done_s is None
    assert result.boot_done_value is None


def test_serial_input_is_read_by_a_polling_guest(run_guest: RunGuest) -> None:
    result, out = run_guest("echo", input=b"hello, vm\n")
    assert out == b">HELLO, VM\n"
    assert result.status is ExitStatus.POWERED_OFF
    assert result.counters["serial_rx_bytes"] == len(b"hello, vm\n")


def test_serial_input_raises_irq4_through_the_pic(guests: dict[str, bytes]) -> None:
    with Machine(MachineConfig(memory_mib=64)) as vm:
        vm.load_raw(GUEST_LOAD, guests["irq"])
        vm.set_entry(EntryMode.PROT32, GUEST_LOAD)

        def feed() -> None:
            deadline = time.monotonic() + 10
            while b"irq>" not in vm.output and time.monotonic() < deadline:
                time.sleep(0.01)
            vm.send_all(b"ping\n")

        feeder = threading.Thread(target=feed)
        feeder.start()
        result = vm.run(timeout=20)
        feeder.join()
        assert vm.output == b"irq>ping\n", result
        assert result.status is ExitStatus.POWERED_OFF
        assert result.exit_code == 0


def test_serial_input_fifo_is_bounded(guests: dict[str, bytes]) -> None:
    with Machine(MachineConfig(memory_mib=64)) as vm:
        accepted = vm.send_input(b"x" * 10000)
        assert accepted == 4096
        assert vm.send_input(b"y") == 0


def test_uart_registers_behave_as_linux_probes_them(run_guest: RunGuest) -> None:
    result, out = run_guest("uart")
    assert out == b"islrfd\n"
    assert result.exit_code == 0
    assert result.counters["serial_tx_bytes"] == len(out) + 1  # + the looped-back 'Q'


def test_i8042_output_port_reset_stops_the_guest_with_reset(run_guest: RunGuest) -> None:
    result, _ = run_guest("reset_port")
    assert result.reason == "i8042-reset"
    assert result.counters["io_out"] == 2


def test_i8042_reset_stops_the_guest_with_reset(run_guest: RunGuest) -> None:
    result, _ = run_guest("reset")
    assert result.status is ExitStatus.RESET
    assert result.reason == "i8042-reset"
    assert result.counters["io_out"] == 1  # the 0xfe command; the power-off never ran


def test_triple_fault_stops_the_guest_with_reset(run_guest: RunGuest) -> None:
    result, _ = run_guest("triple")
    assert result.status is ExitStatus.RESET
    assert result.reason == "triple-fault"
    assert result.counters["shutdown"] == 1


def test_unassigned_port_and_mmio_read_all_ones_and_are_counted(run_guest: RunGuest) -> None:
    result, out = run_guest("ports")
    assert out == b"io mmio\n"
    assert result.exit_code == 0
    c = result.counters
    assert c["unhandled_io"] == 2  # out + in on port 0x1234
    assert c["unhandled_mmio"] == 2  # write + read at 0xd0000000
    assert c["mmio_read"] == 1
    assert c["mmio_write"] == 1


@pytest.mark.parametrize("memory_mib", [32, 64, 1024])
def test_guest_sees_the_e820_map_and_owns_the_top_of_ram(
    guests: dict[str, bytes], memory_mib: int
) -> None:
    with Machine(MachineConfig(memory_mib=memory_mib)) as vm:
        vm.load_raw(GUEST_LOAD, guests["memory"])
        vm.set_entry(EntryMode.PROT32, GUEST_LOAD)
        result = vm.run(timeout=20)
        # 4 entries: base RAM, EBDA, BIOS area, RAM from 1 MiB to the end
        assert vm.output == f"4 {memory_mib - 1}\n".encode()
        assert result.exit_code == 0
        top = memory_mib * 2**20
        assert vm.read_memory(top - 4, 4) == struct.pack("<I", 0x600DCAFE)
        assert result.counters["unhandled_mmio"] == 1  # the read just past RAM


def test_memory_map_has_the_low_memory_holes_and_splits_at_3_gib() -> None:
    with Machine(MachineConfig(memory_mib=4096)) as vm:
        e = [(x.addr, x.end, x.type) for x in vm.e820()]
        assert e == [
            (0, 0x9FC00, 1),
            (0x9FC00, 0xA0000, 2),
            (0xF0000, 0x100000, 2),
            (0x100000, 0xC000_0000, 1),
            (0x1_0000_0000, 0x1_4000_0000, 1),
        ]
        vm.load_raw(0x1_3FFF_FFF0, b"above 4 GiB!")
        assert vm.read_memory(0x1_3FFF_FFF0, 12) == b"above 4 GiB!"
        for gpa in (0xC000_0000, 0x1_4000_0000 - 4):
            with pytest.raises(VmmError, match="outside guest RAM"):
                vm.load_raw(gpa, b"12345678")


def test_zero_page_of_every_guest_carries_the_e820_map() -> None:
    with Machine(MachineConfig(memory_mib=64)) as vm:
        zp = vm.read_memory(0x7000, 4096)
        assert zp[0x1E8] == 4
        entries = [struct.unpack_from("<QQI", zp, 0x2D0 + 20 * i) for i in range(4)]
        assert entries[3] == (0x100000, 63 * 2**20, 1)


@pytest.mark.parametrize("cpus", [1, 2, 4])
def test_mp_table_lists_every_vcpu(cpus: int) -> None:
    with Machine(MachineConfig(memory_mib=32, cpus=cpus)) as vm:
        mpf = vm.read_memory(0x9FC00, 16)
        assert mpf[:4] == b"_MP_" and sum(mpf) % 256 == 0
        (table,) = struct.unpack_from("<I", mpf, 4)
        header = vm.read_memory(table, 44)
        assert header[:4] == b"PCMP"
        length, _, _ = struct.unpack_from("<HBB", header, 4)
        body = vm.read_memory(table, length)
        assert sum(body) % 256 == 0
        count = struct.unpack_from("<H", header, 34)[0]
        pos, cpus_seen, ioapics, irqs = 44, [], 0, 0
        for _ in range(count):
            kind = body[pos]
            if kind == 0:
                cpus_seen.append((body[pos + 1], body[pos + 3]))
                pos += 20
            else:
                ioapics += kind == 2
                irqs += kind == 3
                pos += 8
        assert cpus_seen == [(i, 3 if i == 0 else 1) for i in range(cpus)]
        assert ioapics == 1 and irqs == 16


def test_two_vcpus_start_and_the_second_has_apic_id_1(run_guest: RunGuest) -> None:
    result, out = run_guest("smp", cpus=2)
    assert out == b"ap=1\n"
    assert result.exit_code == 0


def test_second_vcpu_stays_down_without_sipi(run_guest: RunGuest) -> None:
    # one vCPU only: the INIT/SIPI goes nowhere and the BSP gives up
    result, out = run_guest("smp", cpus=1)
    assert out == b"?"
    assert result.exit_code == 1


def test_long_mode_entry(run_guest: RunGuest) -> None:
    result, out = run_guest("long64", mode=EntryMode.LONG64)
    assert out == b"64\n"
    assert result.exit_code == 0


def test_real_mode_entry(run_guest: RunGuest) -> None:
    result, out = run_guest("real16", mode=EntryMode.REAL16)
    assert out == b"rm\n"
    assert result.exit_code == 0


@pytest.mark.parametrize("guest", ["spin", "halt"])
def test_timeout_kills_a_guest_that_never_stops(run_guest: RunGuest, guest: str) -> None:
    t0 = time.monotonic()
    result, _ = run_guest(guest, timeout=0.5, cpus=2)
    assert result.status is ExitStatus.KILLED
    assert result.cpu is None
    assert 0.5 <= time.monotonic() - t0 < 10


def test_stop_from_another_thread_kills_the_guest(guests: dict[str, bytes]) -> None:
    with Machine(MachineConfig(memory_mib=32)) as vm:
        vm.load_raw(GUEST_LOAD, guests["halt"])
        vm.set_entry(EntryMode.PROT32, GUEST_LOAD)
        threading.Timer(0.3, vm.stop).start()
        result = vm.run()
        assert result.status is ExitStatus.KILLED


def test_a_machine_runs_only_once(guests: dict[str, bytes]) -> None:
    with Machine(MachineConfig(memory_mib=32)) as vm:
        vm.load_raw(GUEST_LOAD, guests["hello"])
        vm.set_entry(EntryMode.PROT32, GUEST_LOAD)
        vm.run(timeout=10)
        with pytest.raises(VmmError, match="already run"):
            vm.run(timeout=10)


def test_running_with_nothing_loaded_is_refused() -> None:
    with Machine(MachineConfig(memory_mib=32)) as vm, pytest.raises(VmmError, match="nothing"):
        vm.run(timeout=1)


def test_cmos_clock_tells_the_host_time(run_guest: RunGuest) -> None:
    import datetime

    before = datetime.datetime.now(datetime.UTC)
    result, out = run_guest("rtc")
    after = datetime.datetime.now(datetime.UTC)
    assert result.exit_code == 0x80  # status D: time valid
    allowed = {t.strftime("%H:%M").encode() + b"\n" for t in (before, after)}
    assert out in allowed


def test_stop_is_not_held_up_by_a_blocked_console(guests: dict[str, bytes]) -> None:
    # The sink stalls, the output pipe fills and the vCPU blocks writing to it:
    # a stop must still end the run (the C side), not wait for the console.
    release = threading.Event()

    def stalled_sink(data: bytes) -> None:
        release.wait()

    with Machine(MachineConfig(memory_mib=32)) as vm:
        vm.load_raw(GUEST_LOAD, guests["spew"])
        vm.set_entry(EntryMode.PROT32, GUEST_LOAD)
        # ~40k bytes/s here: the 64 KiB pipe is full well before the stop
        threading.Timer(2.5, vm.stop).start()
        threading.Timer(5.0, release.set).start()
        result = vm.run(sink=stalled_sink)
    assert result.status is ExitStatus.KILLED
    assert result.run_s < 4.0


def test_code_fetch_from_mmio_crashes_the_guest(run_guest: RunGuest) -> None:
    from appliance.vmm import launcher

    result, _ = run_guest("crash")
    assert result.status is ExitStatus.CRASHED
    assert result.reason == "crash"
    assert result.detail.startswith("KVM_EXIT_INTERNAL_ERROR")
    assert result.cpu == 0
    assert launcher.exit_status(result) == launcher.EXIT_CRASHED


def test_exit_status_of_each_kind_of_stop(run_guest: RunGuest) -> None:
    from appliance.vmm import launcher

    assert launcher.exit_status(run_guest("hello")[0]) == 7  # the guest's own code
    assert launcher.exit_status(run_guest("reset")[0]) == 0
    assert launcher.exit_status(run_guest("halt", timeout=0.2)[0]) == launcher.EXIT_KILLED
