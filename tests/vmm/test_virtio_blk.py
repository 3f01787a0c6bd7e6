"""virtio-blk on the virtio-pci transport, driven from inside a test guest
(native/guests/script.S): real port and MMIO exits, data checked in the
host's image file, and malformed queues that must break only the device."""

from __future__ import annotations

import struct
from pathlib import Path

import pytest

from appliance.vmm import DeviceInfo, EntryMode, ExitStatus, Machine, MachineConfig, RunResult
from tests.vmm.virtio_script import (
    BUF_BASE,
    DEVCFG,
    F_INDIRECT,
    F_NEXT,
    F_WRITE,
    SCRIPT_ADDR,
    Driver,
    Queue,
    Script,
)

GUEST_LOAD = 0x10000
SECTOR = 512
T_IN, T_OUT, T_FLUSH = 0, 1, 4
F_RO, F_FLUSH = 1 << 5, 1 << 9
NEEDS_RESET = 0x40


def image(path: Path, sectors: int = 64) -> Path:
    path.write_bytes(b"".join(bytes([i & 0xFF]) * SECTOR for i in range(sectors)))
    return path


def run_script(
    guests: dict[str, bytes],
    disks: list[tuple[Path, bool]],
    script: Script,
    seccomp: bool = False,
) -> tuple[RunResult, list[DeviceInfo], Machine]:
    vm = Machine(MachineConfig(memory_mib=64, seccomp=seccomp))
    try:
        for path, ro in disks:
            vm.add_disk(path, read_only=ro)
        vm.load_raw(GUEST_LOAD, guests["script"])
        for gpa, data in script.mem:
            vm.load_raw(gpa, data)
        vm.load_raw(SCRIPT_ADDR, script.image())
        vm.set_entry(EntryMode.PROT32, GUEST_LOAD)
        result = vm.run(timeout=60)
        return result, vm.devices(), vm
    except BaseException:
        vm.close()
        raise


def u32(vm: Machine, addr: int) -> int:
    return int(struct.unpack("<I", vm.read_memory(addr, 4))[0])


class Request:
    """One block request's buffers in guest RAM: header, data, status."""

    def __init__(self, n: int, type_: int, sector: int, nbytes: int = SECTOR) -> None:
        base = BUF_BASE + n * 0x10000
        self.hdr, self.data, self.status = base, base + 0x1000, base + 0x8000
        self.type, self.sector, self.nbytes = type_, sector, nbytes

    def load(self, s: Script, payload: bytes = b"") -> None:
        s.mem.append((self.hdr, struct.pack("<IIQ", self.type, 0, self.sector)))
        s.mem.append((self.status, b"\xee"))
        if payload:
            s.mem.append((self.data, payload))

    def chain(self) -> list[tuple[int, int, int]]:
        if self.type == T_FLUSH or self.nbytes == 0:
            return [(self.hdr, 16, 0), (self.status, 1, F_WRITE)]
        data_flags = F_WRITE if self.type == T_IN else 0
        return [(self.hdr, 16, 0), (self.data, self.nbytes, data_flags), (self.status, 1, F_WRITE)]


def blk_driver(
    s: Script, slot: int = 1, features: int = F_FLUSH, ring_base: int | None = None
) -> tuple[Driver, Queue]:
    d = Driver(s, slot, ring_base)
    d.probe()
    d.init(features)
    q = d.setup_queue(0, 16)
    d.driver_ok()
    return d, q


def submit(d: Driver, q: Queue, req: Request, first_desc: int, payload: bytes = b"") -> None:
    req.load(d.s, payload)
    d.descriptors(q, first_desc, req.chain())
    d.post(q, first_desc)


