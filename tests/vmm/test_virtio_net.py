"""virtio-net over a TAP on a bridge inside a test network namespace:
frames from the test guest reach the TAP, frames sent to the TAP reach
the guest's receive buffers."""

from __future__ import annotations

import os
import socket
import struct
import time
from collections.abc import Iterator

import pytest

from appliance.errors import VmmError
from appliance.vmm import EntryMode, ExitStatus, Machine, MachineConfig
from appliance.vmm.net import check_tap, default_mac, parse_net
from tests.vmm.netns import bridge_with_tap, inside, ip, netns, wait_carrier
from tests.vmm.virtio_script import BUF_BASE, DEVCFG, F_WRITE, SCRIPT_ADDR, WAIT16, Driver, Script

GUEST_LOAD = 0x10000
ETHERTYPE = 0x88B5  # IEEE local experimental
MAC = bytes.fromhex("525400abcdef")
HOST_MAC = bytes.fromhex("020000000001")
F_MAC = 1 << 5
ETH_P_ALL = 3
RX_BUFS = 4


@pytest.fixture
def ns() -> Iterator[str]:
    with netns(f"vtest{os.getpid()}") as name:
        bridge_with_tap(name)
        yield name


def frame(dst: bytes, src: bytes, payload: bytes) -> bytes:
    return (dst + src + struct.pack(">H", ETHERTYPE) + payload).ljust(60, b"\0")


def test_frames_cross_the_tap_both_ways(guests: dict[str, bytes], ns: str) -> None:
    out_frame = frame(b"\xff" * 6, MAC, b"hello from the guest")
    in_frame = frame(MAC, HOST_MAC, b"hello from the host")
    s = Script()
    d = Driver(s, 1)
    d.probe()
    feats = d.init(F_MAC)
    rxq = d.setup_queue(0, 16)
    txq = d.setup_queue(1, 16)
    mac = [s.read8(d.bar + DEVCFG + i) for i in range(6)]
    d.driver_ok()
    rx_buf = BUF_BASE
    tx_buf = BUF_BASE + 0x8000
    s.mem.append((tx_buf, bytes(12) + out_frame))
    # RX_BUFS receive buffers, and the host sends its frame RX_BUFS times: the
    # kernel may put a frame of its own into the new TAP first (seen: a
    # 54-byte one), so the test looks for its frame among all of them
    for i in range(RX_BUFS):
        d.descriptors(rxq, i, [(rx_buf + 0x800 * i, 12 + 1514, F_WRITE)])
        d.post(rxq, i, notify=i == RX_BUFS - 1)
    d.descriptors(txq, 0, [(tx_buf, 12 + len(out_frame), 0)])
    d.post(txq, 0)
    s.op(WAIT16, rxq.used + 2, RX_BUFS, 20_000_000)  # every buffer got a frame
    s.end(0)

    with inside(ns):
        # ETH_P_ALL: a socket for one protocol on a bridge port sees nothing
        # (the bridge takes the frame first); ETH_P_ALL taps see it before
        sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
    # the vCPU threads run under seccomp: transmit and interrupts still work
    with sock, Machine(MachineConfig(memory_mib=64, seccomp=True)) as vm:
        sock.bind(("tap0", 0))
        with inside(ns):
            vm.add_net("tap0", MAC)
        wait_carrier(ns, "tap0")
        for _ in range(RX_BUFS):
            sock.send(in_frame)  # waits in the TAP until the guest posts buffers
        vm.load_raw(GUEST_LOAD, guests["script"])
        for gpa, data in s.mem:
            vm.load_raw(gpa, data)
        vm.load_raw(SCRIPT_ADDR, s.image())
        vm.set_entry(EntryMode.PROT32, GUEST_LOAD)
        result = vm.run(timeout=90)
        assert result.status is ExitStatus.POWERED_OFF and result.exit_code == 0, result
        assert bytes(vm.read_memory(a, 1)[0] for a in mac) == MAC
        assert struct.unpack("<I", vm.read_memory(feats["features_lo"], 4))[0] & F_MAC
        ours = []
        for k in range(RX_BUFS):
            head, used_len = struct.unpack("<II", vm.read_memory(rxq.used + 4 + 8 * k, 8))
            buf = vm.read_memory(rx_buf + 0x800 * head, used_len)
            assert buf[10:12] == b"\x01\x00"  # num_buffers
            if buf[12:] == in_frame:
                ours.append(head)
        assert ours, "the host's frame is in none of the receive buffers"
        dev = vm.devices()[0]
        assert dev.kind == "net" and dev.errors == 0, dev
        assert dev.requests == RX_BUFS + 1 and dev.interrupts >= 1, dev
        assert dev.bytes_written == len(out_frame), dev
        sock.settimeout(5)
        deadline = time.monotonic() + 5
        seen = []
        while time.monotonic() < deadline:
            data, addr = sock.recvfrom(2048)
            if addr[2] != socket.PACKET_OUTGOING:
                seen.append(data)
                if data[: len(out_frame)] == out_frame:
                    break
        assert any(f[: len(out_frame)] == out_frame for f in seen), seen


