"""A virtio-pci driver for the `script` test guest (native/guests/script.S).

The test composes the driver's steps as a script of port and MMIO accesses;
the guest executes them, so every access is a real exit into the monitor.
Rings and buffers are laid out in guest RAM by the test (load_raw), and
read back after the run (read_memory).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field

SCRIPT_ADDR = 0x200000
RESULTS = 0x280000  # where R* ops store what they read
RING_BASE = 0x300000
BUF_BASE = 0x400000

PCI_WINDOW = 0xE0000000
SLOT_STRIDE = 0x100000

END, W32, W16, W8, R32, WAIT16, OUTL, INL, R16, R8 = range(10)

# common configuration registers (BAR0 + 0)
DFSELECT, DF, GFSELECT, GF = 0x00, 0x04, 0x08, 0x0C
NUM_QUEUES, STATUS = 0x12, 0x14
Q_SELECT, Q_SIZE, Q_MSIX, Q_ENABLE = 0x16, 0x18, 0x1A, 0x1C
Q_DESC, Q_AVAIL, Q_USED = 0x20, 0x28, 0x30
ISR, DEVCFG, NOTIFY = 0x1000, 0x2000, 0x3000

F_NEXT, F_WRITE, F_INDIRECT = 1, 2, 4


def bar_of(slot: int) -> int:
    return PCI_WINDOW + slot * SLOT_STRIDE


@dataclass
class Queue:
    index: int
    size: int
    desc: int
    avail: int
    used: int
    next_avail: int = 0

    def descriptor(self, i: int, addr: int, length: int, flags: int, nxt: int = 0) -> bytes:
        return struct.pack("<QIHH", addr, length, flags, nxt)


@dataclass
class Script:
    ops: list[tuple[int, int, int, int]] = field(default_factory=list)
    mem: list[tuple[int, bytes]] = field(default_factory=list)  # (gpa, bytes) to preload
    results: int = RESULTS

    def op(self, code: int, a: int = 0, b: int = 0, c: int = 0) -> None:
        self.ops.append((code, a & 0xFFFFFFFF, b & 0xFFFFFFFF, c & 0xFFFFFFFF))

    def read32(self, addr: int) -> int:
        """Read a dword into the next result slot; returns the slot's address."""
        slot = self.results
        self.results += 4
        self.op(R32, addr, slot)
        return slot

    def read8(self, addr: int) -> int:
        slot = self.results
        self.results += 4
        self.op(R8, addr, slot)
        return slot

    def pci_cfg_write32(self, slot: int, reg: int, value: int) -> None:
        self.op(OUTL, 0xCF8, 0x80000000 | slot << 11 | reg)
        self.op(OUTL, 0xCFC, value)

    def pci_cfg_read32(self, slot: int, reg: int) -> int:
        self.op(OUTL, 0xCF8, 0x80000000 | slot << 11 | reg)
        out = self.results
        self.results += 4
        self.op(INL, 0xCFC, out)
        return out

    def end(self, code: int = 0) -> None:
        self.op(END, 0, code)

    def image(self) -> bytes:
        return b"".join(struct.pack("<4I", *o) for o in self.ops)


class Driver:
    """Steps of a virtio 1.x driver for the device in PCI slot `slot`."""

    def __init__(self, script: Script, slot: int, ring_base: int | None = None) -> None:
        self.s = script
        self.slot = slot
        self.bar = bar_of(slot)
        self.queues: dict[int, Queue] = {}
        self._ring_next = RING_BASE + slot * 0x10000 if ring_base is None else ring_base

    def probe(self) -> tuple[int, int]:
        """Read the id dword, turn on memory decoding; returns result slots."""
        ids = self.s.pci_cfg_read32(self.slot, 0x00)
        self.s.pci_cfg_write32(self.slot, 0x04, 0x0006)
        bar = self.s.pci_cfg_read32(self.slot, 0x10)
        return ids, bar

    def init(self, features_lo: int, features_hi: int = 1) -> dict[str, int]:
        s, b = self.s, self.bar
        s.op(W8, b + STATUS, 0)
        s.op(W8, b + STATUS, 1)
        s.op(W8, b + STATUS, 3)
        s.op(W32, b + DFSELECT, 0)
        lo = s.read32(b + DF)
        s.op(W32, b + DFSELECT, 1)
        hi = s.read32(b + DF)
        s.op(W32, b + GFSELECT, 0)
        s.op(W32, b + GF, features_lo)
        s.op(W32, b + GFSELECT, 1)
        s.op(W32, b + GF, features_hi)
        s.op(W8, b + STATUS, 0xB)
        status = s.read8(b + STATUS)
        return {"features_lo": lo, "features_hi": hi, "status": status}

    def setup_queue(self, index: int, size: int) -> Queue:
        s, b = self.s, self.bar
        base = self._ring_next
        self._ring_next += 0x4000
        q = Queue(index, size, desc=base, avail=base + 0x1000, used=base + 0x2000)
        s.op(W16, b + Q_SELECT, index)
        s.op(W16, b + Q_SIZE, size)
        for reg, addr in ((Q_DESC, q.desc), (Q_AVAIL, q.avail), (Q_USED, q.used)):
            s.op(W32, b + reg, addr)
            s.op(W32, b + reg + 4, 0)
        s.op(W16, b + Q_ENABLE, 1)
        self.queues[index] = q
        return q

    def driver_ok(self) -> int:
        self.s.op(W8, self.bar + STATUS, 0xF)
        return self.s.read8(self.bar + STATUS)

    def post(self, q: Queue, head: int, notify: bool = True) -> None:
        """Put `head` in the next avail slot (preloaded), bump idx, notify."""
        slot = q.next_avail % q.size
        self.s.mem.append((q.avail + 4 + 2 * slot, struct.pack("<H", head)))
        q.next_avail += 1
        self.s.op(W16, q.avail + 2, q.next_avail)
        if notify:
            self.notify(q)

    def notify(self, q: Queue) -> None:
        self.s.op(W16, self.bar + NOTIFY + 4 * q.index, q.index)

    def descriptors(self, q: Queue, first: int, chain: list[tuple[int, int, int]]) -> None:
        """Preload a chain [(addr, len, flags)] at descriptors first, first+1, ..."""
        data = b""
        for i, (addr, length, flags) in enumerate(chain):
            nxt = first + i + 1 if i + 1 < len(chain) else 0
            fl = flags | (F_NEXT if i + 1 < len(chain) else 0)
            data += q.descriptor(first + i, addr, length, fl, nxt)
        self.s.mem.append((q.desc + 16 * first, data))

    def raw_descriptor(
        self, q: Queue, i: int, addr: int, length: int, flags: int, nxt: int
    ) -> None:
        self.s.mem.append((q.desc + 16 * i, q.descriptor(i, addr, length, flags, nxt)))