def test_pci_bus_shows_a_modern_virtio_blk_function(
    guests: dict[str, bytes], tmp_path: Path
) -> None:
    s = Script()
    d = Driver(s, 1)
    ids, bar = d.probe()
    bridge = s.pci_cfg_read32(0, 0x08)
    empty = s.pci_cfg_read32(2, 0x00)
    feats = d.init(F_FLUSH)
    capacity = s.read32(d.bar + DEVCFG)
    s.end(0)
    result, devs, vm = run_script(guests, [(image(tmp_path / "d.img"), False)], s)
    with vm:
        assert result.status is ExitStatus.POWERED_OFF and result.exit_code == 0, result
        assert u32(vm, ids) == 0x1042_1AF4  # virtio vendor, modern block device
        assert u32(vm, bar) == 0xE010_0000  # BAR0 in the PCI window, memory, 32-bit
        assert u32(vm, bridge) >> 16 == 0x0600  # host bridge class at 00:00.0
        assert u32(vm, empty) == 0xFFFF_FFFF
        assert u32(vm, feats["features_hi"]) & 1  # VIRTIO_F_VERSION_1
        assert u32(vm, feats["features_lo"]) & F_FLUSH
        assert not u32(vm, feats["features_lo"]) & F_RO
        assert u32(vm, feats["status"]) & 0x8  # FEATURES_OK accepted
        assert u32(vm, capacity) == 64
    assert devs[0].kind == "block" and devs[0].pci_slot == 1


def test_guest_writes_reach_the_file_and_reads_return_it(
    guests: dict[str, bytes], tmp_path: Path
) -> None:
    disk = image(tmp_path / "d.img")
    s = Script()
    d, q = blk_driver(s)
    payload = bytes(range(256)) * 4  # two sectors
    write = Request(0, T_OUT, 3, 2 * SECTOR)
    flush = Request(1, T_FLUSH, 0, 0)
    read = Request(2, T_IN, 10, 3 * SECTOR)
    submit(d, q, write, 0, payload)
    submit(d, q, flush, 3)
    submit(d, q, read, 5)
    s.end(0)
    result, devs, vm = run_script(guests, [(disk, False)], s)
    with vm:
        assert result.exit_code == 0, result
        assert vm.read_memory(write.status, 1) == b"\x00"
        assert vm.read_memory(flush.status, 1) == b"\x00"
        assert vm.read_memory(read.status, 1) == b"\x00"
        assert vm.read_memory(read.data, 3 * SECTOR) == disk.read_bytes()[10 * SECTOR : 13 * SECTOR]
        (used_idx,) = struct.unpack("<H", vm.read_memory(q.used + 2, 2))
        assert used_idx == 3
        # the used length of the read: data + status byte
        _, read_len = struct.unpack("<II", vm.read_memory(q.used + 4 + 8 * 2, 8))
        assert read_len == 3 * SECTOR + 1
    content = disk.read_bytes()
    assert content[3 * SECTOR : 5 * SECTOR] == payload
    assert content[: 3 * SECTOR] == image(tmp_path / "ref.img").read_bytes()[: 3 * SECTOR]
    assert devs[0].requests == 3 and devs[0].errors == 0
    assert devs[0].bytes_written == 2 * SECTOR and devs[0].bytes_read == 3 * SECTOR


def seccomp_threads() -> int:
    """Threads of this process confined by a seccomp filter (not counting
    KVM's kernel workers such as kvm-nx-lpage-recovery, which KVM forks off
    the first vCPU thread and which so inherit its filter)."""
    count = 0
    for status in Path("/proc/self/task").glob("*/status"):
        try:
            text = status.read_text()
            if "Seccomp:\t2" in text and not text.startswith("Name:\tkvm-"):
                count += 1
        except OSError:
            pass  # the thread ended
    return count


def test_disk_io_works_with_vcpu_threads_under_seccomp(
    guests: dict[str, bytes], tmp_path: Path
) -> None:
    disk = image(tmp_path / "d.img")
    s = Script()
    d, q = blk_driver(s)
    write = Request(0, T_OUT, 4, SECTOR)
    flush = Request(1, T_FLUSH, 0, 0)
    read = Request(2, T_IN, 9, SECTOR)
    submit(d, q, write, 0, b"\x5e" * SECTOR)
    submit(d, q, flush, 3)
    submit(d, q, read, 5)
    s.end(0)
    result, _, vm = run_script(guests, [(disk, False)], s, seccomp=True)
    with vm:
        assert result.status is ExitStatus.POWERED_OFF and result.exit_code == 0, result
        for req in (write, flush, read):
            assert vm.read_memory(req.status, 1) == b"\x00"
        assert vm.read_memory(read.data, SECTOR) == disk.read_bytes()[9 * SECTOR : 10 * SECTOR]
    assert disk.read_bytes()[4 * SECTOR : 5 * SECTOR] == b"\x5e" * SECTOR
    assert seccomp_threads() == 0  # the filter dies with the vCPU threads


