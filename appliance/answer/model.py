"""The data the installer consumes: a parsed answer file and the install plan
it resolves to on one machine.

`Answer` is what the file says (validated offline, machine-independent).
`InstallPlan` is what to do on this machine: which disks, which NIC, which
address, hostname and sizes. Both are frozen; `to_json()` gives plain JSON
(the plan never carries a plain-text password, only its crypt hash).

Sizes are GiB as floats (1 GiB = 2**30 bytes), as in Proxmox's answer files.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

Filesystem = Literal["ext4", "xfs", "zfs", "btrfs"]
FilterMatch = Literal["any", "all"]
NetworkSource = Literal["from-dhcp", "from-answer"]
RebootMode = Literal["reboot", "power-off"]
FirstBootSource = Literal["from-iso", "from-url"]
FirstBootOrdering = Literal["before-network", "network-online", "fully-up"]
NetworkPlanSource = Literal["from-answer", "from-dhcp", "fallback"]

# The systemd target a first-boot hook is ordered against, per `ordering`.
FIRST_BOOT_TARGETS: dict[str, str] = {
    "before-network": "network-pre",
    "network-online": "network-online",
    "fully-up": "multi-user",
}
# Filesystems the installer (appliance.install) can lay down today; the others
# parse and resolve, and the installer refuses them with a clear message.
INSTALLER_SUPPORTED_FILESYSTEMS: tuple[str, ...] = ("ext4", "xfs")


# --- the answer file -----------------------------------------------------------


@dataclass(frozen=True)
class GlobalSection:
    """`[global]`.

    fqdn:            the static FQDN (`fqdn = "pve1.example.com"`), or None when
                     it comes from DHCP (`fqdn.source = "from-dhcp"`)
    fqdn_domain:     with from-dhcp: the domain to use (it wins over the DHCP
                     domain, as in Proxmox); None = take DHCP's
    root_password:   plain text as written (never serialized by to_json)
    root_password_hashed: a crypt(3) hash as written
    require_hardware_virtualization: our key: refuse a machine without usable
                     VT-x/AMD-V
    """

    keyboard: str
    country: str
    fqdn: str | None
    fqdn_domain: str | None
    mailto: str
    timezone: str
    root_password: str | None = field(repr=False)
    root_password_hashed: str | None
    root_ssh_keys: tuple[str, ...] = ()
    reboot_on_error: bool = False
    reboot_mode: RebootMode = "reboot"
    require_hardware_virtualization: bool = False

    @property
    def fqdn_from_dhcp(self) -> bool:
        return self.fqdn is None


@dataclass(frozen=True)
class InterfacePinning:
    """`[network.interface-name-pinning]`: `mapping` is MAC (lower case) ->
    interface name; NICs not listed get `nic<N>` names when enabled."""

    enabled: bool
    mapping: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class NetworkSection:
    """`[network]`: from-dhcp keeps what the live system's DHCP lease gave;
    from-answer sets `cidr`, `gateway`, `dns` on the NIC `filter` selects
    (no filter: the NIC of the default route, else the first)."""

    source: NetworkSource
    cidr: str | None = None
    gateway: str | None = None
    dns: str | None = None
    filter: Mapping[str, str] = field(default_factory=dict)
    interface_name_pinning: InterfacePinning | None = None


@dataclass(frozen=True)
class LvmOptions:
    """`[disk-setup] lvm.*` (ext4/xfs), GiB; None = the installer's default."""

    hdsize: float | None = None
    swapsize: float | None = None
    maxroot: float | None = None
    maxvz: float | None = None
    minfree: float | None = None


@dataclass(frozen=True)
class ZfsOptions:
    """`[disk-setup] zfs.*`; `raid` normalized to lower case (raid0, raid1,
    raid10, raidz-1, raidz-2, raidz-3)."""

    raid: str
    ashift: int | None = None
    arc_max: int | None = None  # MiB
    checksum: str | None = None
    compress: str | None = None
    copies: int | None = None
    hdsize: float | None = None


@dataclass(frozen=True)
class BtrfsOptions:
    """`[disk-setup] btrfs.*`; `raid` normalized to lower case (raid0, raid1,
    raid10)."""

    raid: str
    compress: str | None = None
    hdsize: float | None = None


@dataclass(frozen=True)
class DiskSetupSection:
    """`[disk-setup]`: exactly one of `disk_list` (device names such as "sda")
    or `filter` (udev property -> glob, combined by `filter_match`)."""

    filesystem: Filesystem
    disk_list: tuple[str, ...] = ()
    filter: Mapping[str, str] = field(default_factory=dict)
    filter_match: FilterMatch = "any"
    lvm: LvmOptions | None = None
    zfs: ZfsOptions | None = None
    btrfs: BtrfsOptions | None = None

    @property
    def raid(self) -> str | None:
        opts = self.zfs or self.btrfs
        return opts.raid if opts else None

    @property
    def hdsize(self) -> float | None:
        opts = self.lvm or self.zfs or self.btrfs
        return opts.hdsize if opts else None


