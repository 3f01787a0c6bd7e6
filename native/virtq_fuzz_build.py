"""cffi build of the virtqueue fuzz harness (native/virtq_fuzz.c) with the
transport, virtqueue and virtio-blk sources it drives.  Tests only: built
with AddressSanitizer and gcov coverage by tests/vmm/test_virtq_fuzz.py."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from cffi import FFI

NATIVE = Path(__file__).resolve().parent
SOURCES = ["virtq_fuzz.c", "virtq.c", "virtio_pci.c", "virtio_blk.c", "pci.c", "bus.c"]
CFLAGS = ["-std=gnu11", "-O1", "-g", "-Wall", "-Wextra", "-Werror", "-pthread"]


def make_ffibuilder(extra_cflags: Sequence[str] = (), extra_ldflags: Sequence[str] = ()) -> FFI:
    ffi = FFI()
    header = (NATIVE / "virtq_fuzz.h").read_text()
    ffi.cdef("\n".join(line for line in header.splitlines() if not line.startswith("#")))
    ffi.set_source(
        "virtq_fuzz",
        '#include "virtq_fuzz.h"\n',
        sources=[str(NATIVE / s) for s in SOURCES],
        include_dirs=[str(NATIVE)],
        extra_compile_args=[*CFLAGS, *extra_cflags],
        extra_link_args=["-pthread", *extra_ldflags],
    )
    return ffi
