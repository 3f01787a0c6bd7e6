"""Fuzz driver for the virtqueue harness (native/virtq_fuzz.c): run as a
separate process under AddressSanitizer by test_virtq_fuzz.py.

    python virtq_fuzz_driver.py MODULE.so EXAMPLES

Hypothesis generates driver sessions: a mostly sensible setup of the
transport (features, queue size, ring addresses, DRIVER_OK) with random
edits, rings and descriptors whose indices, addresses, lengths and flags
lean towards the edges (out of range, wrapping, loops, huge lengths), and
block request headers with edge sectors; plus fully random bytes.  Prints
one JSON line of statistics; an ASan report aborts the process instead.
"""

from __future__ import annotations

import importlib.machinery
import importlib.util
import json
import struct
import sys
from typing import Any

from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

U64 = 2**64 - 1
BUFS = (0x800, 0x900, 0xA00, 0xC00)  # where request headers and data live

# common configuration offsets
STATUS, Q_SEL, Q_SIZE, Q_ENABLE, Q_DESC, Q_AVAIL, Q_USED = 0x14, 0x16, 0x18, 0x1C, 0x20, 0x28, 0x30


def load(path: str) -> Any:
    loader = importlib.machinery.ExtensionFileLoader("virtq_fuzz", path)
    spec = importlib.util.spec_from_file_location("virtq_fuzz", path, loader=loader)
    assert spec is not None
    module = importlib.util.module_from_spec(spec)
    loader.exec_module(module)
    return module


def op(off: int, size: int, value: int, write: bool = True) -> bytes:
    code = {1: 0, 2: 1, 4: 2, 8: 3}[size]
    return struct.pack("<HBBI", off & 0xFFFF, code, 1 if write else 0, value & 0xFFFFFFFF)


addr = st.one_of(
    st.sampled_from(BUFS),
    st.sampled_from(BUFS),
    st.integers(0, 0xE00),
    st.integers(0, 0xE00),
    st.integers(0, 0x4000),
    st.sampled_from([0xFFF, 0x1000, 0x3FFF, 0x4000, 2**32 - 1, 2**63, U64 - 15, U64]),
    st.integers(0, U64),
)
length = st.one_of(
    st.integers(0, 1100),
    st.sampled_from([0, 1, 15, 16, 17, 511, 512, 513, 4 << 20, (4 << 20) + 1, 2**31, 2**32 - 1]),
)
flags = st.one_of(st.sampled_from([1, 1, 3, 3, 0, 2]), st.integers(0, 7))
descriptor = st.tuples(addr, length, flags, st.one_of(st.integers(0, 4), st.integers(0, 20)))
ring_addr = st.one_of(
    st.sampled_from([0x0, 0x100, 0x200, 0x400, 0x401, 0x3FF0, 0x4000, 2**32, U64 - 3]),
    st.integers(0, 0x5000),
    st.integers(0, U64),
)
header = st.tuples(
    st.one_of(st.sampled_from([0, 1, 4, 8]), st.integers(0, 2**32 - 1)),
    st.one_of(st.sampled_from([0, 1, 15, 16, 17, 2**63, U64]), st.integers(0, U64)),
)
random_op = st.builds(
    op,
    st.one_of(st.integers(0, 0x40), st.sampled_from([0x1000, 0x2000, 0x3000, 0x3800, 0x3C00]),
              st.integers(0, 0xFFFF)),
    st.sampled_from([1, 2, 4, 8]),
    st.integers(0, 2**32 - 1),
    st.booleans(),
)  # fmt: skip