def test_seccomp_confines_each_vcpu_thread_and_nothing_else(guests: dict[str, bytes]) -> None:
    import threading

    seen: list[int] = []
    with Machine(MachineConfig(memory_mib=64, cpus=2, seccomp=True)) as vm:
        vm.load_raw(GUEST_LOAD, guests["spin"])
        vm.set_entry(EntryMode.PROT32, GUEST_LOAD)
        t = threading.Timer(1.5, lambda: seen.append(seccomp_threads()))
        t.start()
        result = vm.run(timeout=3)
        t.join()
    assert result.status is ExitStatus.KILLED  # stopping from the host still works
    assert seen == [2]


def test_read_only_disk_refuses_writes_and_says_so(
    guests: dict[str, bytes], tmp_path: Path
) -> None:
    disk = image(tmp_path / "ro.img")
    before = disk.read_bytes()
    s = Script()
    d = Driver(s, 1)
    d.probe()
    feats = d.init(F_RO)
    q = d.setup_queue(0, 16)
    d.driver_ok()
    write = Request(0, T_OUT, 0, SECTOR)
    submit(d, q, write, 0, b"\xaa" * SECTOR)
    s.end(0)
    result, devs, vm = run_script(guests, [(disk, True)], s)
    with vm:
        assert result.exit_code == 0
        assert u32(vm, feats["features_lo"]) & F_RO
        assert vm.read_memory(write.status, 1) == b"\x01"  # VIRTIO_BLK_S_IOERR
    assert disk.read_bytes() == before
    assert devs[0].errors == 0  # a refused write is an I/O error, not a broken device


def test_several_disks_each_get_their_own_writes(guests: dict[str, bytes], tmp_path: Path) -> None:
    disks = [image(tmp_path / f"d{i}.img") for i in range(3)]
    s = Script()
    for i in range(3):
        d, q = blk_driver(s, slot=i + 1)
        req = Request(i, T_OUT, 1, SECTOR)
        submit(d, q, req, 0, bytes([0xA0 + i]) * SECTOR)
    s.end(0)
    result, devs, vm = run_script(guests, [(p, False) for p in disks], s)
    vm.close()
    assert result.exit_code == 0
    assert [dev.pci_slot for dev in devs] == [1, 2, 3]
    for i, p in enumerate(disks):
        assert p.read_bytes()[SECTOR : 2 * SECTOR] == bytes([0xA0 + i]) * SECTOR


def test_request_past_the_end_fails_without_touching_the_file(
    guests: dict[str, bytes], tmp_path: Path
) -> None:
    disk = image(tmp_path / "d.img")
    before = disk.read_bytes()
    s = Script()
    d, q = blk_driver(s)
    for n, sector in enumerate((63, 64, 2**63, 2**64 - 1)):
        req = Request(n, T_OUT, sector, 2 * SECTOR)
        submit(d, q, req, 3 * n, b"\x55" * 2 * SECTOR)
    s.end(0)
    result, devs, vm = run_script(guests, [(disk, False)], s)
    with vm:
        assert result.exit_code == 0
        for n in range(4):
            assert vm.read_memory(Request(n, T_OUT, 0).status, 1) == b"\x01"
    assert disk.read_bytes() == before
    assert devs[0].errors == 0 and not devs[0].needs_reset


# -- malformed queues: the monitor survives, the device reports an error ------

OUTSIDE_RAM = 0x1_0000_0000 + 0x1000  # above 4 GiB: no RAM there in a 64 MiB guest