def test_missing_tap_is_a_clear_error(ns: str) -> None:
    with inside(ns), Machine(MachineConfig(memory_mib=16)) as vm:
        with pytest.raises(VmmError, match="TAP nosuch0 does not exist"):
            vm.add_net("nosuch0", MAC)
        with pytest.raises(VmmError, match="br0 is not a TAP interface"):
            vm.add_net("br0", MAC)


def test_tap_must_be_on_a_bridge(ns: str) -> None:
    ip("tuntap", "add", "dev", "tap9", "mode", "tap", ns=ns)

    def judge(tap: str) -> str:
        try:
            with inside(ns):
                return check_tap(tap)
        except VmmError as e:
            return f"error: {e}"

    assert judge("tap0") == "br0"
    assert "not attached to a bridge" in judge("tap9")
    assert "does not exist" in judge("nosuch0")
    assert "not a TAP" in judge("br0")
    assert "not a TAP" in judge("lo")


def test_net_spec_parses_tap_and_mac() -> None:
    # The default MAC is derived from the TAP name (a guest keeps its DHCP
    # lease across restarts): these are the recorded values, sha256-based,
    # one per name, in QEMU's locally administered 52:54:00 prefix.
    assert parse_net("tap0").tap == "tap0"
    assert parse_net("tap0").mac_text == "52:54:00:79:4e:7c"
    assert parse_net("tap1").mac_text == "52:54:00:dc:63:4a"
    assert parse_net("vm100i0").mac == bytes.fromhex("525400b2d286") == default_mac("vm100i0")
    spec = parse_net("tap1,mac=52:54:00:12:34:56")
    assert spec.tap == "tap1" and spec.mac_text == "52:54:00:12:34:56"
    with pytest.raises(VmmError, match="six hex bytes"):
        parse_net("tap1,mac=52:54")
    with pytest.raises(VmmError, match="multicast"):
        parse_net("tap1,mac=01:00:00:00:00:01")
    with pytest.raises(VmmError, match="unknown option"):
        parse_net("tap1,speed=10")


@pytest.mark.parametrize("kind", ["writable-tx", "outside-ram", "loop"])
def test_malformed_transmit_breaks_the_nic_not_the_monitor(
    guests: dict[str, bytes], ns: str, kind: str
) -> None:
    s = Script()
    d = Driver(s, 1)
    d.probe()
    d.init(F_MAC)
    d.setup_queue(0, 16)
    txq = d.setup_queue(1, 16)
    d.driver_ok()
    buf = BUF_BASE
    s.mem.append((buf, bytes(12) + frame(b"\xff" * 6, MAC, b"bad")))
    if kind == "writable-tx":
        d.descriptors(txq, 0, [(buf, 72, F_WRITE)])
    elif kind == "outside-ram":
        d.descriptors(txq, 0, [(buf, 12, 0), (0x7_0000_0000, 60, 0)])
    else:
        d.raw_descriptor(txq, 0, buf, 12, 1, 1)
        d.raw_descriptor(txq, 1, buf + 12, 60, 1, 0)
    d.post(txq, 0)
    status = s.read8(d.bar + 0x14)
    s.end(0)
    with inside(ns):
        sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
    with sock, Machine(MachineConfig(memory_mib=64)) as vm:
        sock.bind(("tap0", 0))
        with inside(ns):
            vm.add_net("tap0", MAC)
        vm.load_raw(GUEST_LOAD, guests["script"])
        for gpa, data in s.mem:
            vm.load_raw(gpa, data)
        vm.load_raw(SCRIPT_ADDR, s.image())
        vm.set_entry(EntryMode.PROT32, GUEST_LOAD)
        result = vm.run(timeout=60)
        assert result.status is ExitStatus.POWERED_OFF and result.exit_code == 0, result
        assert vm.read_memory(status, 1)[0] & 0x40  # DEVICE_NEEDS_RESET
        dev = vm.devices()[0]
        assert dev.errors == 1 and dev.needs_reset and dev.bytes_written == 0, dev
        sock.settimeout(0.5)
        with pytest.raises(TimeoutError, match="timed out"):
            while True:  # nothing from the guest reached the TAP
                data, addr = sock.recvfrom(2048)
                if addr[2] != socket.PACKET_OUTGOING and data[12:14] == b"\x88\xb5":
                    raise AssertionError(f"a frame got through: {data!r}")
