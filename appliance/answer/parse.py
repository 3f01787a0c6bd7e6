"""Read and validate an answer file, offline: `load_answer(path) -> Answer`.

Keys are parsed by the tables in appliance.answer.keys; here live the
checks that span keys (password given once, disk-list or filter, RAID disk
counts, swap versus disk size...). Every error is an AnswerError naming the
file (with the line when it can be found), the dotted key and the reason:

    answer.toml:12: disk-setup.lvm.swapsize: swap size 16.01 GiB cannot be
    greater than 16 GiB (hard disk size / 2)
"""

from __future__ import annotations

import os
import re
import tomllib
import zoneinfo
from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path
from typing import Any

from appliance.answer import keys as K
from appliance.answer.model import (
    Answer,
    BtrfsOptions,
    DiskSetupSection,
    FirstBootSection,
    GlobalSection,
    InterfacePinning,
    LvmOptions,
    NetworkSection,
    WebhookSection,
    ZfsOptions,
)
from appliance.errors import AnswerError
from appliance.recipe.schema import OptionError

ROOT_PASSWORD_MIN_LENGTH = 8
# The smallest disk (or hdsize) we install on. Our own choice: the host system
# takes about 2 GiB, plus ESP, swap and LVM headroom; below 8 GiB nothing is
# left for guests and upgrades fail. (Not a Proxmox number.)
MIN_DISK_GIB = 8.0
# The GTK installer's placeholder address; an answer copying it is a mistake.
EMAIL_PLACEHOLDER = "mail@example.invalid"
# The WHATWG HTML definition of a valid e-mail address (<input type="email">).
EMAIL = re.compile(
    r"[a-zA-Z0-9.!#$%&'*+/=?^_`{|}~-]+@[a-zA-Z0-9](?:[a-zA-Z0-9-]{0,61}[a-zA-Z0-9])?"
    r"(?:\.[a-zA-Z0-9](?:[a-zA-Z0-9-]{0,61}[a-zA-Z0-9])?)*"
)
LABEL = re.compile(r"[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?")
ISO3166 = Path("/usr/share/zoneinfo/iso3166.tab")
# Bounds on what an answer file may hold, so a hostile one gets a clear error
# instead of crashing or stalling the parser (tomllib recurses per nesting level
# and is quadratic in the parts of one dotted key). Real answers stay far below.
MAX_ANSWER_BYTES = 1 << 20  # 1 MiB (also the cap on an answer fetched over HTTP)
MAX_NESTING = 10  # [ and { inside each other; parts of one dotted key or [table.name]
MAX_NUMBER_DIGITS = 100  # Python refuses int strings of more than 4300 digits


# --- errors with file:line ---------------------------------------------------------


def locate(text: str, dotted: str) -> int | None:
    """Line of the dotted key (`disk-setup.lvm.swapsize`) in TOML `text`: written
    as `swapsize` under `[disk-setup.lvm]`, `lvm.swapsize` under `[disk-setup]`,
    and so on; else the line of its closest enclosing table or key."""
    want = [re.sub(r"\[\d+\]$", "", p) for p in dotted.split(".") if p]
    best: tuple[int, int] | None = None  # (matched parts, line)
    table: list[str] = []
    for n, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        m = re.fullmatch(r"\[\[?\s*([^\]]+?)\s*\]\]?\s*(#.*)?", line)
        if m:
            table = _split_key(m.group(1))
            path = table
        else:
            km = re.match(r'((?:"[^"]*"|\'[^\']*\'|[A-Za-z0-9_.\s-])+?)\s*=', line)
            if not km:
                continue
            path = table + _split_key(km.group(1))
        common = 0
        for a, b in zip(path, want, strict=False):
            if a != b and a.replace("_", "-") != b:
                break
            common += 1
        if common and (best is None or common > best[0]):
            best = (common, n)
            if common == len(want):
                break
    return best[1] if best else None


def _split_key(key: str) -> list[str]:
    parts = re.findall(r'"([^"]*)"|\'([^\']*)\'|([^.\s"\']+)', key)
    return [a or b or c for a, b, c in parts]


