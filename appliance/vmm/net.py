"""Host side of a microVM's network: `--net TAP[,mac=XX:..]` specs and the
checks that the TAP exists and sits on a bridge, so a mistake is a clear
message before the guest starts rather than a guest without network."""

from __future__ import annotations

import hashlib
import socket
import struct
from dataclasses import dataclass

from appliance.errors import VmmError


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


# rtnetlink (linux/rtnetlink.h, linux/if_link.h)
RTM_NEWLINK, RTM_GETLINK = 16, 18
NLM_F_REQUEST = 1
NLMSG_ERROR = 2
IFLA_MASTER, IFLA_LINKINFO, IFLA_INFO_KIND = 10, 18, 1


@dataclass(frozen=True)
class LinkInfo:
    name: str
    kind: str  # "tun", "bridge", "veth", "" for a plain device
    master: int  # ifindex of the bridge (or bond) it is attached to; 0 = none


def _attrs(data: bytes) -> dict[int, bytes]:
    out: dict[int, bytes] = {}
    while len(data) >= 4:
        length, kind = struct.unpack_from("<HH", data)
        if length < 4:
            break
        out[kind & 0x3FFF] = data[4:length]
        data = data[(length + 3) & ~3 :]
    return out


def link_info(name: str) -> LinkInfo | None:
    """The interface `name` in this thread's network namespace (rtnetlink, so
    it is right even where /sys belongs to another namespace), or None."""
    try:
        index = socket.if_nametoindex(name)
    except OSError:
        return None
    with socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, socket.NETLINK_ROUTE) as nl:
        ifinfo = struct.pack("<BxHiII", socket.AF_UNSPEC, 0, index, 0, 0)
        nl.send(struct.pack("<IHHII", 16 + len(ifinfo), RTM_GETLINK, NLM_F_REQUEST, 1, 0) + ifinfo)
        reply = nl.recv(65536)
    length, kind = struct.unpack_from("<IH", reply)
    if kind != RTM_NEWLINK:
        return None
    attrs = _attrs(reply[16 + 16 : length])
    master = struct.unpack("<I", attrs[IFLA_MASTER])[0] if IFLA_MASTER in attrs else 0
    link_kind = _attrs(attrs.get(IFLA_LINKINFO, b"")).get(IFLA_INFO_KIND, b"")
    return LinkInfo(name, link_kind.rstrip(b"\0").decode(), master)


def check_tap(tap: str) -> str:
    """The bridge `tap` is attached to; VmmError when it is missing, not a
    TAP, or on no bridge."""
    info = link_info(tap)
    if info is None:
        raise VmmError(
            f"TAP {tap} does not exist: create it (ip tuntap add dev {tap} mode tap) "
            "and attach it to a bridge"
        )
    if info.kind != "tun":
        raise VmmError(f"{tap} is not a TAP interface")
    bridge = socket.if_indextoname(info.master) if info.master else ""
    master = link_info(bridge) if bridge else None
    if master is None or master.kind != "bridge":
        raise VmmError(f"TAP {tap} is not attached to a bridge (ip link set {tap} master BRIDGE)")
    return bridge
