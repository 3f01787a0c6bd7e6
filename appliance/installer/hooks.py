"""What an answer asks for around the install itself:

- [first-boot]: a script run once at the installed system's first boot,
  taken from the ISO (`appliance prepare-iso --on-first-boot FILE`) or an
  HTTP(S) URL at install time, ordered before the network, after it is
  online, or when the system is fully up.
- [post-installation-webhook]: after a successful install, a JSON POST with
  what was installed where (host name, disk, addresses, SSH host keys, the
  machine's MACs and DMI data) to a URL, the certificate pinned if asked.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

from appliance.installer import files, source
from appliance.installer.plan import Plan

log = logging.getLogger("appliance.install")

SCRIPT = "var/lib/appliance/first-boot/script"
UNIT = "appliance-first-boot.service"
# ordering -> (unit dependencies, the target that pulls it in)
ORDERING = {
    "before-network": ("Before=network-pre.target\nWants=network-pre.target", "sysinit.target"),
    "network-online": ("After=network-online.target\nWants=network-online.target",
                       "multi-user.target"),
    "fully-up": ("After=multi-user.target", "multi-user.target"),
}


def first_boot_script(plan: Plan, medium: Path = source.LIVE_MEDIUM) -> bytes | None:
    fb = plan.first_boot
    if fb is None:
        return None
    if fb["source"] == "from-iso":
        path = medium / "appliance/first-boot"
        try:
            return path.read_bytes()
        except OSError as e:
            raise source.SourceError(
                f"first-boot.source = \"from-iso\", but the ISO has no {path} ({e.strerror}); "
                "add one with `appliance prepare-iso --on-first-boot FILE`") from None
    url = fb.get("url")
    if not url:
        raise source.SourceError("first-boot.source = \"from-url\" needs first-boot.url")
    data, _ = source.from_http(url, fb.get("cert-fingerprint"), source.machine_identity(),
                               max_bytes=source.FIRST_BOOT_MAX_BYTES,
                               deadline=source.FIRST_BOOT_DEADLINE,
                               allow_insecure=plan.allow_insecure, what="the first-boot hook")
    return data


def install_first_boot(target: Path, plan: Plan, script: bytes) -> None:
    deps, wanted_by = ORDERING[plan.first_boot["ordering"] if plan.first_boot else "fully-up"]
    path = target / SCRIPT
    path.parent.mkdir(parents=True, exist_ok=True)
    files.write_private(path, script, 0o700)
    unit = target / "etc/systemd/system" / UNIT
    unit.parent.mkdir(parents=True, exist_ok=True)
    unit.write_text(
        "# The answer file's [first-boot] hook: runs once, then removes itself.\n"
        "[Unit]\nDescription=appliance first-boot hook (from the install answer)\n"
        f"ConditionPathExists=/{SCRIPT}\nDefaultDependencies=no\nAfter=local-fs.target\n"
        f"{deps}\n\n[Service]\nType=oneshot\nExecStart=/{SCRIPT}\n"
        f"ExecStartPost=/bin/rm -f /{SCRIPT}\nStandardOutput=journal+console\n\n"
        f"[Install]\nWantedBy={wanted_by}\n")
    wants = target / "etc/systemd/system" / f"{wanted_by}.wants"
    wants.mkdir(parents=True, exist_ok=True)
    link = wants / UNIT
    if not link.is_symlink():
        os.symlink(f"/etc/systemd/system/{UNIT}", link)


def webhook_payload(plan: Plan, target: Path) -> dict[str, Any]:
    keys = {}
    for pub in sorted((target / "etc/ssh").glob("ssh_host_*_key.pub")):
        keys[pub.name.removeprefix("ssh_host_").removesuffix("_key.pub")] = \
            pub.read_text().strip()
    n = plan.network
    return {
        "status": "installed",
        "fqdn": plan.fqdn,
        "disk": plan.disk,
        "filesystem": plan.filesystem,
        "network": {"interface": n.interface_name or n.nic, "mac": n.mac, "cidr": n.cidr,
                    "gateway": n.gateway, "dns": n.dns, "bridge": "vmbr0"},
        "ssh-host-keys": keys,
        "machine": source.machine_identity(),
    }


def post_webhook(plan: Plan, target: Path) -> str:
    """POST the result; a webhook that fails is reported, not fatal."""
    assert plan.webhook is not None
    url, fp = plan.webhook
    body = json.dumps(webhook_payload(plan, target))
    try:
        source.from_http(url, fp, json.loads(body), attempts=3,
                         max_bytes=source.WEBHOOK_REPLY_MAX_BYTES,
                         deadline=source.WEBHOOK_DEADLINE, allow_insecure=plan.allow_insecure,
                         what="the webhook's reply")
    except source.SourceError as e:
        log.warning("post-installation webhook failed: %s", e)
        return f"post-installation webhook to {url} failed: {e}"
    return f"post-installation webhook: sent to {url}"