@dataclass(frozen=True)
class FirstBootSection:
    """`[first-boot]`: a hook run once on the installed system's first boot."""

    source: FirstBootSource
    ordering: FirstBootOrdering = "fully-up"
    url: str | None = None
    cert_fingerprint: str | None = None

    @property
    def ordering_target(self) -> str:
        return FIRST_BOOT_TARGETS[self.ordering]


@dataclass(frozen=True)
class WebhookSection:
    """`[post-installation-webhook]`: POST the install result to `url`."""

    url: str
    cert_fingerprint: str | None = None


@dataclass(frozen=True)
class Answer:
    """A parsed, validated answer file (see appliance.answer.keys for every key).

    source: the file's path (or a name for text parsed directly); text: its
    content, kept to point errors found later (at resolve time) at a line.
    """

    source: str
    global_: GlobalSection
    network: NetworkSection
    disk_setup: DiskSetupSection
    first_boot: FirstBootSection | None = None
    webhook: WebhookSection | None = None
    text: str | None = field(default=None, repr=False, compare=False)

    @property
    def require_hw_virt(self) -> bool:
        return self.global_.require_hardware_virtualization

    def to_json(self) -> dict[str, Any]:
        g = self.global_
        return {
            "source": self.source,
            "global": {
                "keyboard": g.keyboard,
                "country": g.country,
                "fqdn": g.fqdn if g.fqdn is not None else {
                    "source": "from-dhcp", "domain": g.fqdn_domain},
                "mailto": g.mailto,
                "timezone": g.timezone,
                "root-password": "<set>" if g.root_password is not None else None,
                "root-password-hashed": g.root_password_hashed,
                "root-ssh-keys": list(g.root_ssh_keys),
                "reboot-on-error": g.reboot_on_error,
                "reboot-mode": g.reboot_mode,
                "require-hardware-virtualization": g.require_hardware_virtualization,
            },
            "network": _section_json(self.network),
            "disk-setup": _section_json(self.disk_setup),
            "first-boot": _section_json(self.first_boot) if self.first_boot else None,
            "post-installation-webhook": _section_json(self.webhook) if self.webhook else None,
        }


def _section_json(obj: Any) -> Any:
    if obj is None or isinstance(obj, str | int | float | bool):
        return obj
    if isinstance(obj, Mapping):
        return {str(k): _section_json(v) for k, v in obj.items()}
    if isinstance(obj, tuple | list):
        return [_section_json(v) for v in obj]
    fields = getattr(obj, "__dataclass_fields__", None)
    if fields is not None:
        return {name.replace("_", "-"): _section_json(getattr(obj, name)) for name in fields}
    return str(obj)


# --- the install plan ------------------------------------------------------------


@dataclass(frozen=True)
class PlanDisk:
    """One target disk.

    index:      its key in the udev data (`run-env-udev.json` `disks.<index>`)
    devnode:    /dev/sda, /dev/nvme0n1, ...
    size_bytes: its size; `size_gib` the same in GiB
    properties: its udev properties (what answer-file filters match against)
    """

    index: str
    devnode: str
    size_bytes: int
    model: str | None
    logical_block_size: int
    properties: Mapping[str, str] = field(repr=False, default_factory=dict)

    @property
    def name(self) -> str:
        return self.devnode.rsplit("/", 1)[-1]

    @property
    def size_gib(self) -> float:
        return self.size_bytes / 2**30

    def to_json(self) -> dict[str, Any]:
        return {
            "index": self.index,
            "devnode": self.devnode,
            "size_bytes": self.size_bytes,
            "size_gib": self.size_gib,
            "model": self.model,
            "logical_block_size": self.logical_block_size,
            "properties": dict(self.properties),
        }


@dataclass(frozen=True)
class PlanStorage:
    """What goes on the disks.

    filesystem: ext4, xfs, zfs or btrfs; `raid` the zfs/btrfs level or None
    label:      Proxmox's name for the layout: "ext4", "zfs (RAID10)", ...
    disks:      one disk for ext4/xfs, the RAID members (by index) for zfs/btrfs
    hdsize:     GiB of each disk to use (answer's hdsize, else the size of the
                (first) disk)
    swapsize, maxroot, minfree, maxvz: LVM sizes in GiB, None = default
    zfs / btrfs: the effective pool options (defaults filled in), or None
    installer_supported: False for zfs/btrfs: they resolve, but the installer
                cannot lay them down yet and refuses at install time
    """

    filesystem: Filesystem
    raid: str | None
    label: str
    disks: tuple[PlanDisk, ...]
    hdsize: float
    swapsize: float | None = None
    maxroot: float | None = None
    minfree: float | None = None
    maxvz: float | None = None
    zfs: Mapping[str, Any] | None = None
    btrfs: Mapping[str, Any] | None = None

    @property
    def installer_supported(self) -> bool:
        return self.filesystem in INSTALLER_SUPPORTED_FILESYSTEMS

    def to_json(self) -> dict[str, Any]:
        return {
            "filesystem": self.filesystem,
            "raid": self.raid,
            "label": self.label,
            "disks": [d.to_json() for d in self.disks],
            "hdsize": self.hdsize,
            "swapsize": self.swapsize,
            "maxroot": self.maxroot,
            "minfree": self.minfree,
            "maxvz": self.maxvz,
            "zfs": dict(self.zfs) if self.zfs is not None else None,
            "btrfs": dict(self.btrfs) if self.btrfs is not None else None,
            "installer_supported": self.installer_supported,
        }


