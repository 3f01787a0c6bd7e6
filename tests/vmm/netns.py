"""Throw-away network namespaces for the virtio-net tests: a bridge and a
TAP inside a namespace the test creates and removes, so no frame can
leave the machine."""

from __future__ import annotations

import contextlib
import ctypes
import os
import subprocess
from collections.abc import Iterator

CLONE_NEWNET = 0x40000000
_libc = ctypes.CDLL(None, use_errno=True)


def ip(*args: str, ns: str | None = None) -> None:
    cmd = ["ip", *(["-n", ns] if ns else []), *args]
    subprocess.run(cmd, check=True, capture_output=True)


@contextlib.contextmanager
def netns(name: str) -> Iterator[str]:
    ip("netns", "add", name)
    try:
        ip("link", "set", "lo", "up", ns=name)
        yield name
    finally:
        subprocess.run(["ip", "netns", "del", name], check=False, capture_output=True)


@contextlib.contextmanager
def inside(name: str) -> Iterator[None]:
    """Run this thread inside the namespace (TAPs are looked up there)."""
    own = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
    target = os.open(f"/run/netns/{name}", os.O_RDONLY)
    try:
        if _libc.setns(target, CLONE_NEWNET) != 0:
            raise OSError(ctypes.get_errno(), "setns")
        try:
            yield
        finally:
            if _libc.setns(own, CLONE_NEWNET) != 0:
                raise OSError(ctypes.get_errno(), "setns back")
    finally:
        os.close(own)
        os.close(target)


def bridge_with_tap(ns: str, bridge: str = "br0", tap: str = "tap0") -> None:
    # no IPv6 on the new links: their router solicitations and MLD reports
    # would be the frames a test's guest receives instead of the test's own
    sysctl = ["sysctl", "-q", "-w", "net.ipv6.conf.default.disable_ipv6=1",
              "net.ipv6.conf.all.disable_ipv6=1"]  # fmt: skip
    subprocess.run(["ip", "netns", "exec", ns, *sysctl], check=True, capture_output=True)
    ip("link", "add", bridge, "type", "bridge", ns=ns)
    ip("tuntap", "add", "dev", tap, "mode", "tap", ns=ns)
    ip("link", "set", tap, "master", bridge, ns=ns)
    ip("link", "set", bridge, "up", ns=ns)
    ip("link", "set", tap, "up", ns=ns)


def wait_carrier(ns: str, dev: str, timeout: float = 10.0) -> None:
    """Wait until `dev` has carrier and a real qdisc: the kernel activates a
    link asynchronously (linkwatch) and drops what is sent before that."""
    import time

    deadline = time.monotonic() + timeout
    while True:
        out = subprocess.run(["ip", "-n", ns, "link", "show", dev], check=True,
                             capture_output=True, text=True).stdout  # fmt: skip
        if "LOWER_UP" in out and "qdisc noop" not in out:
            return
        if time.monotonic() > deadline:
            raise TimeoutError(f"{dev} in {ns} has no carrier: {out}")
        time.sleep(0.05)
