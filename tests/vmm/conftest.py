"""Fixtures of the microVM monitor tests: tiny guests built with gcc from
native/guests/, Debian's kernel, and a helper that runs a guest."""

from __future__ import annotations

import glob
import os
from collections.abc import Callable
from pathlib import Path

import pytest

from appliance.runner import run
from appliance.vmm import EntryMode, Machine, MachineConfig, RunResult

ROOT = Path(__file__).resolve().parents[2]
GUESTS_SRC = ROOT / "native" / "guests"
GUEST_LOAD = 0x10000


@pytest.fixture(scope="session")
def guests(tmp_path_factory: pytest.TempPathFactory) -> dict[str, bytes]:
    """Every native/guests/*.S as a flat binary linked at GUEST_LOAD."""
    out = tmp_path_factory.mktemp("guests")
    built: dict[str, bytes] = {}
    for src in sorted(GUESTS_SRC.glob("*.S")):
        binary = out / f"{src.stem}.bin"
        run(
            [
                "gcc", "-nostdlib", "-static", "-no-pie", "-I", GUESTS_SRC,
                "-Wl,--build-id=none", "-Wl,--oformat=binary",
                f"-Wl,-Ttext=0x{GUEST_LOAD:x}", "-Wl,-e,start",
                "-o", binary, src,
            ],
            what=f"building test guest {src.name}",
        )  # fmt: skip
        built[src.stem] = binary.read_bytes()
    return built


RunGuest = Callable[..., tuple[RunResult, bytes]]


@pytest.fixture
def run_guest(guests: dict[str, bytes]) -> RunGuest:
    """Run a test guest; returns its result and serial output."""

    def go(
        name: str,
        *,
        mode: EntryMode = EntryMode.PROT32,
        cpus: int = 1,
        memory_mib: int = 64,
        timeout: float = 20.0,
        input: bytes = b"",
    ) -> tuple[RunResult, bytes]:
        with Machine(MachineConfig(memory_mib=memory_mib, cpus=cpus)) as vm:
            vm.load_raw(GUEST_LOAD, guests[name])
            vm.set_entry(mode, GUEST_LOAD)
            if input:
                vm.send_all(input)
            result = vm.run(timeout=timeout)
            return result, vm.output

    return go


@pytest.fixture(scope="session")
def debian_kernel() -> Path:
    """Debian's stock kernel (linux-image-amd64, from deps/apt-packages-vmm.txt)."""
    found = sorted(glob.glob("/boot/vmlinuz-*-amd64"), key=os.path.getmtime)
    if not found:
        pytest.fail("no /boot/vmlinuz-*-amd64: run ./run setup (installs linux-image-amd64)")
    return Path(found[-1])