@st.composite
def session(draw: st.DrawFn) -> tuple[bytes, bytes, bool]:
    mem_len = draw(st.sampled_from([0x1000, 0x2000, 0x4000]))
    mem = bytearray(mem_len)
    qsize = draw(st.sampled_from([1, 2, 4, 8, 16, 128, 256, 0, 3, 257, 0xFFFF]))
    desc, avail, used = draw(ring_addr), draw(ring_addr), draw(ring_addr)
    if draw(st.booleans()):  # a layout that fits, so the parser is reached
        desc, avail, used = 0x0, 0x400, 0x600  # inside every mem_len
        qsize = draw(st.sampled_from([1, 2, 4, 8, 16]))

    def put(at: int, data: bytes) -> None:
        if at >= 0 and at + len(data) <= mem_len:
            mem[at : at + len(data)] = data

    n = min(max(qsize, 1), 16)
    well_formed = draw(st.booleans())
    if well_formed:
        # well-formed requests (header, data, status), then a few edge edits
        nreq = draw(st.integers(1, 3))
        descs = []
        for r in range(nreq):
            kind = draw(st.sampled_from([0, 1, 4, 8]))
            nbytes = draw(st.sampled_from([512, 1024, 0, 511]))
            data_flags = 2 if kind in (0, 8) else 0
            base = 3 * r
            descs += [(BUFS[0] + 0x20 * r, 16, 1, base + 1),
                      (0x1000 - 0x100 * (r + 1) - nbytes, nbytes, data_flags | 1, base + 2),
                      (BUFS[3] + r, 1, 2, 0)]  # fmt: skip
            put(BUFS[0] + 0x20 * r, struct.pack("<IIQ", kind, 0, draw(st.integers(0, 20))))
        for _ in range(draw(st.integers(0, 2))):
            i = draw(st.integers(0, len(descs) - 1))
            field = draw(st.integers(0, 3))
            d = list(descs[i])
            d[field] = draw([addr, length, st.integers(0, 7), st.integers(0, len(descs))][field])
            descs[i] = (d[0], d[1], d[2], d[3])
        for i, (a, ln, fl, nx) in enumerate(descs[: max(n, 1)]):
            put(desc + 16 * i, struct.pack("<QIHH", a & U64, ln, fl, nx))
        put(avail, struct.pack("<HH", 0, nreq))
        for r in range(nreq):
            put(avail + 4 + 2 * r, struct.pack("<H", 3 * r))
    if not well_formed:
        in_range = st.integers(0, n - 1)
        for i, (a, ln, fl, nx) in enumerate(draw(st.lists(descriptor, max_size=n))):
            nx = draw(st.one_of(in_range, in_range, in_range, st.just(nx)))
            put(desc + 16 * i, struct.pack("<QIHH", a & U64, ln, fl, nx))
        idx = draw(st.one_of(st.integers(1, n), st.integers(1, n), st.integers(0, 0xFFFF)))
        put(avail, struct.pack("<HH", draw(st.integers(0, 1)), idx))
        for i, h in enumerate(draw(st.lists(st.one_of(in_range, st.integers(0, 20)),
                                            max_size=n))):  # fmt: skip
            put(avail + 4 + 2 * i, struct.pack("<H", h))
    put(used + 2, struct.pack("<H", draw(st.one_of(st.just(0), st.integers(0, 0xFFFF)))))
    for at, (t, sector) in zip(BUFS[1:], draw(st.lists(header, max_size=3)), strict=False):
        put(at, struct.pack("<IIQ", t, 0, sector))

    features_lo = draw(st.sampled_from([1 << 9, 1 << 5, 0, (1 << 9) | (1 << 2), 0xFFFFFFFF]))
    ops = [op(STATUS, 1, 0), op(STATUS, 1, 1), op(STATUS, 1, 3),
           op(0x08, 4, 0), op(0x0C, 4, features_lo), op(0x08, 4, 1), op(0x0C, 4, 1),
           op(STATUS, 1, 0xB), op(Q_SEL, 2, 0), op(Q_SIZE, 2, qsize),
           op(Q_DESC, 4, desc), op(Q_DESC + 4, 4, desc >> 32),
           op(Q_AVAIL, 4, avail), op(Q_AVAIL + 4, 4, avail >> 32),
           op(Q_USED, 4, used), op(Q_USED + 4, 4, used >> 32),
           op(Q_ENABLE, 2, 1), op(STATUS, 1, 0xF)]  # fmt: skip
    for position, extra in draw(st.lists(st.tuples(st.integers(0, len(ops)), random_op),
                                         max_size=4)):  # fmt: skip
        ops.insert(position, extra)
    return bytes(mem), b"".join(ops), draw(st.booleans())


raw = st.tuples(st.binary(min_size=0, max_size=0x2000), st.binary(max_size=400), st.booleans())


def main() -> int:
    module, examples = load(sys.argv[1]), int(sys.argv[2])
    ffi, lib = module.ffi, module.lib
    stats = {"executions": 0, "requests": 0, "device_errors": 0, "bytes_read": 0,
             "bytes_written": 0, "needs_reset": 0}  # fmt: skip

    @settings(max_examples=examples, deadline=None, database=None, derandomize=True,
              phases=[Phase.generate], suppress_health_check=list(HealthCheck))  # fmt: skip
    @given(st.one_of(session(), session(), session(), raw))
    def fuzz(case: tuple[bytes, bytes, bool]) -> None:
        mem, ops, ro = case
        res = ffi.new("struct virtq_fuzz_result *")
        rc = lib.virtq_fuzz_one(mem, len(mem), ops, len(ops), int(ro), res)
        assert rc == 0
        stats["executions"] += 1
        stats["requests"] += res.requests
        stats["device_errors"] += res.errors
        stats["bytes_read"] += res.bytes_read
        stats["bytes_written"] += res.bytes_written
        stats["needs_reset"] += bool(res.status & 0x40)

    fuzz()
    print(json.dumps(stats))
    return 0


if __name__ == "__main__":
    sys.exit(main())