def error(source: str, text: str | None, key: str, reason: str) -> AnswerError:
    line = locate(text, key) if text is not None and key else None
    if len(key) > 120:  # a hostile file's key: enough of it to find it
        key = key[:100] + "…"
    loc = f"{source}:{line}" if line else source
    return AnswerError(f"{loc}: {key}: {reason}" if key else f"{loc}: {reason}",
                       file=source, line=line, key=key or None, reason=reason)


# --- loading -------------------------------------------------------------------------


def load_answer(path: str | os.PathLike[str]) -> Answer:
    """Read, parse and validate an answer file (raises AnswerError)."""
    source = os.fspath(path)
    try:
        with open(path, "rb") as f:
            data = f.read(MAX_ANSWER_BYTES + 1)
        text = data.decode("utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise AnswerError(f"{source}: cannot read the answer file: {e}", file=source) from e
    return parse_answer(text, source)


def parse_answer(text: str, source: str = "answer.toml") -> Answer:
    """Parse and validate answer-file text; `source` names it in errors."""
    if len(text) > MAX_ANSWER_BYTES or len(text.encode("utf-8", "replace")) > MAX_ANSWER_BYTES:
        reason = (f"larger than {MAX_ANSWER_BYTES // 1024} KiB: not an answer file (answer "
                  "files are a few hundred bytes)")
        raise AnswerError(f"{source}: {reason}", file=source, reason=reason)
    check_bounds(text, source)
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        m = re.search(r"at line (\d+)", str(e))
        line = int(m.group(1)) if m else None
        loc = f"{source}:{line}" if line else source
        raise AnswerError(f"{loc}: not valid TOML: {e}", file=source, line=line,
                          reason=f"not valid TOML: {e}") from None
    except (ValueError, RecursionError) as e:  # what check_bounds should have caught first
        reason = f"cannot be read as TOML: {type(e).__name__}: {str(e)[:200]}"
        raise AnswerError(f"{source}: {reason}", file=source, reason=reason) from None
    try:
        parsed = K.ANSWER.parse(data)
        return _build(parsed, source, text)
    except OptionError as e:
        raise error(source, text, e.key_path(), e.reason) from None


# The TOML tokens that matter to check_bounds: string openers, comments,
# brackets, key separators, line ends, and long runs of digits.
_TOKEN = re.compile(r'"""|\'\'\'|["\'#\[\]{}.=,\n]|[0-9][0-9_]{' + str(MAX_NUMBER_DIGITS - 1)
                    + ",}")
_BASIC_REST = re.compile(r'(?:[^"\\\n]|\\.)*"')


def check_bounds(text: str, source: str) -> None:
    """Refuse, before tomllib sees it, TOML nested more than MAX_NESTING deep
    (brackets, or parts of one dotted key or table name) and numbers longer
    than MAX_NUMBER_DIGITS digits. One linear pass that skips strings and
    comments; the error names the line and the key it is under."""
    line, pos, n = 1, 0, len(text)
    stack: list[str] = []  # open [ and { of values (and of a [table] header)
    in_key, header, parts, key_line = True, False, 1, 1

    def fail(why: str, at: int) -> AnswerError:
        key = _key_at(text, at)
        return error(source, text, key, why) if key else AnswerError(
            f"{source}:{at}: {why}", file=source, line=at, reason=why)

    while pos < n:
        m = _TOKEN.search(text, pos)
        if m is None:
            break
        tok, pos = m.group(), m.end()
        if tok == "\n":
            line += 1
            if not stack:
                in_key, header, parts, key_line = True, False, 1, line
        elif tok in ('"""', "'''"):
            end = text.find(tok, pos)
            while tok == '"""' and end > 0 and _escaped(text, end):
                end = text.find(tok, end + 1)
            if end < 0:
                return  # unterminated: tomllib says so
            line += text.count("\n", pos, end)
            pos = end + 3
        elif tok == '"':
            rest = _BASIC_REST.match(text, pos)
            if rest is None:
                return
            pos = rest.end()
        elif tok == "'":
            end = text.find("'", pos)
            if end < 0:
                return
            pos = end + 1
        elif tok == "#":
            end = text.find("\n", pos)
            pos = n if end < 0 else end
        elif tok in "[{":
            if tok == "[" and in_key and not stack:
                header = True
            stack.append(tok)
            if len(stack) > MAX_NESTING:
                raise fail(f"nested more than {MAX_NESTING} levels deep", line)
            if tok == "{":
                in_key, parts, key_line = True, 1, line
        elif tok in "]}":
            if stack:
                stack.pop()
            if header and not stack:
                header = in_key = False
        elif tok == ",":
            if stack and stack[-1] == "{":
                in_key, parts, key_line = True, 1, line
        elif tok == "=":
            in_key = False
        elif tok == ".":
            if in_key or header:
                parts += 1
                if parts > MAX_NESTING:
                    raise fail(f"a key of more than {MAX_NESTING} dotted parts", key_line)
        else:  # a long run of digits
            raise fail(f"a number of more than {MAX_NUMBER_DIGITS} digits", line)


def _escaped(text: str, at: int) -> bool:
    """Whether text[at] is escaped by an odd number of backslashes."""
    k = at
    while k > 0 and text[k - 1] == "\\":
        k -= 1
    return (at - k) % 2 == 1


def _key_at(text: str, line: int) -> str:
    """The dotted key written on `line` (with its [table]), or the table's name;
    "" when there is none. Keys are cut to 60 characters."""
    table = ""
    for n, raw in enumerate(text.splitlines()[:line], start=1):
        stripped = raw.strip()
        header = re.match(r"\[\[?\s*([A-Za-z0-9_.\-]{1,60})", stripped)
        if header:
            table = header.group(1)
        if n == line:
            if header:
                return table
            km = re.match(r"([A-Za-z0-9_\-]{1,60}(?:\.[A-Za-z0-9_\-]{1,60}){0,"
                          + str(MAX_NESTING) + r"})\s*=", stripped)
            key = km.group(1) if km else ""
            return ".".join(p for p in (table, key) if p)
    return table


def _fail(reason: str, *path: str | int) -> OptionError:
    return OptionError(reason, list(path))


def _build(d: dict[str, Any], source: str, text: str) -> Answer:
    return Answer(
        source=source,
        text=text,
        global_=_global(d["global"]),
        network=_network(d["network"]),
        disk_setup=_disk_setup(d["disk-setup"]),
        first_boot=_first_boot(d["first-boot"]),
        webhook=WebhookSection(d["post-installation-webhook"]["url"],
                               d["post-installation-webhook"]["cert-fingerprint"])
        if d["post-installation-webhook"] else None,
    )


# --- [global] ---------------------------------------------------------------------


def check_fqdn(name: str) -> str | None:
    """Why `name` is not a usable FQDN (host.domain), or None when it is."""
    if len(name) > 253:
        return f"{name!r} is too long ({len(name)} > 253 characters)"
    parts = name.split(".")
    for part in parts:
        if not LABEL.fullmatch(part):
            return (f"{name!r}: part {part!r} is not a valid name (letters, digits and "
                    "inner dashes, 1 to 63 characters)")
    if len(parts) < 2:
        return (f"{name!r} is a host name only: either a fully-qualified domain name "
                "(host.domain) or fqdn.source = \"from-dhcp\" must be specified")
    if parts[0].isdigit():
        return f"{name!r}: the host name cannot be purely numeric"
    return None


def check_domain(domain: str) -> str | None:
    for part in domain.split("."):
        if not LABEL.fullmatch(part):
            return f"{domain!r}: part {part!r} is not a valid domain name part"
    return None


@lru_cache(maxsize=1)
def _timezones() -> frozenset[str]:
    return frozenset(zoneinfo.available_timezones())


@lru_cache(maxsize=1)
def _countries() -> frozenset[str]:
    """Country codes from tzdata's iso3166.tab (empty when it is missing: then
    the country is not checked)."""
    try:
        lines = ISO3166.read_text(encoding="utf-8").splitlines()
    except OSError:
        return frozenset()
    return frozenset(ln.split("\t")[0].lower() for ln in lines if ln and not ln.startswith("#"))


def _global(g: dict[str, Any]) -> GlobalSection:
    fqdn = g["fqdn"]
    if isinstance(fqdn, str):
        if why := check_fqdn(fqdn):
            raise _fail(why, "global", "fqdn")
        static, domain = fqdn, None
    else:
        static = None
        domain = fqdn["domain"] or None  # an empty domain means "not set", as in Proxmox
        if domain is not None and (why := check_domain(domain)):
            raise _fail(why, "global", "fqdn", "domain")

    country = g["country"]
    countries = _countries()
    if countries and country not in countries:
        hint = " (write it in lower case)" if country.lower() in countries else ""
        raise _fail(f"country code {country!r} is not valid{hint}", "global", "country")
    tz = g["timezone"]
    if tz != "UTC" and tz not in _timezones():
        raise _fail(f"time zone {tz!r} is not valid (e.g. \"Europe/Vienna\", \"UTC\")",
                    "global", "timezone")
    mail = g["mailto"]
    if not EMAIL.fullmatch(mail):
        raise _fail(f"{mail!r} does not look like an email address (user@domain.tld)",
                    "global", "mailto")
    if mail == EMAIL_PLACEHOLDER:
        raise _fail(f"{mail!r} is the installer's placeholder, not an address", "global",
                    "mailto")

    plain, hashed = g["root-password"], g["root-password-hashed"]
    if plain is not None and hashed is not None:
        raise _fail("global.root-password and global.root-password-hashed cannot be set at "
                    "the same time", "global", "root-password")
    if plain is None and hashed is None:
        raise _fail("one of global.root-password or global.root-password-hashed must be set",
                    "global", "root-password")
    if plain is not None and len(plain) < ROOT_PASSWORD_MIN_LENGTH:
        raise _fail(f"global.root-password must be at least {ROOT_PASSWORD_MIN_LENGTH} "
                    "characters long", "global", "root-password")
    if plain is not None and ("\n" in plain or "\0" in plain):
        raise _fail("the password cannot contain a newline or NUL", "global", "root-password")
    if hashed is not None and not re.fullmatch(r"\$[^\s:]+", hashed):
        raise _fail("expected a crypt(3) hash such as the output of `openssl passwd -6`",
                    "global", "root-password-hashed")
    for i, k in enumerate(g["root-ssh-keys"]):
        if not re.fullmatch(r"(\S+ )?(ssh|ecdsa|sk-)\S* [A-Za-z0-9+/=]+( [^\n]*)?", k):
            raise _fail(f"{k[:40]!r} is not an SSH public key (ssh-ed25519 AAAA… comment)",
                        "global", "root-ssh-keys", i)
    return GlobalSection(
        keyboard=g["keyboard"],
        country=country,
        fqdn=static,
        fqdn_domain=domain,
        mailto=mail,
        timezone=tz,
        root_password=plain,
        root_password_hashed=hashed,
        root_ssh_keys=tuple(g["root-ssh-keys"]),
        reboot_on_error=g["reboot-on-error"],
        reboot_mode=g["reboot-mode"],
        require_hardware_virtualization=g["require-hardware-virtualization"],
    )


# --- [network] --------------------------------------------------------------------


def _network(n: dict[str, Any]) -> NetworkSection:
    manual = ("cidr", "gateway", "dns", "filter")
    if n["source"] == "from-answer":
        for key in manual[:3]:  # without a filter: the NIC DHCP would have used
            if n[key] is None:
                raise _fail("required with source = \"from-answer\"", "network", key)
    else:
        for key in manual:
            if n[key] is not None:
                raise _fail("not supported with source = \"from-dhcp\" (set source = "
                            "\"from-answer\" to configure the network here)", "network", key)
    pin = n["interface-name-pinning"]
    return NetworkSection(
        source=n["source"],
        cidr=n["cidr"],
        gateway=n["gateway"],
        dns=n["dns"],
        filter=n["filter"] or {},
        interface_name_pinning=InterfacePinning(pin["enabled"], pin["mapping"]) if pin else None,
    )


# --- [disk-setup] -------------------------------------------------------------------


def raid_label(filesystem: str, raid: str | None) -> str:
    """Proxmox's name of a layout: "ext4", "zfs (RAID10)", "btrfs (RAID1)"."""
    return f"{filesystem} ({raid.upper()})" if raid else filesystem


def check_raid_disks(filesystem: str, raid: str, count: int,
                     path: Sequence[str | int]) -> None:
    need = K.RAID_MIN_DISKS[raid]
    fs = {"zfs": "ZFS", "btrfs": "Btrfs"}.get(filesystem, filesystem)
    if count < need:
        raise OptionError(f"{fs} {raid.upper()} needs at least {need} disks, got {count}",
                          list(path))
    if raid == "raid10" and count % 2:
        raise OptionError(f"{fs} RAID10 needs an even number of disks, got {count}",
                          list(path))


def check_swapsize(swapsize: float, hdsize: float, path: Sequence[str | int]) -> None:
    if swapsize > hdsize / 2:
        raise OptionError(f"swap size {swapsize:g} GiB cannot be greater than "
                          f"{hdsize / 2:g} GiB (hard disk size / 2)", list(path))


def _disk_setup(s: dict[str, Any]) -> DiskSetupSection:
    fs = s["filesystem"]
    disks: list[str] = s["disk-list"]
    if not disks and s["filter"] is None:
        raise _fail("either disk-list or filter must be set", "disk-setup")
    if disks and s["filter"] is not None:
        raise _fail("disk-list and filter cannot both be set", "disk-setup", "filter")
    seen: set[str] = set()
    for i, name in enumerate(disks):
        if name in seen:
            raise _fail(f"the list of disks contains duplicate device {name}",
                        "disk-setup", "disk-list", i)
        seen.add(name)
    own = {"ext4": "lvm", "xfs": "lvm", "zfs": "zfs", "btrfs": "btrfs"}[fs]
    for other in ("lvm", "zfs", "btrfs"):
        if other != own and s[other] is not None:
            raise _fail(f"{other}.* options do not apply to filesystem = {fs!r} (only "
                        f"{own}.* do)", "disk-setup", other)

    lvm = zfs = btrfs = None
    hdsize: float | None = None
    if own == "lvm":
        if len(disks) > 1:
            raise _fail(f"{fs} is installed on exactly one disk, the list has {len(disks)} "
                        "(use zfs or btrfs for several)", "disk-setup", "disk-list")
        lvm = LvmOptions(**{k: v for k, v in (s["lvm"] or {}).items()})
        hdsize = lvm.hdsize
        if lvm.swapsize is not None and lvm.hdsize is not None:
            check_swapsize(lvm.swapsize, lvm.hdsize, ["disk-setup", "lvm", "swapsize"])
        for key in ("maxroot", "maxvz", "minfree"):
            value = getattr(lvm, key)
            if value is not None and lvm.hdsize is not None and value > lvm.hdsize:
                raise _fail(f"{value:g} GiB is more than hdsize ({lvm.hdsize:g} GiB)",
                            "disk-setup", "lvm", key)
    else:
        opts = s[own]
        if opts is None or opts["raid"] is None:
            raise _fail(f"the RAID level {own}.raid must be set for filesystem = {fs!r}",
                        "disk-setup", own, "raid")
        if disks:
            check_raid_disks(fs, opts["raid"], len(disks), ["disk-setup", "disk-list"])
        hdsize = opts["hdsize"]
        if own == "zfs":
            zfs = ZfsOptions(raid=opts["raid"], ashift=opts["ashift"], arc_max=opts["arc-max"],
                             checksum=opts["checksum"], compress=opts["compress"],
                             copies=opts["copies"], hdsize=opts["hdsize"])
        else:
            btrfs = BtrfsOptions(raid=opts["raid"], compress=opts["compress"],
                                 hdsize=opts["hdsize"])
    if hdsize is not None and hdsize < MIN_DISK_GIB:
        raise _fail(f"{hdsize:g} GiB is below the minimum of {MIN_DISK_GIB:g} GiB",
                    "disk-setup", own, "hdsize")
    return DiskSetupSection(
        filesystem=fs,
        disk_list=tuple(disks),
        filter=s["filter"] or {},
        filter_match=s["filter-match"],
        lvm=lvm,
        zfs=zfs,
        btrfs=btrfs,
    )


# --- [first-boot] -----------------------------------------------------------------


def _first_boot(f: dict[str, Any] | None) -> FirstBootSection | None:
    if f is None:
        return None
    if f["source"] == "from-url" and f["url"] is None:
        raise _fail("required with source = \"from-url\"", "first-boot", "url")
    if f["source"] == "from-iso":
        for key in ("url", "cert-fingerprint"):
            if f[key] is not None:
                raise _fail("only used with source = \"from-url\"", "first-boot", key)
    return FirstBootSection(source=f["source"], ordering=f["ordering"], url=f["url"],
                            cert_fingerprint=f["cert-fingerprint"])
