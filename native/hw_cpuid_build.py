"""cffi (API mode) build of appliance.hw._cpuid from native/hw_cpuid.c."""

import os

from cffi import FFI

# setuptools wants source paths relative to setup.py's directory.
HERE = os.path.relpath(os.path.dirname(os.path.abspath(__file__)))

ffibuilder = FFI()
ffibuilder.cdef("int appliance_cpuid(uint32_t leaf, uint32_t subleaf, uint32_t out[4]);")
ffibuilder.set_source(
    "appliance.hw._cpuid",
    '#include "hw_cpuid.h"',
    sources=[os.path.join(HERE, "hw_cpuid.c")],
    include_dirs=[HERE],
    extra_compile_args=["-Wall", "-Wextra", "-Werror"],
)

if __name__ == "__main__":
    ffibuilder.compile(verbose=True)