@dataclass(frozen=True)
class PlanNetwork:
    """The management network of the installed system (always static config).

    source:    "from-answer" (the answer's values), "from-dhcp" (what the live
               system's DHCP lease gave) or "fallback" (no lease: Proxmox's
               defaults 192.168.100.2/24 via 192.168.100.1)
    device:    the NIC's kernel name on this machine
    interface: its name on the installed system (the pinned name when
               interface-name pinning is on, else `device`)
    mac:       the NIC's MAC address, if known
    cidr:      address/prefix, e.g. "192.168.1.114/24"
    pin_map:   MAC -> name for every pinned NIC (empty without pinning)
    """

    source: NetworkPlanSource
    device: str
    interface: str
    mac: str | None
    cidr: str
    gateway: str
    dns: str
    pin_map: Mapping[str, str] = field(default_factory=dict)

    @property
    def address(self) -> str:
        return str(ipaddress.ip_interface(self.cidr).ip)

    @property
    def prefix(self) -> int:
        return ipaddress.ip_interface(self.cidr).network.prefixlen

    def to_json(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "device": self.device,
            "interface": self.interface,
            "mac": self.mac,
            "cidr": self.cidr,
            "address": self.address,
            "prefix": self.prefix,
            "gateway": self.gateway,
            "dns": self.dns,
            "pin_map": dict(self.pin_map),
        }


@dataclass(frozen=True)
class PlanFirstBoot:
    """The first-boot hook: `enabled` False when the answer has no [first-boot]."""

    enabled: bool
    source: FirstBootSource | None = None
    ordering: FirstBootOrdering | None = None
    url: str | None = None
    cert_fingerprint: str | None = None

    @property
    def ordering_target(self) -> str | None:
        return FIRST_BOOT_TARGETS[self.ordering] if self.ordering else None

    def to_json(self) -> dict[str, Any]:
        return {
            "enabled": self.enabled,
            "source": self.source,
            "ordering": self.ordering,
            "ordering_target": self.ordering_target,
            "url": self.url,
            "cert_fingerprint": self.cert_fingerprint,
        }


@dataclass(frozen=True)
class InstallPlan:
    """An answer resolved against one machine: everything the installer needs.

    root_password_hash: crypt(3) hash (SHA-512 `$6$` for a plain password from
        the answer, which is hashed at resolve time; as written for
        root-password-hashed). The plain text is never kept here.
    hardware_virtualization: what the machine has (True/False, None unknown);
        resolving fails when the answer requires it and the machine has none.
    warnings: things worth showing that do not stop the installation.
    """

    answer_file: str
    fqdn: str
    hostname: str
    domain: str
    storage: PlanStorage
    network: PlanNetwork
    root_password_hash: str = field(repr=False)
    root_password_from: Literal["plain", "hashed"]
    root_ssh_keys: tuple[str, ...]
    keyboard: str
    country: str
    timezone: str
    mailto: str
    reboot_mode: RebootMode
    reboot_on_error: bool
    first_boot: PlanFirstBoot
    webhook: WebhookSection | None
    require_hardware_virtualization: bool
    hardware_virtualization: bool | None
    warnings: tuple[str, ...] = ()

    # Shorthands the installer uses most.
    @property
    def disks(self) -> tuple[PlanDisk, ...]:
        return self.storage.disks

    @property
    def filesystem(self) -> Filesystem:
        return self.storage.filesystem

    @property
    def hdsize(self) -> float:
        return self.storage.hdsize

    def to_json(self) -> dict[str, Any]:
        return {
            "answer_file": self.answer_file,
            "fqdn": self.fqdn,
            "hostname": self.hostname,
            "domain": self.domain,
            "storage": self.storage.to_json(),
            "network": self.network.to_json(),
            "root_password_hash": self.root_password_hash,
            "root_password_from": self.root_password_from,
            "root_ssh_keys": list(self.root_ssh_keys),
            "keyboard": self.keyboard,
            "country": self.country,
            "timezone": self.timezone,
            "mailto": self.mailto,
            "reboot_mode": self.reboot_mode,
            "reboot_on_error": self.reboot_on_error,
            "first_boot": self.first_boot.to_json(),
            "webhook": _section_json(self.webhook) if self.webhook else None,
            "require_hardware_virtualization": self.require_hardware_virtualization,
            "hardware_virtualization": self.hardware_virtualization,
            "warnings": list(self.warnings),
        }
