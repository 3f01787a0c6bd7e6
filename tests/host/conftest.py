"""Fixtures of the host-management tests: a Host on temporary roots, a VM
template made from a tiny freestanding guest wrapped as a bzImage (it
resets on Ctrl-Alt-Delete; a variant ignores it), and the container
template image_recipes/ct-debian.toml built once per session."""

from __future__ import annotations

import shutil
import struct
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from appliance.engine import build as engine
from appliance.host import Host, HostPaths, templates
from appliance.runner import run

from ..conftest import ROOT, require_root

GUESTS_SRC = Path(__file__).resolve().parent / "guests"
KERNEL_ADDR = 0x100000


def make_bzimage(payload: bytes) -> bytes:
    """The smallest file our loader takes as a bzImage (boot protocol 2.15,
    32-bit entry only): one setup sector with the header, then `payload`,
    which the loader puts at 1 MiB and enters in 32-bit protected mode."""
    setup = bytearray(2 * 512)
    setup[0x1F1] = 1  # setup_sects
    struct.pack_into("<H", setup, 0x1FE, 0xAA55)
    setup[0x200:0x202] = bytes([0xEB, 0x66])  # jump: the header ends at 0x268
    setup[0x202:0x206] = b"HdrS"
    struct.pack_into("<H", setup, 0x206, 0x020F)
    setup[0x211] = 0x01  # LOADED_HIGH
    struct.pack_into("<I", setup, 0x22C, 0x37FFFFFF)  # initrd_addr_max
    struct.pack_into("<I", setup, 0x230, 0x200000)  # kernel_alignment
    struct.pack_into("<H", setup, 0x236, 0)  # xloadflags: no 64-bit entry
    struct.pack_into("<I", setup, 0x238, 255)  # cmdline_size
    struct.pack_into("<I", setup, 0x260, (len(payload) + 0xFFF) & ~0xFFF)  # init_size
    return bytes(setup) + payload


def build_console_guest(out: Path, name: str, defines: tuple[str, ...] = ()) -> Path:
    """guests/console.S (with -D`defines`) as a bzImage."""
    binary = out / f"{name}.bin"
    run(["gcc", "-nostdlib", "-static", "-no-pie", "-I", ROOT / "native" / "guests",
         *(f"-D{d}" for d in defines),
         "-Wl,--build-id=none", "-Wl,--oformat=binary", f"-Wl,-Ttext=0x{KERNEL_ADDR:x}",
         "-Wl,-e,start", "-o", binary, GUESTS_SRC / "console.S"],
        what=f"building the console test guest ({name})")  # fmt: skip
    kernel = out / name
    kernel.write_bytes(make_bzimage(binary.read_bytes()))
    return kernel


@pytest.fixture(scope="session")
def test_guest_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """kernel (the console guest as a bzImage), nokbd_kernel (the same, never
    reading its keyboard: it ignores Ctrl-Alt-Delete), initrd and root disk."""
    out = tmp_path_factory.mktemp("vm-template-files")
    kernel = build_console_guest(out, "vmlinuz")
    nokbd_kernel = build_console_guest(out, "vmlinuz-nokbd", ("NO_KEYBOARD",))
    initrd = out / "initrd.img"
    initrd.write_bytes(b"070701" + b"0" * 504)  # content is not read by the guest
    disk = out / "root.img"
    with disk.open("wb") as f:
        f.truncate(4 << 20)
    return {"kernel": kernel, "nokbd_kernel": nokbd_kernel, "initrd": initrd, "disk": disk}


@pytest.fixture(scope="session")
def ct_tarball(build_cache: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """image_recipes/ct-debian.toml built by the recipe engine (once a session)."""
    require_root()
    out = tmp_path_factory.mktemp("ct-template")
    result = engine.build("ct-debian", outdir=out, cache_dir=build_cache)
    return next(p.path for p in result.products if p.type == "tar")


def add_templates(paths: HostPaths, files: dict[str, Path], ct: Path | None) -> None:
    templates.add_vm_template(paths, "testguest", files["kernel"], initrd=files["initrd"],
                              disk=files["disk"], cmdline="console=ttyS0 test=1",
                              description="tiny console test guest")
    if ct is not None:
        templates.add_ct_template(paths, "debian", ct)


def cleanup_guests(host: Host) -> None:
    """Stop and delete every guest a test left behind (real processes, LXC)."""
    for g in host.list_guests():
        if g.status == "running":
            host.stop(g.config.id)
        host.delete(g.config.id)


@pytest.fixture
def paths(tmp_path: Path) -> HostPaths:
    return HostPaths(etc=tmp_path / "etc", state=tmp_path / "state")


@pytest.fixture
def vm_host(paths: HostPaths, test_guest_files: dict[str, Path]) -> Iterator[Host]:
    host = Host(paths)
    add_templates(paths, test_guest_files, None)
    yield host
    cleanup_guests(host)


@pytest.fixture
def full_host(paths: HostPaths, test_guest_files: dict[str, Path],
              ct_tarball: Path) -> Iterator[Host]:
    host = Host(paths)
    add_templates(paths, test_guest_files, ct_tarball)
    yield host
    cleanup_guests(host)
    shutil.rmtree(paths.lxc, ignore_errors=True)


def lxc_ls(paths: HostPaths) -> str:
    return subprocess.run(["lxc-ls", "-P", str(paths.lxc), "-f"], capture_output=True,
                          text=True).stdout
