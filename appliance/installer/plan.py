"""What the installer does, fully decided before the first write: the one
target disk, its layout, and the system's settings. Made from a resolved
answer file (or the interactive dialog); printed before the install starts
and by `appliance install --dry-run`."""

from __future__ import annotations

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
        return "\n".join([
            f"  target disk:  {self.disk} ({self.disk_model})",
            f"  layout:       {self.layout.describe()}",
            f"  root fs:      {self.filesystem} on LVM",
            f"  host name:    {self.fqdn}",
            f"  network:      {n.nic or '(none)'} ({n.mac or '-'}) on bridge vmbr0, {net}",
            f"  time zone:    {self.timezone}, keyboard {self.keyboard}",
            f"  afterwards:   {self.reboot_mode}",
        ])
