"""Host side of a microVM's network: `--net TAP[,mac=XX:..]` specs and the
checks that the TAP exists and sits on a bridge, so a mistake is a clear
message before the guest starts rather than a guest without network."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

from appliance.errors import VmmError

SYS_NET = Path("/sys/class/net")


@dataclass(frozen=True)
class NetSpec:
    tap: str
    mac: bytes

    @property
    def mac_text(self) -> str:
        return ":".join(f"{b:02x}" for b in self.mac)


def default_mac(tap: str) -> bytes:
    """A locally administered MAC derived from the TAP name (no randomness)."""
    return bytes([0x52, 0x54, 0x00]) + hashlib.sha256(tap.encode()).digest()[:3]


def parse_mac(text: str) -> bytes:
    parts = text.split(":")
    try:
        mac = bytes(int(p, 16) for p in parts if len(p) == 2)
    except ValueError:
        mac = b""
    if len(parts) != 6 or len(mac) != 6:
        raise VmmError(f"mac={text}: expected six hex bytes like 52:54:00:12:34:56")
    if mac[0] & 1:
        raise VmmError(f"mac={text}: a multicast address cannot be a NIC's address")
    return mac


def parse_net(spec: str) -> NetSpec:
    """`TAP` or `TAP,mac=52:54:00:12:34:56`."""
    tap, *opts = spec.split(",")
    if not tap:
        raise VmmError(f"--net {spec}: no TAP interface named")
    mac = default_mac(tap)
    for opt in opts:
        key, _, value = opt.partition("=")
        if key != "mac":
            raise VmmError(f"--net {spec}: unknown option {key!r} (known: mac)")
        mac = parse_mac(value)
    return NetSpec(tap, mac)


def check_tap(tap: str, sys_net: Path = SYS_NET) -> str:
    """The bridge `tap` is attached to; VmmError when it is missing, not a
    TAP, or on no bridge."""
    dev = sys_net / tap
    if not dev.exists():
        raise VmmError(
            f"TAP {tap} does not exist: create it (ip tuntap add dev {tap} mode tap) "
            "and attach it to a bridge"
        )
    if not (dev / "tun_flags").exists():
        raise VmmError(f"{tap} is not a TAP interface")
    master = dev / "master"
    if not master.exists() or not (master / "bridge").exists():
        raise VmmError(f"TAP {tap} is not attached to a bridge (ip link set {tap} master BRIDGE)")
    return master.resolve().name
