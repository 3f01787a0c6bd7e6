"""Where the installer's answer comes from.

The kernel command line decides (`appliance.answer=iso|partition|http|<URL>`,
`appliance.answer-fingerprint=<SHA-256>`); without it, the ISO's
/appliance/auto-install.toml (written by `appliance prepare-iso`) does; with
neither, the install is interactive.

- iso:       /appliance/answer.toml on the installer medium
- partition: answer.toml on a file system labelled APPLIANCE-AIS (ext4 and
             others; APPL-AIS on FAT, whose labels have 11 characters at
             most; any case), mounted read-only
- http:      POST of this machine's MACs and DMI data (JSON) to the URL (from
             the command line, the ISO, or DHCP option 250), which
             answers with the answer file; HTTPS certificates are checked
             against a pinned SHA-256 fingerprint when one is given
"""

from __future__ import annotations

import contextlib
import hashlib
import http.client
import json
import logging
import re
import ssl
import subprocess
import tempfile
import time
import tomllib
import urllib.parse
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from appliance.errors import ApplianceError
from appliance.runner import run

log = logging.getLogger("appliance.install")

LIVE_MEDIUM = Path("/run/live/medium")
PARTITION_LABEL = "APPLIANCE-AIS"
# FAT volume labels have at most 11 characters: there it is APPL-AIS.
FAT_LABEL = "APPL-AIS"
LABELS = (PARTITION_LABEL, FAT_LABEL)
MODES = ("iso", "partition", "http")
FINGERPRINT = re.compile(r"[0-9a-fA-F]{2}(:?[0-9a-fA-F]{2}){31}")


class SourceError(ApplianceError):
    """The answer cannot be fetched."""

    exit_code = 6


@dataclass(frozen=True)
class Fetch:
    """How to get the answer: mode (iso, partition, http; None: interactive),
    the URL and pinned certificate fingerprint for http."""

    mode: str | None
    url: str | None = None
    fingerprint: str | None = None
    origin: str = ""  # where this decision came from (for the log)


