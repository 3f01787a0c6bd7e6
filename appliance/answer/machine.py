"""What the resolver knows about a machine: its disks and NICs with their udev
properties, what DHCP gave the live system, and whether it has VT-x/AMD-V.

Three ways to get one:
- `Machine.from_files(udev_json, info_json)`: Proxmox's `run-env-udev.json`
  (or `appliance device-info` output) and `run-env-info.json` shapes;
- `this_machine()`: the running system, through appliance.hw (disks, NICs,
  verdict) and `ip`/`/etc/resolv.conf` (addresses, routes, DNS);
- `this_machine(recorded=DIR)`: a recorded machine (tests/data/hw/machines),
  its udev side replayed by `umockdev-run`; it has no network state.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from appliance.errors import AnswerError, ToolError


@dataclass(frozen=True)
class MachineDisk:
    """index: key in the udev data; size_bytes None when the data has no size;
    in_use: why the disk is busy now (mounted, RAID/LVM member, swap), or None."""

    index: str
    devnode: str
    size_bytes: int | None
    model: str | None
    logical_block_size: int
    properties: Mapping[str, str] = field(repr=False, default_factory=dict)
    in_use: str | None = None

    @property
    def name(self) -> str:
        return self.devnode.rsplit("/", 1)[-1]


@dataclass(frozen=True)
class MachineNic:
    """addresses: "ADDRESS/PREFIX" strings; index: the kernel's ifindex;
    pinned_id: the number a pinned name `nic<N>` uses."""

    name: str
    mac: str | None
    index: int | None = None
    pinned_id: str | None = None
    state: str | None = None
    driver: str | None = None
    addresses: tuple[str, ...] = ()
    properties: Mapping[str, str] = field(repr=False, default_factory=dict)


@dataclass(frozen=True)
class Gateway:
    dev: str
    gateway: str


@dataclass(frozen=True)
class Machine:
    """A machine as the resolver sees it (see the module doc).

    dhcp_hostname / dhcp_domain: what the live system's DHCP lease gave
    dns_servers: the live system's resolvers; gateway4/6: its default routes
    hvm_supported: usable VT-x/AMD-V (None: unknown)
    default_zfs_arc_max: the installer's ARC default for this RAM (MiB)
    """

    disks: tuple[MachineDisk, ...]
    nics: tuple[MachineNic, ...]
    dhcp_hostname: str | None = None
    dhcp_domain: str | None = None
    dns_servers: tuple[str, ...] = ()
    gateway4: Gateway | None = None
    gateway6: Gateway | None = None
    hvm_supported: bool | None = None
    hvm_verdict: str | None = None
    boot_type: str | None = None
    default_zfs_arc_max: int | None = None
    description: str = "this machine"

    @staticmethod
    def from_files(
        udev_json: str | os.PathLike[str] | None = None,
        info_json: str | os.PathLike[str] | None = None,
    ) -> Machine:
        udev = _read_json(udev_json, ("disks", "nics")) if udev_json else {}
        info = _read_json(info_json, ("disks", "network")) if info_json else {}
        what = " + ".join(os.fspath(p) for p in (udev_json, info_json) if p)
        return from_data(udev, info, what or "no machine data")


def _read_json(path: str | os.PathLike[str], want: tuple[str, ...]) -> dict[str, Any]:
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise AnswerError(f"{os.fspath(path)}: cannot read machine data: {e}") from e
    if not isinstance(data, dict) or not any(k in data for k in want):
        raise AnswerError(f"{os.fspath(path)}: not machine data (expected a JSON object with "
                          f"{' or '.join(want)})")
    return data


def _str_props(props: Any) -> dict[str, str]:
    return {str(k): str(v) for k, v in props.items()} if isinstance(props, Mapping) else {}


def from_data(udev: Mapping[str, Any], info: Mapping[str, Any], what: str) -> Machine:
    """Build a Machine from Proxmox-shaped udev and run-env data (either may be
    empty). Info disks are `[index, devnode, size in 512-byte blocks, model,
    logical block size, syspath]`; their udev properties are found by index,
    or by DEVNAME when the index points at another device."""
    udev_disks: dict[str, dict[str, str]] = {
        str(k): _str_props(v) for k, v in (udev.get("disks") or {}).items()}
    udev_nics: dict[str, dict[str, str]] = {
        str(k): _str_props(v) for k, v in (udev.get("nics") or {}).items()}
    by_devname = {p.get("DEVNAME"): p for p in udev_disks.values() if p.get("DEVNAME")}

    disks: list[MachineDisk] = []
    if info.get("disks"):
        for row in info["disks"]:
            try:
                index, devnode, blocks, model, lbs = (str(row[0]), str(row[1]), int(row[2]),
                                                      row[3], int(row[4] or 512))
            except (IndexError, TypeError, ValueError) as e:
                raise AnswerError(f"{what}: bad disk entry {row!r}: {e}") from e
            props = udev_disks.get(index, {})
            if props.get("DEVNAME", devnode) != devnode:
                props = by_devname.get(devnode, {})
            disks.append(MachineDisk(index, devnode, blocks * 512, model or None, lbs, props))
    else:
        for index, props in udev_disks.items():
            devnode = props.get("DEVNAME") or f"/dev/{index}"
            disks.append(MachineDisk(index, devnode, None, props.get("ID_MODEL"), 512, props))
    disks.sort(key=lambda d: _index_key(d.index))

    net = info.get("network") or {}
    ifaces: Mapping[str, Any] = net.get("interfaces") or {}
    nics: list[MachineNic] = []
    for name in sorted(set(ifaces) | set(udev_nics)):
        i = ifaces.get(name) or {}
        addrs = tuple(f"{a['address']}/{a['prefix']}" for a in i.get("addresses") or []
                      if "address" in a and "prefix" in a)
        mac = i.get("mac") or _mac_from_props(udev_nics.get(name, {}))
        nics.append(MachineNic(
            name=name,
            mac=mac.lower() if mac else None,
            index=i.get("index"),
            pinned_id=str(i["pinned_id"]) if i.get("pinned_id") is not None else None,
            state=i.get("state"),
            driver=i.get("driver"),
            addresses=addrs,
            properties=udev_nics.get(name, {}),
        ))
    routes = net.get("routes") or {}
    dns = net.get("dns") or {}

    def gw(key: str) -> Gateway | None:
        r = routes.get(key)
        return Gateway(str(r["dev"]), str(r["gateway"])) if r else None

    hvm = info.get("hvm_supported")
    return Machine(
        disks=tuple(disks),
        nics=tuple(nics),
        dhcp_hostname=net.get("hostname") or None,
        dhcp_domain=dns.get("domain") or None,
        dns_servers=tuple(str(s) for s in dns.get("dns") or []),
        gateway4=gw("gateway4"),
        gateway6=gw("gateway6"),
        hvm_supported=None if hvm is None else bool(hvm),
        boot_type=info.get("boot_type"),
        default_zfs_arc_max=info.get("default_zfs_arc_max"),
        description=what,
    )


def _index_key(index: str) -> tuple[int, str]:
    return (int(index), "") if index.isdigit() else (1 << 30, index)


def _mac_from_props(props: Mapping[str, str]) -> str | None:
    """udev's ID_NET_NAME_MAC is `enx` + the MAC's 12 hex digits."""
    name = props.get("ID_NET_NAME_MAC", "")
    if len(name) == 15 and name.startswith("enx"):
        h = name[3:]
        return ":".join(h[i:i + 2] for i in range(0, 12, 2))
    return None


# --- this machine ---------------------------------------------------------------------


def this_machine(recorded: str | None = None) -> Machine:
    """The running system (or a recorded one): disks and NICs through
    appliance.hw, the VT-x/AMD-V verdict from `detect`, and the live network
    (addresses, default routes, resolvers, host name) from `ip` and
    /etc/resolv.conf. A recorded machine carries no network state."""
    from appliance.hw import commands as hw_commands

    # answers need disks, NICs and the verdict, never a VM: no KVM_CREATE_VM
    report = hw_commands.detect(recorded, create_vm=False)
    inv = report.inventory
    assert inv is not None  # detect() lists the inventory unless told not to
    disks = tuple(
        MachineDisk(str(i), d.devnode, d.size_bytes, d.model, d.logical_block_size,
                    dict(d.properties), _in_use(d.mountpoints, d.holders, d.swap))
        for i, d in enumerate(inv.install_targets)
    )
    live = _live_network(Path("/")) if recorded is None else {}
    addrs: Mapping[str, Any] = live.get("addresses", {})
    nics = []
    for pin, n in enumerate(sorted(inv.nics, key=lambda n: (addrs.get(n.name, {}).get(
            "index", 1 << 30), n.name))):
        a = addrs.get(n.name, {})
        nics.append(MachineNic(
            name=n.name, mac=n.mac.lower() if n.mac else None, index=a.get("index"),
            pinned_id=str(pin), state=n.operstate, driver=n.driver,
            addresses=tuple(a.get("cidrs", ())), properties=dict(n.properties)))
    nics.sort(key=lambda n: n.name)
    return Machine(
        disks=disks,
        nics=tuple(nics),
        dhcp_hostname=live.get("hostname"),
        dhcp_domain=live.get("domain"),
        dns_servers=tuple(live.get("dns", ())),
        gateway4=live.get("gateway4"),
        gateway6=live.get("gateway6"),
        hvm_supported=report.accelerated,
        hvm_verdict=report.verdict,
        boot_type=None if recorded else ("efi" if Path("/sys/firmware/efi").is_dir() else "bios"),
        description=f"recorded machine {recorded}" if recorded else "this machine",
    )


def _in_use(mountpoints: list[str], holders: list[str], swap: bool) -> str | None:
    why = [f"mounted at {', '.join(mountpoints)}"] if mountpoints else []
    why += [f"member of {', '.join(holders)}"] if holders else []
    why += ["swap"] if swap else []
    return "; ".join(why) or None


def _live_network(root: Path) -> dict[str, Any]:
    """Addresses, default routes, resolvers and the DHCP lease's host name and
    domain of the running system (`root` prefixes the files read)."""
    from appliance import runner

    out: dict[str, Any] = {}
    addresses: dict[str, dict[str, Any]] = {}
    try:
        links = json.loads(runner.run(["ip", "-j", "addr", "show"], capture=True,
                                      what="ip addr").stdout or b"[]")
        for link in links:
            addresses[link["ifname"]] = {
                "index": link.get("ifindex"),
                "cidrs": [f"{a['local']}/{a['prefixlen']}" for a in link.get("addr_info", [])
                          if a.get("family") in ("inet", "inet6") and a.get("scope") == "global"],
            }
        for family, key in (("-4", "gateway4"), ("-6", "gateway6")):
            routes = json.loads(runner.run(["ip", "-j", family, "route", "show", "default"],
                                           capture=True, what="ip route").stdout or b"[]")
            if routes and routes[0].get("gateway") and routes[0].get("dev"):
                out[key] = Gateway(routes[0]["dev"], routes[0]["gateway"])
    except (ToolError, OSError, ValueError, KeyError, TypeError):
        pass  # no `ip`, or odd output: the plan falls back to the defaults
    out["addresses"] = addresses
    dns: list[str] = []
    try:
        for line in (root / "etc/resolv.conf").read_text().splitlines():
            words = line.split()
            if len(words) >= 2 and words[0] == "nameserver":
                dns.append(words[1])
            elif len(words) >= 2 and words[0] in ("domain", "search"):
                out.setdefault("domain", words[1])
    except OSError:
        pass
    out["dns"] = dns
    index_to_name = {a["index"]: name for name, a in addresses.items()}
    leases = read_dhcp_leases(root, index_to_name)
    gw = out.get("gateway4") or out.get("gateway6")
    lease = leases.get(gw.dev) if gw else None
    if lease is None and leases:
        lease = leases[sorted(leases)[0]]
    if lease:  # the lease's domain wins over resolv.conf's search domain
        out.update({k: v for k, v in lease.items() if k in ("hostname", "domain") and v})
    return out


NETWORKD_LEASES = "run/systemd/netif/leases"
DHCLIENT_LEASES = ("var/lib/dhcp", "var/lib/dhclient")


def read_dhcp_leases(root: Path, index_to_name: Mapping[int, str]) -> dict[str, dict[str, str]]:
    """Host name and domain per interface from the DHCP clients' lease files:
    systemd-networkd (`<root>/run/systemd/netif/leases/<ifindex>`, KEY=value)
    and ISC dhclient (`<root>/var/lib/dhcp/*.leases`, the newest `lease {}`
    block per interface). The kernel host name is not used: a live system
    sets its own, which says nothing about this machine."""
    out: dict[str, dict[str, str]] = {}
    netd = root / NETWORKD_LEASES
    for path in sorted(netd.iterdir()) if netd.is_dir() else []:
        try:
            fields = dict(line.split("=", 1) for line in path.read_text().splitlines()
                          if "=" in line and not line.startswith("#"))
        except OSError:
            continue
        name = index_to_name.get(int(path.name)) if path.name.isdigit() else None
        if name:
            out[name] = {"hostname": fields.get("HOSTNAME", ""),
                         "domain": fields.get("DOMAINNAME", "")}
    for d in DHCLIENT_LEASES:
        folder = root / d
        for path in sorted(folder.glob("*.leases")) if folder.is_dir() else []:
            try:
                text = path.read_text()
            except OSError:
                continue
            for block in re.findall(r"lease\s*\{(.*?)\}", text, re.S):
                iface = re.search(r'interface\s+"([^"]+)"', block)
                host = re.search(r'option\s+host-name\s+"([^"]*)"', block)
                domain = re.search(r'option\s+domain-name\s+"([^"]*)"', block)
                if iface:
                    out[iface.group(1)] = {"hostname": host.group(1) if host else "",
                                           "domain": (domain.group(1).split() or [""])[0]
                                           if domain else ""}
    return out
