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
             against a pinned SHA-256 fingerprint when one is given, else
             against the trusted CAs

Every fetch over HTTP (the answer, the first-boot hook, the webhook) goes
through `from_http`: HTTPS only (plain http:// only when the ISO was made with
`prepare-iso --allow-insecure`), a size cap, and an overall deadline that also
cuts off a server trickling its reply a byte at a time.
"""

from __future__ import annotations

import contextlib
import hashlib
import http.client
import json
import logging
import re
import socket
import ssl
import subprocess
import tempfile
import threading
import time
import tomllib
import urllib.parse
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from appliance.answer.keys import normalize_fingerprint as canonical_fingerprint
from appliance.answer.parse import MAX_ANSWER_BYTES
from appliance.errors import InstallerError
from appliance.runner import run

log = logging.getLogger("appliance.install")

LIVE_MEDIUM = Path("/run/live/medium")
PARTITION_LABEL = "APPLIANCE-AIS"
# FAT volume labels have at most 11 characters: there it is APPL-AIS.
FAT_LABEL = "APPL-AIS"
LABELS = (PARTITION_LABEL, FAT_LABEL)
MODES = ("iso", "partition", "http")
# Caps and overall deadlines (seconds, all attempts together) of each fetch.
ANSWER_MAX_BYTES = MAX_ANSWER_BYTES  # 1 MiB, as any answer file
ANSWER_DEADLINE = 120.0
FIRST_BOOT_MAX_BYTES = 64 << 20  # the first-boot hook executable
FIRST_BOOT_DEADLINE = 600.0
WEBHOOK_REPLY_MAX_BYTES = 64 << 10  # what the webhook answers is not used
WEBHOOK_DEADLINE = 60.0
INSECURE_HINT = ("use https:// (with cert-fingerprint, or a certificate a trusted CA signed), "
                 "or make the ISO with `appliance prepare-iso --allow-insecure`")


class SourceError(InstallerError):
    """The answer cannot be fetched."""


@dataclass(frozen=True)
class Fetch:
    """How to get the answer: mode (iso, partition, http; None: interactive),
    the URL and pinned certificate fingerprint for http; allow_insecure when
    the ISO was made with `prepare-iso --allow-insecure` (plain http:// then
    works for the answer, the first-boot hook and the webhook)."""

    mode: str | None
    url: str | None = None
    fingerprint: str | None = None
    origin: str = ""  # where this decision came from (for the log)
    allow_insecure: bool = False


def parse_cmdline(text: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for word in text.split():
        key, _, value = word.partition("=")
        if key.startswith("appliance."):
            out[key] = value
    return out


def normalize_fingerprint(fp: str, where: str) -> str:
    """`fp` as every pinned fetch compares it (appliance.answer.keys'
    normalize_fingerprint: lower-case hex, no colons), or SourceError."""
    norm = canonical_fingerprint(fp)
    if norm is None:
        raise SourceError(f"{where}: {fp[:100]!r} is not a SHA-256 fingerprint (64 hex digits, "
                          "optionally in pairs separated by ':')")
    return norm


def decide(cmdline: str, medium: Path = LIVE_MEDIUM) -> Fetch:
    """The fetch mode from the kernel command line, else from the medium."""
    args = parse_cmdline(cmdline)
    fp = args.get("appliance.answer-fingerprint")
    if fp:
        fp = normalize_fingerprint(fp, "kernel command line appliance.answer-fingerprint")
    auto = medium / "appliance/auto-install.toml"
    cfg = read_auto_install(auto) if auto.is_file() else None
    # Only the ISO's own configuration (prepare-iso --allow-insecure) allows http://.
    insecure = cfg is not None and cfg.get("allow-insecure") == "true"
    value = args.get("appliance.answer")
    if value:
        if value.startswith(("http://", "https://")):
            return Fetch("http", value, fp, "kernel command line", insecure)
        if value not in MODES:
            raise SourceError(f"kernel command line: appliance.answer={value}: expected one of "
                              f"{', '.join(MODES)} or an http(s) URL")
        return Fetch(value, None, fp, "kernel command line", insecure)
    if cfg is not None:
        return Fetch(cfg["fetch-from"], cfg.get("url"), cfg.get("cert-fingerprint"), str(auto),
                     insecure)
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
    insecure = data.get("allow-insecure", False)
    if not isinstance(insecure, bool):
        raise SourceError(f"{path}: allow-insecure: expected true or false, got {insecure!r}")
    data["allow-insecure"] = "true" if insecure else "false"
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


def from_http(url: str, fingerprint: str | None, identity: dict[str, Any], *,
              max_bytes: int = ANSWER_MAX_BYTES, deadline: float = ANSWER_DEADLINE,
              allow_insecure: bool = False, attempts: int = 5,
              what: str = "the answer") -> tuple[bytes, str]:
    """POST `identity` (JSON) to `url` and return the reply's body (at most
    `max_bytes`) and the URL. HTTPS with the certificate pinned by
    `fingerprint` (any form normalize_fingerprint takes: `AA:BB:...` or hex)
    or signed by a trusted CA; plain http:// only with `allow_insecure`.
    Connection failures are retried (`attempts`), all of them within
    `deadline` seconds, reading included: a server that trickles its reply
    is cut off. Everything else is a SourceError at once."""
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise SourceError(f"{url}: not an http(s) URL")
    if parts.scheme == "http" and fingerprint:
        raise SourceError(f"{url}: a certificate fingerprint needs an https URL")
    if parts.scheme == "http" and not allow_insecure:
        raise SourceError(f"{url}: fetching {what} over plain http:// is refused: "
                          f"{INSECURE_HINT}")
    pin = normalize_fingerprint(fingerprint, f"{url}: certificate fingerprint") \
        if fingerprint else None
    body = json.dumps(identity).encode()
    end = time.monotonic() + deadline
    last: Exception | None = None
    for attempt in range(attempts):
        try:
            return _post(parts, url, pin, body, max_bytes, end, what), url
        except _DeadlinePassed:
            raise SourceError(f"cannot fetch {what} from {url}: no complete reply within "
                              f"the deadline of {deadline:g} s") from None
        except (OSError, http.client.HTTPException) as e:
            last = e
            log.info("fetching %s (attempt %d): %s", url, attempt + 1, e)
            pause = min(2 ** attempt, 10, end - time.monotonic())
            if attempt + 1 < attempts and pause > 0:
                time.sleep(pause)
            if time.monotonic() >= end:
                break
    raise SourceError(f"cannot fetch {what} from {url}: {last}")


class _DeadlinePassed(Exception):
    pass


def _post(parts: urllib.parse.SplitResult, url: str, pin: str | None, body: bytes,
          max_bytes: int, end: float, what: str) -> bytes:
    """One POST, bounded by the monotonic time `end`: a watchdog shuts the
    socket down then, whatever it is waiting for (handshake, headers, body)."""
    https = parts.scheme == "https"
    host = parts.hostname or ""
    port = parts.port or (443 if https else 80)
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    if time.monotonic() >= end:
        raise _DeadlinePassed
    sock: socket.socket = socket.create_connection((host, port),
                                                   timeout=end - time.monotonic())
    expired = threading.Event()

    def expire() -> None:
        expired.set()
        with contextlib.suppress(OSError):
            # the plain socket's shutdown (not TLS's): wakes up any blocked read
            socket.socket.shutdown(sock, socket.SHUT_RDWR)

    timer = threading.Timer(max(0.0, end - time.monotonic()), expire)
    timer.daemon = True
    timer.start()
    try:
        if https:
            sock = _tls_context(pin).wrap_socket(sock, server_hostname=host,
                                                 do_handshake_on_connect=False)
            sock.do_handshake()
            if pin:
                _check_fingerprint(sock, pin, url, what)
        conn = http.client.HTTPConnection(host, port)
        conn.sock = sock
        conn.request("POST", path, body, {"Content-Type": "application/json"})
        resp = conn.getresponse()
        if resp.status != 200:
            raise SourceError(f"{url} answered {resp.status} {resp.reason}")
        length = resp.getheader("Content-Length") or ""
        if length.isdigit() and int(length) > max_bytes:
            raise SourceError(_too_big(url, what, max_bytes, f"{int(length)} bytes"))
        data = bytearray()
        while chunk := resp.read(min(1 << 16, max_bytes + 1 - len(data))):
            data += chunk
            if len(data) > max_bytes:
                raise SourceError(_too_big(url, what, max_bytes, "more"))
        if expired.is_set():
            raise _DeadlinePassed
        if length.isdigit() and len(data) != int(length):  # http.client does not say
            raise http.client.IncompleteRead(bytes(data), int(length) - len(data))
        return bytes(data)
    except (OSError, http.client.HTTPException):
        if expired.is_set():
            raise _DeadlinePassed from None
        raise
    finally:
        timer.cancel()
        sock.close()


def _too_big(url: str, what: str, cap: int, got: str) -> str:
    return (f"{url}: {what} is larger than the {cap / 2**20:g} MiB allowed ({got}); "
            "refusing it")


def _tls_context(fingerprint: str | None) -> ssl.SSLContext:
    if fingerprint is None:
        return ssl.create_default_context()
    # Pinned: the certificate is trusted by its fingerprint alone (self-signed
    # answer servers), checked right after the handshake.
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


def _check_fingerprint(sock: ssl.SSLSocket, fingerprint: str, url: str, what: str) -> None:
    der = sock.getpeercert(binary_form=True) or b""
    got = hashlib.sha256(der).hexdigest()
    if got != fingerprint:
        pairs = ":".join(got[i:i + 2] for i in range(0, 64, 2)).upper()
        raise SourceError(f"{url}: the server's certificate has SHA-256 fingerprint {pairs}, "
                          f"not the pinned one; refusing {what}")


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
        return from_http(url, fingerprint, machine_identity(), max_bytes=ANSWER_MAX_BYTES,
                         deadline=ANSWER_DEADLINE, allow_insecure=how.allow_insecure)
    raise SourceError("no answer source configured")


def kernel_cmdline() -> str:
    try:
        return Path("/proc/cmdline").read_text()
    except OSError:
        return ""