def parse_cmdline(text: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for word in text.split():
        key, _, value = word.partition("=")
        if key.startswith("appliance."):
            out[key] = value
    return out


def normalize_fingerprint(fp: str, where: str) -> str:
    if not FINGERPRINT.fullmatch(fp.strip()):
        raise SourceError(f"{where}: {fp!r} is not a SHA-256 fingerprint (64 hex digits, "
                          "optionally in pairs separated by ':')")
    return fp.replace(":", "").lower().strip()


def decide(cmdline: str, medium: Path = LIVE_MEDIUM) -> Fetch:
    """The fetch mode from the kernel command line, else from the medium."""
    args = parse_cmdline(cmdline)
    fp = args.get("appliance.answer-fingerprint")
    if fp:
        fp = normalize_fingerprint(fp, "kernel command line appliance.answer-fingerprint")
    value = args.get("appliance.answer")
    if value:
        if value.startswith(("http://", "https://")):
            return Fetch("http", value, fp, "kernel command line")
        if value not in MODES:
            raise SourceError(f"kernel command line: appliance.answer={value}: expected one of "
                              f"{', '.join(MODES)} or an http(s) URL")
        return Fetch(value, None, fp, "kernel command line")
    auto = medium / "appliance/auto-install.toml"
    if auto.is_file():
        cfg = read_auto_install(auto)
        return Fetch(cfg["fetch-from"], cfg.get("url"), cfg.get("cert-fingerprint"), str(auto))
    return Fetch(None, origin="no answer configured")


def read_auto_install(path: Path) -> dict[str, str]:
    try:
        data = tomllib.loads(path.read_text())
    except (OSError, tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        raise SourceError(f"{path}: cannot read it: {e}") from None
    mode = data.get("fetch-from")
    if mode not in MODES:
        raise SourceError(f"{path}: fetch-from: expected one of {', '.join(MODES)}, "
                          f"got {mode!r}")
    url = data.get("url")
    if mode == "http" and url is not None and not str(url).startswith(("http://", "https://")):
        raise SourceError(f"{path}: url: {url!r} is not an http(s) URL")
    fp = data.get("cert-fingerprint")
    if fp is not None:
        data["cert-fingerprint"] = normalize_fingerprint(str(fp), f"{path}: cert-fingerprint")
    return {k: str(v) for k, v in data.items()}


def from_iso(medium: Path = LIVE_MEDIUM) -> tuple[bytes, str]:
    path = medium / "appliance/answer.toml"
    try:
        return path.read_bytes(), str(path)
    except OSError as e:
        raise SourceError(f"no answer on the installer medium: {path}: {e.strerror}") from None


def labelled(blkid_export: str) -> list[str]:
    """Devices in `blkid -o export` output whose label is one of LABELS (any case)."""
    found, dev = [], None
    for line in blkid_export.splitlines():
        if line.startswith("DEVNAME="):
            dev = line.split("=", 1)[1]
        elif line.startswith("LABEL=") and dev and line.split("=", 1)[1].upper() in LABELS:
            found.append(dev)
    return found


def find_labelled() -> list[str]:
    out = run(["blkid", "-o", "export"], what="blkid", capture=True, check=False)
    return labelled(out.stdout.decode(errors="replace"))


def from_partition() -> tuple[bytes, str]:
    devices = find_labelled()
    if not devices:
        raise SourceError(f"no file system labelled {PARTITION_LABEL} (or {FAT_LABEL} on FAT) "
                          "found (looked with blkid)")
    if len(devices) > 1:
        raise SourceError(f"{len(devices)} file systems are labelled {PARTITION_LABEL} "
                          f"({', '.join(devices)}); leave exactly one attached")
    with tempfile.TemporaryDirectory(prefix="appliance-ais-") as mnt:
        run(["mount", "-o", "ro", devices[0], mnt], what=f"mounting {devices[0]}")
        try:
            for name in ("answer.toml", "ANSWER.TOM"):
                p = Path(mnt, name)
                if p.is_file():
                    return p.read_bytes(), f"{devices[0]}:/{name}"
            raise SourceError(f"{devices[0]} (label {PARTITION_LABEL}) has no answer.toml")
        finally:
            run(["umount", mnt], what="umount", check=False)


def machine_identity(sysfs: Path = Path("/sys")) -> dict[str, Any]:
    """What an answer server gets to pick the answer: MACs and DMI data."""
    nics = []
    for dev in sorted((sysfs / "class/net").glob("*")):
        if not (dev / "device").exists():
            continue  # virtual
        with contextlib.suppress(OSError):
            nics.append({"name": dev.name, "mac": (dev / "address").read_text().strip()})
    dmi = {}
    for key in ("sys_vendor", "product_name", "product_serial", "product_uuid",
                "board_vendor", "board_name", "board_serial"):
        with contextlib.suppress(OSError):
            dmi[key] = (sysfs / "class/dmi/id" / key).read_text().strip()
    return {"network_interfaces": nics, "dmi": dmi}


def _has_ipv4(nic: str) -> bool:
    out = subprocess.run(["ip", "-4", "-o", "addr", "show", "dev", nic, "scope", "global"],
                         capture_output=True, text=True, check=False)
    return bool(out.stdout.strip())


def bring_up_network(sysfs: Path = Path("/sys"), timeout: int = 30) -> list[str]:
    """An IPv4 lease on every physical NIC that gets one. live-boot may have
    told ifupdown to run DHCP on the NIC already (ifup@.service): then this
    waits for that lease instead of racing it."""
    nics = [d.name for d in sorted((sysfs / "class/net").glob("*")) if (d / "device").exists()]
    for nic in nics:
        run(["ip", "link", "set", nic, "up"], what="ip link", check=False)
        if not _has_ipv4(nic):
            subprocess.run(["timeout", str(timeout), "dhclient", "-1", "-4", nic],
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, check=False)
    up, deadline = [], time.monotonic() + timeout
    for nic in nics:
        while not _has_ipv4(nic) and time.monotonic() < deadline:
            time.sleep(0.5)
        if _has_ipv4(nic):
            up.append(nic)
        else:
            log.info("no DHCP lease on %s", nic)
    return up


def from_http(url: str, fingerprint: str | None, identity: dict[str, Any],
              timeout: float = 30, attempts: int = 5) -> tuple[bytes, str]:
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise SourceError(f"{url}: not an http(s) URL")
    if parts.scheme == "http" and fingerprint:
        raise SourceError(f"{url}: a certificate fingerprint needs an https URL")
    body = json.dumps(identity).encode()
    path = parts.path or "/"
    if parts.query:
        path += "?" + parts.query
    last: Exception | None = None
    for attempt in range(attempts):
        try:
            conn: http.client.HTTPConnection
            if parts.scheme == "https":
                conn = http.client.HTTPSConnection(
                    parts.hostname, parts.port or 443, timeout=timeout,
                    context=_tls_context(fingerprint))
            else:
                conn = http.client.HTTPConnection(parts.hostname, parts.port or 80,
                                                  timeout=timeout)
            try:
                conn.connect()
                if fingerprint:
                    _check_fingerprint(conn, fingerprint, url)
                conn.request("POST", path, body, {"Content-Type": "application/json"})
                resp = conn.getresponse()
                data = resp.read()
            finally:
                conn.close()
        except (OSError, http.client.HTTPException) as e:
            last = e
            log.info("fetching %s (attempt %d): %s", url, attempt + 1, e)
            if attempt + 1 < attempts:
                time.sleep(min(2 ** attempt, 10))
            continue
        if resp.status != 200:
            raise SourceError(f"{url} answered {resp.status} {resp.reason}")
        return data, url
    raise SourceError(f"cannot fetch the answer from {url}: {last}")


def _tls_context(fingerprint: str | None) -> ssl.SSLContext:
    if fingerprint is None:
        return ssl.create_default_context()
    # Pinned: the certificate is trusted by its fingerprint alone (self-signed
    # answer servers), checked right after the handshake.
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


def _check_fingerprint(conn: http.client.HTTPConnection, fingerprint: str, url: str) -> None:
    sock = conn.sock
    if not isinstance(sock, ssl.SSLSocket):
        raise SourceError(f"{url}: no TLS connection to check the fingerprint of")
    der = sock.getpeercert(binary_form=True) or b""
    got = hashlib.sha256(der).hexdigest()
    if got != fingerprint:
        raise SourceError(f"{url}: the server's certificate has SHA-256 fingerprint {got}, "
                          f"not the pinned {fingerprint}; refusing its answer")


LEASES = Path("/var/lib/dhcp")
LEASE_OPTION = re.compile(r'option appliance-answer-(url|fingerprint) "([^"]*)";')


def from_dhcp_leases(leases: Path | None = None) -> tuple[str, str | None] | None:
    """The answer URL (and certificate fingerprint) a DHCP server sent
    (options 250/251, see /etc/dhcp/dhclient.conf), from the newest lease."""
    found: dict[str, str] = {}
    files = sorted((leases or LEASES).glob("dhclient*.leases"), key=lambda p: p.stat().st_mtime)
    for f in files:
        with contextlib.suppress(OSError):
            for lease in f.read_text(errors="replace").split("lease {")[1:]:
                opts = dict(LEASE_OPTION.findall(lease))
                if "url" in opts:
                    found = opts
    if "url" not in found:
        return None
    fp = found.get("fingerprint")
    return found["url"], normalize_fingerprint(fp, "DHCP option 251") if fp else None


def fetch(how: Fetch, medium: Path = LIVE_MEDIUM) -> tuple[bytes, str]:
    """The answer file's bytes and where they came from."""
    if how.mode == "iso":
        return from_iso(medium)
    if how.mode == "partition":
        return from_partition()
    if how.mode == "http":
        url, fingerprint = how.url, how.fingerprint
        if not url:
            dhcp = from_dhcp_leases()
            if dhcp is None:
                raise SourceError(
                    f"{how.origin}: fetch the answer over HTTP, but from where? No URL was "
                    "given (appliance.answer=https://...) and no DHCP server sent one "
                    "(option 250)")
            url, fingerprint = dhcp[0], fingerprint or dhcp[1]
            log.info("answer URL from DHCP: %s", url)
        return from_http(url, fingerprint, machine_identity())
    raise SourceError("no answer source configured")


def kernel_cmdline() -> str:
    try:
        return Path("/proc/cmdline").read_text()
    except OSError:
        return ""
