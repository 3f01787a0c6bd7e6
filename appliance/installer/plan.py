"""What the installer does, fully decided before the first write: the one
target disk, its layout, and the system's settings. Made from a resolved
answer file (or the interactive dialog); printed before the install starts
and by `appliance install --dry-run`."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from appliance.installer.layout import Layout


@dataclass(frozen=True)
class Network:
    """`dhcp`, or a static `cidr` (address/prefix) with gateway and DNS, on
    the NIC `nic` (MAC `mac`), which becomes the port of bridge vmbr0."""

    nic: str | None
    mac: str | None
    dhcp: bool = True
    cidr: str | None = None
    gateway: str | None = None
    dns: str | None = None
    interface_name: str | None = None  # pin the NIC to this name (systemd .link by MAC)


# /dev/disk/by-id links that name a device's contents, not the device itself
# (LVM, device-mapper and md metadata): not part of its identity.
CONTENT_LINKS = ("lvm-pv-uuid-", "dm-", "md-")


@dataclass(frozen=True)
class DiskIdentity:
    """Which physical disk the plan was made for, as hardware detection found
    it: re-checked right before the first write, so a disk swapped or
    re-enumerated since (another disk now at the same /dev name) is refused.

    serial, wwn: udev's ID_SERIAL and ID_WWN (None when the disk has none)
    by_id:       its /dev/disk/by-id links (hardware names only, sorted)
    size_bytes:  its size
    """

    devnode: str
    size_bytes: int
    serial: str | None = None
    wwn: str | None = None
    by_id: tuple[str, ...] = ()

    @staticmethod
    def from_udev(devnode: str, size_bytes: int, properties: Mapping[str, str],
                  links: Iterable[str] = ()) -> DiskIdentity:
        """From a disk's udev properties (DEVLINKS, ID_SERIAL, ID_WWN) and links."""
        all_links = set(properties.get("DEVLINKS", "").split()) | set(links)
        by_id = sorted(link for link in all_links if link.startswith("/dev/disk/by-id/")
                       and not link.removeprefix("/dev/disk/by-id/").startswith(CONTENT_LINKS))
        return DiskIdentity(devnode, size_bytes, properties.get("ID_SERIAL") or None,
                            properties.get("ID_WWN") or None, tuple(by_id))

    def differences(self, now: DiskIdentity) -> list[str]:
        """What differs in `now` (the disk at the same devnode today)."""
        out = []
        for what, was, is_ in (("serial (ID_SERIAL)", self.serial, now.serial),
                               ("WWN (ID_WWN)", self.wwn, now.wwn),
                               ("size", self.size_bytes, now.size_bytes)):
            if was != is_:
                out.append(f"{what} was {was if was is not None else 'none'}, is now "
                           f"{is_ if is_ is not None else 'none'}")
        gone = [link for link in self.by_id if link not in now.by_id]
        if gone:
            out.append(f"{', '.join(gone)} no longer point{'s' if len(gone) == 1 else ''} "
                       "at it")
        return out

    def describe(self) -> str:
        names = [f"serial {self.serial}" if self.serial else "no serial"]
        names += [f"WWN {self.wwn}"] if self.wwn else []
        return f"{self.devnode} ({', '.join(names)}, {self.size_bytes} bytes)"


@dataclass(frozen=True)
class Plan:
    disk: str  # /dev/... : the ONLY device the installer writes to
    disk_model: str
    layout: Layout
    filesystem: str  # ext4 | xfs
    fqdn: str
    root_password_hash: str
    ssh_keys: list[str] = field(default_factory=list)
    timezone: str = "Etc/UTC"
    keyboard: str = "en-us"
    country: str = "us"
    mailto: str = ""
    network: Network = Network(None, None)
    reboot_mode: str = "reboot"  # reboot | power-off
    reboot_on_error: bool = False
    answer_source: str = ""
    # [first-boot]: {"source", "ordering", "url", "cert-fingerprint"}, or None
    first_boot: dict[str, str] | None = None
    # [post-installation-webhook]: (url, pinned certificate fingerprint)
    webhook: tuple[str, str | None] | None = None
    # plain http:// allowed for the first-boot hook and the webhook
    # (the ISO was made with `prepare-iso --allow-insecure`)
    allow_insecure: bool = False
    # the target disk as detection found it (re-checked before the first write)
    disk_identity: DiskIdentity | None = None

    @property
    def hostname(self) -> str:
        return self.fqdn.split(".", 1)[0]

    @property
    def domain(self) -> str:
        return self.fqdn.split(".", 1)[1] if "." in self.fqdn else ""

    def to_json(self) -> dict[str, Any]:
        out = asdict(self)
        out["layout"] = self.layout.to_json()
        out["root_password_hash"] = "(hashed, not shown)"
        return out

    def describe(self) -> str:
        n = self.network
        net = "DHCP" if n.dhcp else f"{n.cidr} via {n.gateway}, DNS {n.dns}"
        ident = self.disk_identity
        return "\n".join([
            f"  target disk:  {self.disk} ({self.disk_model})",
            *([f"  checked as:   {ident.describe()} (re-checked before writing)"]
              if ident else []),
            f"  layout:       {self.layout.describe()}",
            f"  root fs:      {self.filesystem} on LVM",
            f"  host name:    {self.fqdn}",
            f"  network:      {n.nic or '(none)'} ({n.mac or '-'}) on bridge vmbr0, {net}",
            f"  time zone:    {self.timezone}, keyboard {self.keyboard}",
            f"  afterwards:   {self.reboot_mode}",
        ])
