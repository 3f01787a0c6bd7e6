"""Configure the copied system on the target: mounts, names, network,
accounts, time zone and keyboard; drop what only the live medium needs and
regenerate the initramfs (now with LVM, without live-boot)."""

from __future__ import annotations

import ipaddress
import os
import re
from pathlib import Path

from appliance.engine import mounts
from appliance.installer import files
from appliance.installer.layout import GUESTS_MOUNT
from appliance.installer.plan import Plan
from appliance.runner import run

BRIDGE = "vmbr0"
LIVE_PACKAGES = ("live-boot", "live-boot-initramfs-tools")
INSTALLER_UNIT = "appliance-installer.service"

# Proxmox answer-file keyboard names -> XKB layout and variant.
KEYBOARDS = {
    "en-us": ("us", ""), "en-gb": ("gb", ""), "de": ("de", ""), "de-ch": ("ch", ""),
    "fr": ("fr", ""), "fr-ch": ("ch", "fr"), "fr-be": ("be", ""), "fr-ca": ("ca", "fr"),
    "it": ("it", ""), "es": ("es", ""), "pt": ("pt", ""), "pt-br": ("br", ""),
    "nl": ("nl", ""), "sv": ("se", ""), "no": ("no", ""), "dk": ("dk", ""),
    "fi": ("fi", ""), "pl": ("pl", ""), "hu": ("hu", ""), "jp": ("jp", ""),
    "tr": ("tr", ""), "is": ("is", ""), "lt": ("lt", ""), "si": ("si", ""),
}


def write(path: Path, text: str, mode: int = 0o644) -> None:
    """Write a file in the target atomically (write + rename)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.appliance-tmp")
    files.write_private(tmp, text.encode(), mode)  # the final mode from the start (shadow)
    os.replace(tmp, path)


def fstab(root_uuid: str, esp_uuid: str, swap_uuid: str, filesystem: str,
          guests_uuid: str | None = None) -> str:
    opts = "errors=remount-ro" if filesystem == "ext4" else "defaults"
    # discard: blocks freed by deleted guests go back to the thin pool at once
    guests = (f"UUID={guests_uuid} {GUESTS_MOUNT} ext4 defaults,discard 0 2\n"
              if guests_uuid else "")
    return ("# <file system> <mount point> <type> <options> <dump> <pass>\n"
            f"UUID={root_uuid} / {filesystem} {opts} 0 1\n"
            f"UUID={esp_uuid} /boot/efi vfat umask=0077 0 1\n"
            f"UUID={swap_uuid} none swap sw 0 0\n{guests}")


def hosts(plan: Plan) -> str:
    n = plan.network
    addr = str(ipaddress.ip_interface(n.cidr).ip) if not n.dhcp and n.cidr else "127.0.1.1"
    names = f"{plan.fqdn} {plan.hostname}" if plan.domain else plan.hostname
    return (f"127.0.0.1 localhost.localdomain localhost\n{addr} {names}\n\n"
            "::1     ip6-localhost ip6-loopback\nfe00::0 ip6-localnet\n"
            "ff00::0 ip6-mcastprefix\nff02::1 ip6-allnodes\nff02::2 ip6-allrouters\n")


def interfaces(plan: Plan) -> str:
    """ifupdown config: the NIC is a port of bridge vmbr0, which carries the
    host's address (guests join the same bridge), as on Proxmox VE."""
    n = plan.network
    nic = n.interface_name or n.nic
    lines = ["# written by the appliance installer", "auto lo", "iface lo inet loopback", ""]
    if nic is None:
        return "\n".join(lines) + "\n"
    lines += [f"iface {nic} inet manual", "", f"auto {BRIDGE}"]
    if n.dhcp:
        lines.append(f"iface {BRIDGE} inet dhcp")
    else:
        lines += [f"iface {BRIDGE} inet static", f"\taddress {n.cidr}"]
        if n.gateway:
            lines.append(f"\tgateway {n.gateway}")
    lines += [f"\tbridge-ports {nic}", "\tbridge-stp off", "\tbridge-fd 0", ""]
    return "\n".join(lines)


def link_file(plan: Plan) -> str | None:
    n = plan.network
    if not n.interface_name or not n.mac:
        return None
    return f"[Match]\nMACAddress={n.mac}\n\n[Link]\nName={n.interface_name}\n"


def set_root_password(shadow: Path, password_hash: str) -> None:
    if ":" in password_hash or "\n" in password_hash:
        raise ValueError("a password hash cannot contain ':' or a newline")
    lines = shadow.read_text().splitlines()
    for i, line in enumerate(lines):
        fields = line.split(":")
        if fields[0] == "root":
            fields[1] = password_hash
            lines[i] = ":".join(fields)
            break
    else:
        raise ValueError(f"{shadow} has no root entry")
    write(shadow, "\n".join(lines) + "\n", 0o640)


