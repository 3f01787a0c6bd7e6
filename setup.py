"""Build glue for the native (cffi) extensions; metadata lives in pyproject.toml."""

from setuptools import setup

# Each capability that has C code adds its cffi build script here
# ("native/<name>_build.py:ffibuilder").
CFFI_MODULES: list[str] = [
    "native/hw_cpuid_build.py:ffibuilder",  # appliance.hw._cpuid (hardware detection)
    "native/vmm_build.py:ffibuilder",  # appliance.vmm._native (microVM monitor)
]

setup(cffi_modules=CFFI_MODULES)
