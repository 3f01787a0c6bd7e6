"""Build glue for the native (cffi) extensions; metadata lives in pyproject.toml."""

from setuptools import setup

# Each capability that has C code adds its cffi build script here
# ("native/<name>_build.py:ffibuilder").
CFFI_MODULES: list[str] = [
    "native/vmm_build.py:ffibuilder",
]

setup(cffi_modules=CFFI_MODULES)
