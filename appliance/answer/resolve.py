"""Apply an answer to one machine: `resolve(answer, machine) -> InstallPlan`.

Chooses the target disks (disk-list names, or udev filters matched with
appliance.hw.match), the management NIC and its address (the answer's, or
what DHCP gave the live system, or Proxmox's fallback 192.168.100.2/24),
host name and domain (static, or from DHCP), sizes, and hashes a plain root
password. Anything that cannot work on this machine is an AnswerError that
says why and lists what the machine has.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from typing import Literal

from appliance import runner
from appliance.answer.machine import Machine, MachineDisk, MachineNic
from appliance.answer.model import (
    INSTALLER_SUPPORTED_FILESYSTEMS,
    Answer,
    InstallPlan,
    NetworkPlanSource,
    PlanDisk,
    PlanFirstBoot,
    PlanNetwork,
    PlanStorage,
)
from appliance.answer.parse import (
    MIN_DISK_GIB,
    check_domain,
    check_fqdn,
    check_raid_disks,
    check_swapsize,
    error,
    raid_label,
)
from appliance.errors import AnswerError, HardwareError
from appliance.hw.match import match_devices
from appliance.recipe.schema import OptionError

# Proxmox's addresses when DHCP gave nothing (the GTK installer's defaults).
FALLBACK_CIDR = "192.168.100.2/24"
FALLBACK_GATEWAY = "192.168.100.1"
FALLBACK_DNS = "192.168.100.1"
PIN_PREFIX = "nic"
# udev properties shown for each candidate device in errors.
SHOWN_DISK_PROPS = ("ID_MODEL", "ID_SERIAL", "ID_SERIAL_SHORT", "ID_WWN", "ID_PATH",
                    "ID_BUS")
SHOWN_NIC_PROPS = ("ID_NET_NAME", "ID_NET_NAME_MAC", "ID_NET_NAME_PATH", "ID_NET_DRIVER",
                   "ID_VENDOR_FROM_DATABASE")


def _err(answer: Answer, key: str, reason: str) -> AnswerError:
    """An AnswerError at `key` of the answer file (with its line)."""
    return error(answer.source, answer.text, key, reason)


def resolve(answer: Answer, machine: Machine) -> InstallPlan:
    """The install plan for `answer` on `machine` (raises AnswerError)."""
    g = answer.global_
    warnings: list[str] = []
    if g.require_hardware_virtualization and machine.hvm_supported is not True:
        why = (machine.hvm_verdict or "no usable VT-x/AMD-V") if machine.hvm_supported is False \
            else f"cannot tell whether {machine.description} has VT-x/AMD-V"
        raise _err(answer, "global.require-hardware-virtualization",
                   f"{machine.description} cannot host hardware-accelerated VMs: {why}")
    hostname, domain = _fqdn(answer, machine)
    network = _network(answer, machine, warnings)
    storage = _storage(answer, machine)
    by_node = {d.devnode: d for d in machine.disks}
    for d in storage.disks:
        busy = by_node[d.devnode].in_use
        if busy:
            warnings.append(f"{d.devnode} is in use ({busy}): installing wipes it")
    if not storage.installer_supported:
        warnings.append(f"{storage.label}: resolved, but the installer cannot lay down "
                        f"{storage.filesystem} yet and will refuse to install")
    pw_from: Literal["plain", "hashed"]
    if g.root_password is not None:
        pw_hash, pw_from = hash_password(g.root_password, f"{hostname}.{domain}"), "plain"
    else:
        assert g.root_password_hashed is not None  # parse.py requires one of them
        pw_hash, pw_from = g.root_password_hashed, "hashed"
    fb = answer.first_boot
    return InstallPlan(
        answer_file=answer.source,
        fqdn=f"{hostname}.{domain}",
        hostname=hostname,
        domain=domain,
        storage=storage,
        network=network,
        root_password_hash=pw_hash,
        root_password_from=pw_from,
        root_ssh_keys=g.root_ssh_keys,
        keyboard=g.keyboard,
        country=g.country,
        timezone=g.timezone,
        mailto=g.mailto,
        reboot_mode=g.reboot_mode,
        reboot_on_error=g.reboot_on_error,
        first_boot=PlanFirstBoot(True, fb.source, fb.ordering, fb.url, fb.cert_fingerprint)
        if fb else PlanFirstBoot(False),
        webhook=answer.webhook,
        require_hardware_virtualization=g.require_hardware_virtualization,
        hardware_virtualization=machine.hvm_supported,
        warnings=tuple(warnings),
    )


# --- host name ---------------------------------------------------------------------


def _fqdn(answer: Answer, machine: Machine) -> tuple[str, str]:
    g = answer.global_
    if g.fqdn is not None:
        host, _, domain = g.fqdn.partition(".")
        return host, domain
    if not machine.dhcp_hostname:
        raise _err(answer, "global.fqdn.source", "set to \"from-dhcp\", but the DHCP server "
                   "did not provide a hostname")
    wanted = g.fqdn_domain or machine.dhcp_domain
    if not wanted:
        raise _err(answer, "global.fqdn.domain", "no domain received from the DHCP server and "
                   "global.fqdn.domain is unset")
    fqdn = f"{machine.dhcp_hostname}.{wanted}"
    why = check_domain(wanted) or check_fqdn(fqdn)
    if why:
        raise _err(answer, "global.fqdn.source", f"DHCP gave an unusable name: {why}")
    host, _, domain = fqdn.partition(".")
    return host, domain


# --- network ---------------------------------------------------------------------------


def _filters(flt: Mapping[str, str]) -> str:
    return " ".join(f"{k}={v!r}" for k, v in flt.items())


def _describe(name: str, props: Mapping[str, str], shown: Sequence[str]) -> str:
    kv = " ".join(f"{k}={props[k]}" for k in shown if props.get(k))
    return f"{name} {kv}".strip()


def _pinned_names(answer: Answer, machine: Machine) -> dict[str, str]:
    """MAC -> name on the installed system, for every NIC (pinning on), else {}."""
    pin = answer.network.interface_name_pinning
    if pin is None or not pin.enabled:
        return {}
    names = dict(pin.mapping)
    for nic in machine.nics:
        if nic.mac and nic.mac not in names and nic.pinned_id is not None:
            names[nic.mac] = f"{PIN_PREFIX}{nic.pinned_id}"
    owners: dict[str, str] = {}
    for mac, name in sorted(names.items()):
        if name in owners:
            raise _err(answer, "network.interface-name-pinning.mapping",
                       f"interface name {name!r} would be used by both {owners[name]} and "
                       f"{mac} (names nic<N> are given to unlisted NICs)")
        owners[name] = mac
    return dict(sorted(names.items()))


def _network(answer: Answer, machine: Machine, warnings: list[str]) -> PlanNetwork:
    n = answer.network
    pins = _pinned_names(answer, machine)
    pin = n.interface_name_pinning
    if pin is not None and pin.enabled:
        known = {nic.mac for nic in machine.nics}
        for mac, name in pin.mapping.items():
            if mac not in known:
                warnings.append(f"network.interface-name-pinning: no NIC with MAC {mac} "
                                f"(mapped to {name!r}) on {machine.description}")
    by_name = {nic.name: nic for nic in machine.nics}

    def plan(nic: MachineNic, source: NetworkPlanSource, cidr: str, gw: str,
             dns: str) -> PlanNetwork:
        name = pins.get(nic.mac or "", nic.name)
        return PlanNetwork(source=source, device=nic.name, interface=name, mac=nic.mac,
                           cidr=cidr, gateway=gw, dns=dns, pin_map=pins)

    if not machine.nics:
        raise _err(answer, "network", f"{machine.description} has no network interface")
    if n.source == "from-answer" and n.filter:
        assert n.cidr and n.gateway and n.dns  # parse.py requires them
        nic = _match_nic(answer, machine, warnings)
        return plan(nic, "from-answer", n.cidr, n.gateway, n.dns)
    if n.source == "from-answer":  # no filter: the NIC with the default route, or the first
        assert n.cidr and n.gateway and n.dns
        return plan(_default_nic(machine), "from-answer", n.cidr, n.gateway, n.dns)
    dns = machine.dns_servers[0] if machine.dns_servers else FALLBACK_DNS
    for route, v6 in ((machine.gateway4, False), (machine.gateway6, True)):
        via = by_name.get(route.dev) if route else None
        if route is None or via is None:
            continue
        addrs = [a for a in via.addresses if (":" in a) == v6]
        if addrs:
            return plan(via, "from-dhcp", addrs[0], route.gateway, dns)
    # No lease: Proxmox's defaults.
    first = _default_nic(machine)
    warnings.append(f"network: no DHCP lease with a default route; using {FALLBACK_CIDR} "
                    f"via {FALLBACK_GATEWAY} on {first.name}")
    return plan(first, "fallback", FALLBACK_CIDR, FALLBACK_GATEWAY, dns)


def _default_nic(machine: Machine) -> MachineNic:
    """The NIC of the IPv4 default route, else the first by kernel index, then name."""
    for nic in machine.nics:
        if machine.gateway4 and nic.name == machine.gateway4.dev:
            return nic
    return min(machine.nics, key=lambda x: (x.index if x.index is not None else 1 << 30,
                                            x.name))


def _match_nic(answer: Answer, machine: Machine, warnings: list[str]) -> MachineNic:
    """The NIC the filter selects; with several, the first by name (as Proxmox
    does, so broad filters such as ID_NET_NAME = "*" keep working), warned."""
    nics = sorted(machine.nics, key=lambda x: x.name)
    devices = {nic.name: dict(nic.properties) for nic in nics}
    try:
        matched = match_devices(devices, answer.network.filter, "any")
    except HardwareError as e:
        raise _err(answer, "network.filter", str(e)) from None
    cands = "; ".join(_describe(nic.name, nic.properties, SHOWN_NIC_PROPS)
                      for nic in machine.nics) or "none"
    if not matched:
        raise _err(answer, "network.filter", f"filter {_filters(answer.network.filter)} "
                   f"matched no NIC (candidates: {cands})")
    if len(matched) > 1:
        warnings.append(f"network.filter matched {len(matched)} NICs ({', '.join(matched)}); "
                        f"using the first, {matched[0]}")
    return next(nic for nic in nics if nic.name == matched[0])


# --- disks -----------------------------------------------------------------------------


def _disk_candidates(machine: Machine) -> str:
    return "; ".join(
        _describe(f"{d.name} ({_gib(d)})", d.properties, SHOWN_DISK_PROPS)
        for d in machine.disks) or "none"


def _gib(d: MachineDisk) -> str:
    return f"{d.size_bytes / 2**30:.2f} GiB" if d.size_bytes is not None else "size unknown"


def _select_disks(answer: Answer, machine: Machine) -> list[MachineDisk]:
    ds = answer.disk_setup
    single = ds.filesystem in ("ext4", "xfs")
    if ds.disk_list:
        chosen = []
        for i, name in enumerate(ds.disk_list):
            found = [d for d in machine.disks if name in (d.name, d.devnode)]
            if not found:
                raise _err(answer, f"disk-setup.disk-list[{i}]", f"no disk {name!r} among the "
                           f"install targets (candidates: {_disk_candidates(machine)})")
            if found[0] in chosen:
                raise _err(answer, f"disk-setup.disk-list[{i}]", f"{name!r} is "
                           f"{found[0].devnode} again: the list of disks contains a duplicate")
            chosen.append(found[0])
        return chosen
    devices = {d.index: dict(d.properties) for d in machine.disks}
    try:
        matched = set(match_devices(devices, ds.filter, ds.filter_match))
    except HardwareError as e:
        raise _err(answer, "disk-setup.filter", str(e)) from None
    chosen = [d for d in machine.disks if d.index in matched]
    if not chosen:
        raise _err(answer, "disk-setup.filter", f"filter {_filters(ds.filter)} (filter-match "
                   f"= {ds.filter_match}) matched no disk (candidates: "
                   f"{_disk_candidates(machine)})")
    if single and len(chosen) > 1:
        raise _err(answer, "disk-setup.filter", f"filter matched {len(chosen)} disks "
                   f"({', '.join(d.name for d in chosen)}), but {ds.filesystem} is installed "
                   f"on exactly one; make the filter select one (candidates: "
                   f"{_disk_candidates(machine)})")
    return chosen


def _storage(answer: Answer, machine: Machine) -> PlanStorage:
    ds = answer.disk_setup
    chosen = _select_disks(answer, machine)
    own = "lvm" if ds.lvm is not None or ds.filesystem in ("ext4", "xfs") else ds.filesystem
    for d in chosen:
        if d.size_bytes is None:
            raise _err(answer, "disk-setup", f"the size of {d.devnode} is unknown (udev data "
                       "carries no sizes: give run-env info, e.g. --info-json)")
        if machine.boot_type == "bios" and d.logical_block_size == 4096:
            raise _err(answer, "disk-setup", f"{d.devnode} has 4096-byte sectors (4Kn): it "
                       "cannot boot in legacy BIOS mode (boot the installer with UEFI)")
        if d.size_bytes / 2**30 < MIN_DISK_GIB:
            raise _err(answer, "disk-setup", f"{d.devnode} ({_gib(d)}) is smaller than the "
                       f"minimum of {MIN_DISK_GIB:g} GiB")
    if ds.raid is not None:
        try:
            check_raid_disks(ds.filesystem, ds.raid, len(chosen), [])
        except OptionError as e:
            key = "disk-setup.disk-list" if ds.disk_list else "disk-setup.filter"
            raise _err(answer, key, f"{e.reason} ({', '.join(d.name for d in chosen)})") from None
        _check_mirror_sizes(answer, ds.raid, chosen)
    first = chosen[0]
    assert first.size_bytes is not None
    hdsize = ds.hdsize if ds.hdsize is not None else first.size_bytes / 2**30
    smallest = min(chosen, key=lambda d: d.size_bytes or 0)
    if ds.hdsize is not None and smallest.size_bytes is not None \
            and ds.hdsize > smallest.size_bytes / 2**30:
        raise _err(answer, f"disk-setup.{own}.hdsize", f"{ds.hdsize:g} GiB is more than "
                   f"{smallest.devnode} has ({_gib(smallest)})")
    lvm = ds.lvm
    if lvm is not None and lvm.swapsize is not None:
        try:
            check_swapsize(lvm.swapsize, hdsize, [])
        except OptionError as e:
            raise _err(answer, "disk-setup.lvm.swapsize", e.reason) from None
    zfs = btrfs = None
    if ds.zfs is not None:
        zfs = {
            "ashift": ds.zfs.ashift if ds.zfs.ashift is not None else 12,
            "arc_max": ds.zfs.arc_max if ds.zfs.arc_max is not None
            else machine.default_zfs_arc_max,
            "checksum": ds.zfs.checksum or "on",
            "compress": ds.zfs.compress or "on",
            "copies": ds.zfs.copies if ds.zfs.copies is not None else 1,
        }
    if ds.btrfs is not None:
        btrfs = {"compress": ds.btrfs.compress or "off"}
    return PlanStorage(
        filesystem=ds.filesystem,
        raid=ds.raid,
        label=raid_label(ds.filesystem, ds.raid),
        disks=tuple(PlanDisk(d.index, d.devnode, d.size_bytes or 0, d.model,
                             d.logical_block_size, dict(d.properties)) for d in chosen),
        hdsize=hdsize,
        swapsize=lvm.swapsize if lvm else None,
        maxroot=lvm.maxroot if lvm else None,
        minfree=lvm.minfree if lvm else None,
        maxvz=lvm.maxvz if lvm else None,
        zfs=zfs,
        btrfs=btrfs,
    )


def _check_mirror_sizes(answer: Answer, raid: str, disks: Sequence[MachineDisk]) -> None:
    """Mirrored disks must be about the same size (within 10%)."""
    if raid == "raid0" or answer.disk_setup.filesystem != "zfs":
        return
    pairs = ([(disks[i], disks[i + 1]) for i in range(0, len(disks) - 1, 2)]
             if raid == "raid10" else [(disks[0], d) for d in disks[1:]])
    for a, b in pairs:
        sa, sb = a.size_bytes or 0, b.size_bytes or 0
        if abs(sa - sb) > sa / 10:
            raise _err(answer, "disk-setup.zfs.raid", f"mirrored disks must have the same "
                       f"size: {a.devnode} ({_gib(a)}) and {b.devnode} ({_gib(b)})")


# --- password --------------------------------------------------------------------------


def hash_password(password: str, context: str, salt: str | None = None) -> str:
    """SHA-512 crypt (`$6$`) of `password` through `openssl passwd -6`, the
    password on stdin (never in argv). The salt is derived from `context` and
    the password (no randomness: the same answer on the same host gives the
    same plan)."""
    if salt is None:
        digest = hashlib.sha256(f"appliance-root\0{context}\0{password}".encode()).digest()
        alphabet = "./0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
        salt = "".join(alphabet[b % 64] for b in digest[:16])
    runner.require_tools("openssl", why="to hash the root password")
    out = runner.run(["openssl", "passwd", "-6", "-salt", salt, "-stdin"],
                     input=password.encode() + b"\n", capture=True, what="openssl passwd")
    return out.stdout.decode().strip()


def require_installable(plan: InstallPlan) -> None:
    """What the installer calls before touching a disk: raises AnswerError for
    a plan it cannot carry out yet (zfs and btrfs layouts)."""
    if not plan.storage.installer_supported:
        key = f"disk-setup.{plan.storage.filesystem}.raid"
        reason = (f"{plan.storage.label} is not supported by the installer yet (it installs "
                  f"on {' or '.join(INSTALLER_SUPPORTED_FILESYSTEMS)} with LVM)")
        raise AnswerError(f"{plan.answer_file}: {key}: {reason}", file=plan.answer_file,
                          key=key, reason=reason)
