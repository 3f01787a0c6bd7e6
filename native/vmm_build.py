"""cffi (API mode) build of the microVM monitor: native/*.c -> appliance.vmm._vmm.

The C declarations come from native/vmm.h itself (one source of truth): the
include guard and #includes are dropped and every #define becomes `...` so
the compiler supplies its value.

`make_ffibuilder(extra_cflags, extra_ldflags)` also builds variants, e.g. the
AddressSanitizer build the tests use.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

from cffi import FFI

NATIVE = Path(__file__).resolve().parent
MODULE = "appliance.vmm._vmm"
SOURCES = [
    "vmm.c",
    "memory.c",
    "bus.c",
    "vcpu.c",
    "boot.c",
    "mptable.c",
    "serial.c",
    "i8042.c",
    "rtc.c",
    "boot_timer.c",
    "debug_exit.c",
    "pci.c",
    "virtq.c",
    "virtio_pci.c",
    "virtio_blk.c",
    "virtio_net.c",
    "seccomp.c",
]
CFLAGS = ["-std=gnu11", "-O2", "-g", "-Wall", "-Wextra", "-Werror", "-pthread"]


def cdef_from_header(text: str) -> str:
    out = []
    for line in text.splitlines():
        stripped = line.strip()
        if stripped.startswith(("#ifndef", "#endif", "#include")) or re.match(
            r"#define\s+APPLIANCE_VMM_H\b", stripped
        ):
            continue
        m = re.match(r"#define\s+(\w+)\s+(\S+)", stripped)
        if m:
            plain = re.fullmatch(r"(0x[0-9a-fA-F]+|[0-9]+)", m.group(2))
            out.append(f"#define {m.group(1)} {m.group(2) if plain else '...'}")
            continue
        out.append(line)
    return "\n".join(out)


def _source_path(name: str, absolute: bool) -> str:
    # setuptools wants paths relative to setup.py when building the package;
    # ffi.compile() (the ASan variant) runs from its own temporary directory.
    path = NATIVE / name
    if not absolute and Path.cwd() == NATIVE.parent:
        return str(path.relative_to(NATIVE.parent))
    return str(path)


def make_ffibuilder(
    extra_cflags: Sequence[str] = (),
    extra_ldflags: Sequence[str] = (),
    absolute_paths: bool = False,
) -> FFI:
    ffi = FFI()
    ffi.cdef(cdef_from_header((NATIVE / "vmm.h").read_text()))
    ffi.set_source(
        MODULE,
        '#include "vmm.h"\n',
        sources=[_source_path(s, absolute_paths) for s in SOURCES],
        include_dirs=[_source_path(".", absolute_paths)],
        extra_compile_args=[*CFLAGS, *extra_cflags],
        extra_link_args=["-pthread", *extra_ldflags],
    )
    return ffi


ffibuilder = make_ffibuilder()

if __name__ == "__main__":
    ffibuilder.compile(verbose=True)