def _malformed(d: Driver, q: Queue, kind: str) -> None:
    req = Request(0, T_OUT, 2, SECTOR)
    req.load(d.s, b"\x66" * SECTOR)
    if kind == "address":
        d.descriptors(q, 0, [(req.hdr, 16, 0), (OUTSIDE_RAM, SECTOR, 0), (req.status, 1, F_WRITE)])
    elif kind == "address-wrap":
        d.descriptors(q, 0, [(req.hdr, 16, 0), (2**64 - 8, 16, 0), (req.status, 1, F_WRITE)])
    elif kind == "loop":
        d.raw_descriptor(q, 0, req.hdr, 16, F_NEXT, 1)
        d.raw_descriptor(q, 1, req.data, SECTOR, F_NEXT, 2)
        d.raw_descriptor(q, 2, req.data, SECTOR, F_NEXT, 0)
    elif kind == "huge":
        d.descriptors(
            q, 0, [(req.hdr, 16, 0), (req.data, 0xFFFF_FFFF, 0), (req.status, 1, F_WRITE)]
        )
    elif kind == "next-range":
        d.raw_descriptor(q, 0, req.hdr, 16, F_NEXT, 999)
    elif kind == "indirect":
        d.raw_descriptor(q, 0, req.hdr, 16, F_INDIRECT, 0)
    elif kind == "order":
        d.descriptors(q, 0, [(req.hdr, 16, 0), (req.status, 1, F_WRITE), (req.data, SECTOR, 0)])
    elif kind == "no-status":
        d.descriptors(q, 0, [(req.hdr, 16, 0), (req.data, SECTOR, 0)])
    if kind == "head-range":
        d.s.mem.append((q.avail + 4, struct.pack("<H", 4000)))
        q.next_avail += 1
        d.s.op(2, q.avail + 2, q.next_avail)  # W16 avail idx
        d.notify(q)
    elif kind == "avail-jump":
        d.s.op(2, q.avail + 2, 1000)
        d.notify(q)
    else:
        d.post(q, 0)


MALFORMED = {
    "address": "outside guest RAM",
    "address-wrap": "outside guest RAM",
    "loop": "loop",
    "huge": "larger than the device accepts",
    "next-range": "next index out of range",
    "head-range": "head index out of range",
    "avail-jump": "more than the queue size",
    "indirect": "indirect",
    "order": "readable descriptor after a writable",
    "no-status": "layout invalid",
}


@pytest.mark.parametrize("kind", sorted(MALFORMED))
def test_malformed_queue_breaks_the_device_not_the_monitor(
    guests: dict[str, bytes], tmp_path: Path, kind: str
) -> None:
    disk = image(tmp_path / "d.img")
    before = disk.read_bytes()
    s = Script()
    d, q = blk_driver(s)
    _malformed(d, q, kind)
    status = s.read8(d.bar + 0x14)
    # a valid write after the error is not served until the driver resets
    late = Request(1, T_OUT, 5, SECTOR)
    late.load(s, b"\x77" * SECTOR)
    d.descriptors(q, 8, late.chain())
    d.post(q, 8)
    s.end(0)
    result, devs, vm = run_script(guests, [(disk, False)], s)
    with vm:
        assert result.status is ExitStatus.POWERED_OFF and result.exit_code == 0, result
        assert vm.read_memory(status, 1)[0] & NEEDS_RESET
    assert devs[0].needs_reset
    assert devs[0].errors == 1
    assert MALFORMED[kind] in devs[0].last_error
    assert disk.read_bytes() == before


def test_ring_outside_ram_is_refused_at_queue_enable(
    guests: dict[str, bytes], tmp_path: Path
) -> None:
    s = Script()
    d = Driver(s, 1)
    d.probe()
    d.init(F_FLUSH)
    b = d.bar
    s.op(2, b + 0x16, 0)
    s.op(2, b + 0x18, 16)
    s.op(1, b + 0x20, 0)
    s.op(1, b + 0x24, 0x10)  # descriptor table at 64 GiB
    s.op(2, b + 0x1C, 1)
    enabled = s.read32(b + 0x1C)
    s.end(0)
    result, devs, vm = run_script(guests, [(image(tmp_path / "d.img"), False)], s)
    with vm:
        assert result.exit_code == 0
        assert u32(vm, enabled) & 0xFFFF == 0
    assert devs[0].needs_reset and "ring outside guest RAM" in devs[0].last_error


def test_reset_after_an_error_brings_the_device_back(
    guests: dict[str, bytes], tmp_path: Path
) -> None:
    disk = image(tmp_path / "d.img")
    s = Script()
    d, q = blk_driver(s)
    _malformed(d, q, "loop")
    # the driver resets and starts over on a fresh ring
    d2, q2 = blk_driver(s, ring_base=0x380000)
    req = Request(3, T_OUT, 7, SECTOR)
    submit(d2, q2, req, 0, b"\x99" * SECTOR)
    s.end(0)
    result, devs, vm = run_script(guests, [(disk, False)], s)
    with vm:
        assert result.exit_code == 0
        assert vm.read_memory(req.status, 1) == b"\x00"
    assert not devs[0].needs_reset and devs[0].errors == 1
    assert disk.read_bytes()[7 * SECTOR : 8 * SECTOR] == b"\x99" * SECTOR