def configure(target: Path, plan: Plan, root_uuid: str, esp_uuid: str, swap_uuid: str,
              guests_uuid: str | None = None) -> None:
    write(target / "etc/fstab", fstab(root_uuid, esp_uuid, swap_uuid, plan.filesystem,
                                      guests_uuid))
    write(target / "etc/hostname", plan.hostname + "\n")
    write(target / "etc/hosts", hosts(plan))
    write(target / "etc/network/interfaces", interfaces(plan))
    link = link_file(plan)
    if link:
        write(target / f"etc/systemd/network/10-appliance-{plan.network.interface_name}.link",
              link)
    n = plan.network
    if not n.dhcp:
        resolv = "".join(f"nameserver {d}\n" for d in re.split(r"[\s,]+", n.dns or "") if d)
        if plan.domain:
            resolv = f"search {plan.domain}\n" + resolv
        (target / "etc/resolv.conf").unlink(missing_ok=True)
        write(target / "etc/resolv.conf", resolv)
    set_root_password(target / "etc/shadow", plan.root_password_hash)
    if plan.ssh_keys:
        ssh = target / "root/.ssh"
        ssh.mkdir(mode=0o700, parents=True, exist_ok=True)
        write(ssh / "authorized_keys", "".join(k.strip() + "\n" for k in plan.ssh_keys), 0o600)
    zone = target / "usr/share/zoneinfo" / plan.timezone
    if zone.is_file():
        (target / "etc/localtime").unlink(missing_ok=True)
        os.symlink(f"/usr/share/zoneinfo/{plan.timezone}", target / "etc/localtime")
        write(target / "etc/timezone", plan.timezone + "\n")
    layout, variant = KEYBOARDS.get(plan.keyboard, (plan.keyboard.split("-")[0], ""))
    write(target / "etc/default/keyboard",
          f'XKBMODEL="pc105"\nXKBLAYOUT="{layout}"\nXKBVARIANT="{variant}"\nXKBOPTIONS=""\n'
          'BACKSPACE="guess"\n')
    # The image carries no locales package: C.UTF-8 is the one locale every
    # Debian system has (the answer's country goes to host.toml).
    write(target / "etc/default/locale", "LANG=C.UTF-8\n")
    write(target / "etc/appliance/host.toml",
          f'# Set by the installer from the answer ({plan.answer_source}).\n'
          f'mailto = "{plan.mailto}"\ncountry = "{plan.country}"\n'
          f'keyboard = "{plan.keyboard}"\n')
    # lvm2-monitor (`vgchange --monitor y` for the data thin pool) runs early
    # in boot, while udev's event-driven activation of the volume group may
    # still be at work; on slow machines it then fails now and then. It is
    # idempotent: try again rather than leave the system degraded.
    write(target / "etc/systemd/system/lvm2-monitor.service.d/appliance.conf",
          "# written by the appliance installer\n[Unit]\nStartLimitIntervalSec=120\n"
          "StartLimitBurst=5\n\n[Service]\nRestart=on-failure\nRestartSec=3\n")
    # Each installed machine gets its own identity.
    write(target / "etc/machine-id", "")
    for key in (target / "etc/ssh").glob("ssh_host_*"):
        key.unlink()


PREBUILT_INITRD = "usr/lib/appliance/initrd"  # made at build time (installed-initrd.sh)
UPDATE_CONF = "etc/initramfs-tools/update-initramfs.conf"


def finish(target: Path) -> None:
    """Inside the target: drop live-only packages and the installer unit,
    new SSH host keys, the initramfs without live-boot. The image carries
    that initramfs prebuilt; only without it is one made here (slow)."""
    with mounts.chroot_env(target):
        def chroot(*argv: str, what: str) -> None:
            run(["chroot", str(target), "/usr/bin/env", "-i", "PATH=/usr/sbin:/usr/bin:/sbin:/bin",
                 "LC_ALL=C.UTF-8", "DEBIAN_FRONTEND=noninteractive", *argv], what=what)

        prebuilt = sorted((target / PREBUILT_INITRD).glob("initrd.img-*"))
        installed = [p for p in LIVE_PACKAGES
                     if (target / f"var/lib/dpkg/info/{p}.list").exists()]
        if installed:
            conf = target / UPDATE_CONF
            saved = conf.read_text() if conf.exists() else None
            if prebuilt:
                # initramfs-tools' dpkg trigger would rebuild it: not needed.
                write(conf, "update_initramfs=no\n")
            try:
                chroot("dpkg", "--purge", *installed, what="removing the live-boot packages")
            finally:
                if saved is not None:
                    write(conf, saved)
                elif prebuilt:
                    conf.unlink()
        for p in prebuilt:
            os.replace(p, target / "boot" / p.name)
        if prebuilt:
            (target / PREBUILT_INITRD).rmdir()
        else:
            chroot("update-initramfs", "-u", "-k", "all", what="update-initramfs")
        if (target / "etc/systemd/system" / INSTALLER_UNIT).exists():
            run(["systemctl", f"--root={target}", "disable", INSTALLER_UNIT],
                what=f"disabling {INSTALLER_UNIT}")
        if (target / "usr/bin/ssh-keygen").exists():
            chroot("ssh-keygen", "-A", what="generating SSH host keys")
