"""The Linux boot protocol, checked against Debian's real kernel image.

The kernel cannot boot at a usable speed on this machine's PVM-backed KVM,
so these tests check what the loader put where, byte by byte, against an
independent reading of the file."""

from __future__ import annotations

import re
import struct
from pathlib import Path

import pytest

from appliance.errors import VmmError
from appliance.vmm import EntryMode, ExitStatus, Machine, MachineConfig

MIB = 2**20


def header(kernel: bytes) -> dict[str, int]:
    """The setup header fields, read straight from the file (boot.rst offsets)."""

    def u(fmt: str, off: int) -> int:
        return int(struct.unpack_from("<" + fmt, kernel, off)[0])

    return {
        "setup_sects": u("B", 0x1F1) or 4,
        "boot_flag": u("H", 0x1FE),
        "jump_end": 0x202 + u("B", 0x201),
        "version": u("H", 0x206),
        "loadflags": u("B", 0x211),
        "initrd_addr_max": u("I", 0x22C),
        "kernel_alignment": u("I", 0x230),
        "xloadflags": u("H", 0x236),
        "cmdline_size": u("I", 0x238),
        "pref_address": u("Q", 0x258),
        "init_size": u("I", 0x260),
    }


@pytest.fixture(scope="module")
def kernel_bytes(debian_kernel: Path) -> bytes:
    return debian_kernel.read_bytes()


def test_boot_info_matches_the_setup_header(debian_kernel: Path, kernel_bytes: bytes) -> None:
    h = header(kernel_bytes)
    assert kernel_bytes[0x202:0x206] == b"HdrS" and h["boot_flag"] == 0xAA55
    with Machine(MachineConfig(memory_mib=256)) as vm:
        info = vm.load_linux(debian_kernel, cmdline="console=ttyS0")
    assert info.protocol == f"{h['version'] >> 8}.{h['version'] & 0xFF:02d}"
    assert h["version"] >= 0x020F  # bookworm's kernel speaks 2.15
    assert info.setup_sects == h["setup_sects"]
    assert info.initrd_addr_max == h["initrd_addr_max"]
    assert info.kernel_alignment == h["kernel_alignment"]
    assert info.cmdline_size == h["cmdline_size"]
    assert info.pref_address == h["pref_address"]
    assert info.init_size == h["init_size"]
    assert info.xloadflags == h["xloadflags"]
    assert info.kernel_size == len(kernel_bytes) - (h["setup_sects"] + 1) * 512


def test_protected_mode_kernel_is_loaded_at_1_mib(debian_kernel: Path, kernel_bytes: bytes) -> None:
    payload = kernel_bytes[(header(kernel_bytes)["setup_sects"] + 1) * 512 :]
    with Machine(MachineConfig(memory_mib=256)) as vm:
        info = vm.load_linux(debian_kernel)
        assert info.kernel_addr == 0x100000
        assert vm.read_memory(0x100000, len(payload)) == payload


def test_64_bit_entry_when_the_kernel_offers_it(debian_kernel: Path) -> None:
    with Machine(MachineConfig(memory_mib=256)) as vm:
        info = vm.load_linux(debian_kernel)
    assert info.xloadflags & 1  # XLF_KERNEL_64
    assert info.entry_mode is EntryMode.LONG64
    assert info.entry == 0x100000 + 0x200


def test_32_bit_entry_on_request(debian_kernel: Path) -> None:
    with Machine(MachineConfig(memory_mib=256)) as vm:
        info = vm.load_linux(debian_kernel, prefer_64=False)
    assert info.entry_mode is EntryMode.PROT32
    assert info.entry == 0x100000


def test_zero_page_holds_header_cmdline_initrd_and_e820(
    debian_kernel: Path, kernel_bytes: bytes
) -> None:
    h = header(kernel_bytes)
    initrd = bytes(range(256)) * 4096 + b"tail"  # 1 MiB + 4 bytes
    cmdline = "console=ttyS0 reboot=k panic=-1 quiet"
    with Machine(MachineConfig(memory_mib=512)) as vm:
        info = vm.load_linux(debian_kernel, initrd=initrd, cmdline=cmdline)
        zp = vm.read_memory(info.zero_page, 4096)
        got_cmdline = vm.read_memory(info.cmdline_addr, len(cmdline) + 1)
        got_initrd = vm.read_memory(info.initrd_addr, len(initrd))

    def u32(off: int) -> int:
        return int(struct.unpack_from("<I", zp, off)[0])

    # the header is the kernel's own, with only the loader's fields changed
    changed = {0x1FA, 0x1FB, 0x210, 0x211, 0x224, 0x225} | set(range(0x214, 0x220))
    changed |= set(range(0x228, 0x22C))
    for off in range(0x1F1, h["jump_end"]):
        if off not in changed:
            assert zp[off] == kernel_bytes[off], f"zero page byte 0x{off:x}"
    assert struct.unpack_from("<H", zp, 0x1FA)[0] == 0xFFFF  # vid_mode normal
    assert zp[0x210] == 0xFF  # type_of_loader: undefined
    assert zp[0x211] == h["loadflags"] | 0x80  # CAN_USE_HEAP
    assert u32(0x214) == 0x100000  # code32_start
    assert u32(0x218) == info.initrd_addr  # ramdisk_image
    assert u32(0x21C) == len(initrd)  # ramdisk_size
    assert u32(0x228) == info.cmdline_addr  # cmd_line_ptr
    assert got_cmdline == cmdline.encode() + b"\0"
    assert got_initrd == initrd
    n = zp[0x1E8]
    e820 = [struct.unpack_from("<QQI", zp, 0x2D0 + 20 * i) for i in range(n)]
    assert e820 == [(e.addr, e.size, e.type) for e in info.e820]
    assert e820[-1] == (0x100000, 511 * MIB, 1)


