"""Firmware for QEMU: SeaBIOS (BIOS, QEMU's default) and OVMF (UEFI)."""

from __future__ import annotations

import shutil
from pathlib import Path

from appliance.errors import BootError

FIRMWARES = ("bios", "uefi")
SEABIOS = (Path("/usr/share/seabios/bios-256k.bin"), Path("/usr/share/qemu/bios-256k.bin"))
# (code, vars template) pairs from Debian's ovmf package, preferred first.
OVMF = (
    (Path("/usr/share/OVMF/OVMF_CODE_4M.fd"), Path("/usr/share/OVMF/OVMF_VARS_4M.fd")),
    (Path("/usr/share/OVMF/OVMF_CODE.fd"), Path("/usr/share/OVMF/OVMF_VARS.fd")),
)


def ovmf() -> tuple[Path, Path]:
    for code, vars_ in OVMF:
        if code.is_file() and vars_.is_file():
            return code, vars_
    raise BootError("UEFI firmware not found (/usr/share/OVMF/OVMF_CODE_4M.fd): install "
                    "Debian's ovmf package (deps/apt-packages-boot.txt, ./run setup)")


def check_seabios() -> None:
    if not any(p.is_file() for p in SEABIOS):
        raise BootError("BIOS firmware not found (SeaBIOS bios-256k.bin): install Debian's "
                        "seabios package (pulled in by qemu-system-x86)")


def qemu_args(firmware: str, vars_copy: Path) -> list[str]:
    """QEMU arguments for `firmware`; UEFI gets a private copy of the variable store."""
    if firmware == "bios":
        check_seabios()
        return []
    if firmware == "uefi":
        code, vars_template = ovmf()
        shutil.copyfile(vars_template, vars_copy)
        return [
            "-drive", f"if=pflash,format=raw,unit=0,readonly=on,file={code}",
            "-drive", f"if=pflash,format=raw,unit=1,file={vars_copy}",
        ]
    raise BootError(f"unknown firmware {firmware!r} (known: {', '.join(FIRMWARES)})")