def test_initrd_is_placed_page_aligned_at_the_top_of_low_ram(debian_kernel: Path) -> None:
    initrd = b"\x5a" * (3 * MIB + 123)
    with Machine(MachineConfig(memory_mib=512)) as vm:
        info = vm.load_linux(debian_kernel, initrd=initrd)
    assert info.initrd_addr % 4096 == 0
    assert info.initrd_addr + len(initrd) <= 512 * MIB
    assert 512 * MIB - (info.initrd_addr + len(initrd)) < 4096
    assert info.initrd_addr >= 0x100000 + info.init_size


def test_initrd_stays_below_initrd_addr_max(debian_kernel: Path) -> None:
    # 4 GiB of RAM: low RAM ends at 3 GiB, initrd_addr_max is 2 GiB - 1
    with Machine(MachineConfig(memory_mib=4096)) as vm:
        info = vm.load_linux(debian_kernel, initrd=b"x" * 8192)
    assert info.initrd_addr + info.initrd_size <= info.initrd_addr_max + 1
    assert info.initrd_addr == info.initrd_addr_max + 1 - 8192


def test_real_kernel_enters_and_runs_until_killed(debian_kernel: Path) -> None:
    # It cannot boot at PVM speed, but entering it must not fail or crash.
    with Machine(MachineConfig(memory_mib=256)) as vm:
        vm.load_linux(debian_kernel, cmdline="console=ttyS0")
        result = vm.run(timeout=1.5)
    assert result.status is ExitStatus.KILLED, result.detail


# -- bad input ----------------------------------------------------------------


@pytest.mark.parametrize(
    "data",
    [b"", b"MZ" + b"\0" * 100, b"\x7fELF" + b"\0" * 4096, b"\0" * 8192],
    ids=["empty", "short", "elf", "zeros"],
)
def test_a_file_that_is_not_a_bzimage_is_rejected(data: bytes) -> None:
    with (
        Machine(MachineConfig(memory_mib=64)) as vm,
        pytest.raises(VmmError, match="not a bzImage"),
    ):
        vm.load_linux(data)


def test_an_old_boot_protocol_is_rejected(kernel_bytes: bytes) -> None:
    old = bytearray(kernel_bytes)
    struct.pack_into("<H", old, 0x206, 0x0204)
    with Machine(MachineConfig(memory_mib=256)) as vm, pytest.raises(VmmError, match="too old"):
        vm.load_linux(bytes(old))


def test_a_truncated_bzimage_is_rejected(kernel_bytes: bytes) -> None:
    with Machine(MachineConfig(memory_mib=256)) as vm, pytest.raises(VmmError, match="setup code"):
        vm.load_linux(kernel_bytes[:2048])


def test_initramfs_too_big_for_the_memory_names_it(debian_kernel: Path, tmp_path: Path) -> None:
    initrd = tmp_path / "big.cpio"
    with initrd.open("wb") as f:
        f.truncate(100 * MIB)
    expected = f"^{re.escape(str(initrd))}: initramfs of 100 MiB does not fit in 128 MiB"
    with Machine(MachineConfig(memory_mib=128)) as vm, pytest.raises(VmmError, match=expected):
        vm.load_linux(debian_kernel, initrd=initrd)


def test_kernel_too_big_for_the_memory(debian_kernel: Path) -> None:
    with Machine(MachineConfig(memory_mib=32)) as vm, pytest.raises(VmmError, match="init_size"):
        vm.load_linux(debian_kernel)


def test_command_line_longer_than_the_kernel_accepts(debian_kernel: Path) -> None:
    with (
        Machine(MachineConfig(memory_mib=256)) as vm,
        pytest.raises(VmmError, match="command line"),
    ):
        vm.load_linux(debian_kernel, cmdline="x" * 5000)


def test_missing_kernel_file(tmp_path: Path) -> None:
    with Machine(MachineConfig(memory_mib=64)) as vm, pytest.raises(VmmError, match="No such file"):
        vm.load_linux(tmp_path / "vmlinuz")


def test_kernel_that_is_not_a_regular_file() -> None:
    with (
        Machine(MachineConfig(memory_mib=64)) as vm,
        pytest.raises(VmmError, match="not a regular file"),
    ):
        vm.load_linux("/dev/null")


def test_files_and_bytes_load_identically(
    debian_kernel: Path, kernel_bytes: bytes, tmp_path: Path
) -> None:
    initrd = b"initramfs!" * 1000
    initrd_file = tmp_path / "initrd.cpio"
    initrd_file.write_bytes(initrd)
    with Machine(MachineConfig(memory_mib=256)) as a, Machine(MachineConfig(memory_mib=256)) as b:
        from_bytes = a.load_linux(kernel_bytes, initrd=initrd, cmdline="x=1")
        from_files = b.load_linux(debian_kernel, initrd=initrd_file, cmdline="x=1")
        assert from_bytes == from_files
        for gpa, n in (
            (from_bytes.zero_page, 4096),
            (from_bytes.kernel_addr, from_bytes.kernel_size),
            (from_bytes.initrd_addr, len(initrd)),
        ):
            assert a.read_memory(gpa, n) == b.read_memory(gpa, n)
