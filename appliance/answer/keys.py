"""Every answer-file key, declared once.

A `Key` names one key (kebab-case, as Proxmox VE writes it), the legacy
snake_case spellings Proxmox still accepts for it, its parser, default and
help. `ANSWER` is the whole file: sections of keys, some keys being tables of
their own (`lvm`, `zfs`, `btrfs`, `fqdn`, `interface-name-pinning`) or free
tables (`filter`, `mapping`). Parsing, unknown-key errors with suggestions,
and `appliance answer keys` come from these tables; the checks that span
several keys live in appliance.answer.parse.
"""

from __future__ import annotations

import difflib
import ipaddress
import math
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from appliance.errors import HardwareError
from appliance.hw.match import compile_glob
from appliance.recipe.schema import REQUIRED, OptionError, boolean, integer, string, string_list

Parser = Callable[[Any], Any]


@dataclass(frozen=True)
class Key:
    """One key: `name` (kebab-case), `aliases` (legacy spellings accepted too),
    `parse` (value -> normalized value, raises OptionError), `default`
    (REQUIRED when the key must be given), `help`, and `table` when the value
    is itself a table of declared keys."""

    name: str
    parse: Parser
    default: Any = REQUIRED
    help: str = ""
    aliases: tuple[str, ...] = ()
    kind: str = "string"
    table: Table | None = None

    @property
    def required(self) -> bool:
        return self.default is REQUIRED


@dataclass(frozen=True)
class Table:
    """A section, or a key whose value is a table of keys."""

    name: str
    keys: tuple[Key, ...]
    help: str = ""

    def parse(self, data: Any) -> dict[str, Any]:
        """Parse `data`: every key under its kebab-case name (aliases folded in,
        defaults filled in). OptionError paths name the key as written."""
        if not isinstance(data, Mapping):
            raise OptionError(f"expected a table, got {_type_name(data)}")
        spelled: dict[str, str] = {}
        for key in self.keys:
            spelled[key.name] = key.name
            for alias in key.aliases:
                spelled[alias] = key.name
        for written in data:
            if written not in spelled:
                raise OptionError(_unknown(written, [k.name for k in self.keys]), [written])
        out: dict[str, Any] = {}
        for key in self.keys:
            given = [w for w in (key.name, *key.aliases) if w in data]
            if len(given) > 1:
                raise OptionError(
                    f"given twice, as {' and '.join(given)} (they are the same key)", [given[1]]
                )
            if given:
                try:
                    out[key.name] = key.parse(data[given[0]])
                except OptionError as e:
                    raise e.prefixed(given[0]) from None
            elif key.required:
                raise OptionError("required key is missing", [key.name])
            else:
                out[key.name] = key.default
        return out

    def reference(self, prefix: str = "") -> list[dict[str, Any]]:
        """Every key with its dotted name, for `appliance answer keys`."""
        out: list[dict[str, Any]] = []
        for key in self.keys:
            dotted = f"{prefix}{key.name}"
            out.append(
                {
                    "key": dotted,
                    "aliases": list(key.aliases),
                    "kind": key.kind,
                    "required": key.required,
                    "default": None if key.required else key.default,
                    "help": key.help,
                }
            )
            if key.table is not None:
                out += key.table.reference(dotted + ".")
        return out


def _unknown(key: str, known: Sequence[str]) -> str:
    close = difflib.get_close_matches(key.replace("_", "-"), list(known), n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    return f"unknown key{hint}; known keys: {', '.join(known)}"


def _type_name(value: Any) -> str:
    return {str: "a string", int: "an integer", float: "a number", bool: "a boolean",
            list: "a list", dict: "a table"}.get(type(value), type(value).__name__)


# --- parsers -----------------------------------------------------------------


def choice(*choices: str, fold_case: bool = False) -> Parser:
    """One of `choices`; with fold_case, any letter case (normalized to the
    spelling in `choices`)."""

    def parse(value: Any) -> str:
        if not isinstance(value, str):
            raise OptionError(f"expected a string, got {_type_name(value)}")
        wanted = value.lower() if fold_case else value
        for c in choices:
            if (c.lower() if fold_case else c) == wanted:
                return c
        raise OptionError(f"{value!r} is not one of: {', '.join(choices)}")

    return parse


# The largest size in GiB an answer may give (1 PiB): far beyond any disk, and
# small enough that sizes in bytes stay exact integers.
MAX_GIB = 1 << 20


def number(*, minimum: float = 0.0, maximum: float = MAX_GIB) -> Parser:
    """A size in GiB (integer or float), normalized to float."""

    def parse(value: Any) -> float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise OptionError(f"expected a number (GiB), got {_type_name(value)}")
        if isinstance(value, float) and not math.isfinite(value):
            raise OptionError(f"{value} is not a size")
        if value < minimum:
            raise OptionError(f"{value:g} is below the minimum {minimum:g}")
        if value > maximum:
            raise OptionError(f"{value:g} GiB is above the maximum {maximum:.0f} GiB")
        return float(value)

    return parse


def ip_address() -> Parser:
    def parse(value: Any) -> str:
        if not isinstance(value, str):
            raise OptionError(f"expected an IP address string, got {_type_name(value)}")
        try:
            return str(ipaddress.ip_address(value))
        except ValueError:
            raise OptionError(f"{value!r} is not a valid IP address") from None

    return parse


def cidr() -> Parser:
    """ADDRESS/PREFIX of a host (not the network or broadcast address)."""

    def parse(value: Any) -> str:
        if not isinstance(value, str):
            raise OptionError(f"expected ADDRESS/PREFIX, got {_type_name(value)}")
        addr, sep, prefix = value.partition("/")
        if not sep or not prefix.isdigit():
            raise OptionError(f"{value!r}: invalid IP address: expected ADDRESS/PREFIX, "
                              "e.g. 192.168.1.10/24")
        try:
            iface = ipaddress.ip_interface(value)
        except ValueError:
            try:
                ip = ipaddress.ip_address(addr)
            except ValueError:
                raise OptionError(f"{value!r}: invalid IP address {addr!r}") from None
            raise OptionError(
                f"{value!r}: invalid IP address: prefix /{prefix} is longer than "
                f"{ip.max_prefixlen} bits"
            ) from None
        net = iface.network
        if iface.version == 4 and net.prefixlen < 31 and iface.ip in (
            net.network_address, net.broadcast_address
        ):
            what = "network" if iface.ip == net.network_address else "broadcast"
            raise OptionError(f"{value!r}: invalid IP address: it is the {what} address "
                              f"of {net}")
        return str(iface)

    return parse


def glob_table(what: str) -> Parser:
    """`filter.PROPERTY = "GLOB"`: udev property name -> glob (non-empty)."""

    def parse(value: Any) -> dict[str, str]:
        if not isinstance(value, Mapping):
            raise OptionError(f"expected a table of udev property = glob, got "
                              f"{_type_name(value)}")
        if not value:
            raise OptionError(f"empty filter: add at least one udev property of the {what}")
        out: dict[str, str] = {}
        for prop, pattern in value.items():
            if not isinstance(pattern, str):
                raise OptionError(f"expected a glob string, got {_type_name(pattern)}", [prop])
            try:
                compile_glob(pattern)
            except HardwareError as e:
                raise OptionError(str(e), [prop]) from None
            out[str(prop)] = pattern
        return out

    return parse


MAC = re.compile(r"[0-9a-f]{2}(:[0-9a-f]{2}){5}")
# Interface names the installed system accepts (Proxmox's `pve-iface` rule):
# a letter, then letters, digits or underscores; 2 to 15 characters (IFNAMSIZ).
IFNAME = re.compile(r"[A-Za-z][A-Za-z0-9_]{1,20}([:.]\d+)?")
IFNAME_MIN, IFNAME_MAX = 2, 15


def pin_mapping() -> Parser:
    """`"MAC" = "name"`: MACs folded to lower case, names checked."""

    def parse(value: Any) -> dict[str, str]:
        if not isinstance(value, Mapping):
            raise OptionError(f"expected a table of \"MAC\" = \"name\", got {_type_name(value)}")
        out: dict[str, str] = {}
        by_name: dict[str, str] = {}
        for written, name in value.items():
            mac = str(written).lower()
            if not MAC.fullmatch(mac):
                raise OptionError(f"{written!r} is not a MAC address (aa:bb:cc:dd:ee:ff)",
                                  [written])
            if mac in out:
                raise OptionError(f"MAC address {mac} is mapped twice", [written])
            if not isinstance(name, str):
                raise OptionError(f"expected an interface name, got {_type_name(name)}",
                                  [written])
            check_ifname(name, mac, [written])
            if name in by_name:
                raise OptionError(f"interface name {name!r} is given to both {by_name[name]} "
                                  f"and {mac}", [written])
            by_name[name] = mac
            out[mac] = name
        return out

    return parse


def check_ifname(name: str, mac: str, path: Sequence[str | int] = ()) -> None:
    if len(name) < IFNAME_MIN:
        raise OptionError(f"interface name {name!r} for {mac!r} must be at least "
                          f"{IFNAME_MIN} characters long", path)
    if len(name) > IFNAME_MAX:
        raise OptionError(f"interface name {name!r} for {mac!r} cannot be longer than "
                          f"{IFNAME_MAX} characters", path)
    if not IFNAME.fullmatch(name):
        raise OptionError(f"interface name {name!r} for {mac!r} is invalid: it must start "
                          "with a letter and hold only letters, digits and underscores", path)


def url(*schemes: str) -> Parser:
    rx = re.compile(rf"({'|'.join(schemes)})://[^\s/]+(/\S*)?")

    def parse(value: Any) -> str:
        if not isinstance(value, str) or not rx.fullmatch(value):
            raise OptionError(f"{value!r} is not a {'/'.join(schemes)} URL")
        return value

    return parse


FINGERPRINT = r"([0-9A-Fa-f]{2}:){31}[0-9A-Fa-f]{2}"
_SHA256 = re.compile(r"[0-9a-fA-F]{2}(:?[0-9a-fA-F]{2}){31}")


def normalize_fingerprint(text: str) -> str | None:
    """A certificate's SHA-256 fingerprint as every pinned fetch compares it:
    64 lower-case hex digits, no colons. Accepts Proxmox's `AA:BB:...` form
    and plain hex (any case); None when `text` is neither."""
    text = text.strip()
    if not _SHA256.fullmatch(text) or (":" in text and text.count(":") != 31):
        return None
    return text.replace(":", "").lower()


def fingerprint() -> Parser:
    """`cert-fingerprint = "AA:BB:..."` (Proxmox's form: 32 hex pairs with
    colons), normalized by normalize_fingerprint."""
    rx = re.compile(FINGERPRINT)

    def parse(value: Any) -> str:
        if not isinstance(value, str):
            raise OptionError(f"expected a string, got {_type_name(value)}")
        norm = normalize_fingerprint(value) if rx.fullmatch(value) else None
        if norm is None:
            raise OptionError(f"{value[:100]!r} is not a valid SHA-256 fingerprint "
                              "(32 hex pairs separated by ':', e.g. AA:BB:...)")
        return norm

    return parse


def table(t: Table) -> Parser:
    return t.parse


def fqdn_value() -> Parser:
    """`fqdn = "host.example.com"` or `fqdn = { source = "from-dhcp", domain = … }`;
    parse.py validates the name itself."""

    def parse(value: Any) -> Any:
        if isinstance(value, str):
            return value
        if isinstance(value, Mapping):
            return FQDN_TABLE.parse(value)
        raise OptionError("either a fully-qualified domain name (host.domain) or "
                          "{ source = \"from-dhcp\" } must be given, got "
                          f"{_type_name(value)}")

    return parse


# --- the tables ----------------------------------------------------------------

# Keyboard layouts the installer knows (Proxmox VE's list).
KEYBOARDS = (
    "de", "de-ch", "dk", "en-gb", "en-us", "es", "fi", "fr", "fr-be", "fr-ca", "fr-ch", "hu",
    "is", "it", "jp", "lt", "mk", "nl", "no", "pl", "pt", "pt-br", "se", "si", "tr",
)
ZFS_RAID = ("raid0", "raid1", "raid10", "raidz-1", "raidz-2", "raidz-3")
BTRFS_RAID = ("raid0", "raid1", "raid10")
# Fewest disks each RAID level takes.
RAID_MIN_DISKS = {"raid0": 1, "raid1": 2, "raid10": 4, "raidz-1": 3, "raidz-2": 4, "raidz-3": 5}

FQDN_TABLE = Table("fqdn", (
    Key("source", choice("from-dhcp"), "from-dhcp",
        "where the host name and domain come from: the live system's DHCP lease"),
    Key("domain", string(), None,
        "domain to use; wins over the DHCP domain, and is needed when DHCP gives none"),
))

PINNING_TABLE = Table("interface-name-pinning", (
    Key("enabled", boolean(), False,
        "pin NIC names on the installed system (systemd .link files by MAC)", kind="boolean"),
    Key("mapping", pin_mapping(), {},
        "\"MAC\" = \"name\"; NICs not listed are named nic<N>", kind="table"),
))

LVM_TABLE = Table("lvm", (
    Key("hdsize", number(), None, "GiB of the disk to use (default: all)", kind="GiB"),
    Key("swapsize", number(), None, "swap volume size (at most hdsize / 2)", kind="GiB"),
    Key("maxroot", number(), None, "maximum root volume size", kind="GiB"),
    Key("maxvz", number(), None, "maximum data volume size", kind="GiB"),
    Key("minfree", number(), None, "space to leave free in the volume group", kind="GiB"),
))

ZFS_TABLE = Table("zfs", (
    Key("raid", choice(*ZFS_RAID, fold_case=True), None, "pool layout (any letter case)"),
    Key("ashift", integer(minimum=9, maximum=16), None, "pool ashift (default 12)",
        kind="integer"),
    Key("arc-max", integer(minimum=64, maximum=MAX_GIB * 1024), None, "ARC size limit in MiB",
        aliases=("arc_max",),
        kind="integer"),
    Key("checksum", choice("on", "fletcher4", "sha256"), None, "checksum (default on)"),
    Key("compress", choice("on", "off", "lzjb", "lz4", "zle", "gzip", "zstd"), None,
        "compression (default on)"),
    Key("copies", integer(minimum=1, maximum=3), None, "data copies (default 1)",
        kind="integer"),
    Key("hdsize", number(), None, "GiB of each disk to use (default: all)", kind="GiB"),
))

BTRFS_TABLE = Table("btrfs", (
    Key("raid", choice(*BTRFS_RAID, fold_case=True), None, "layout (any letter case)"),
    Key("compress", choice("on", "off", "zlib", "lzo", "zstd"), None,
        "compression (default off)"),
    Key("hdsize", number(), None, "GiB of each disk to use (default: all)", kind="GiB"),
))

GLOBAL = Table("global", (
    Key("keyboard", choice(*KEYBOARDS), help="keyboard layout"),
    Key("country", string(), help="two-letter country code (ISO 3166), e.g. \"at\""),
    Key("fqdn", fqdn_value(), help="\"host.example.com\", or fqdn.source = \"from-dhcp\" "
        "(with optional fqdn.domain)", kind="string or table", table=FQDN_TABLE),
    Key("mailto", string(), help="administrator's email address"),
    Key("timezone", string(), help="time zone, e.g. \"Europe/Vienna\" or \"UTC\""),
    Key("root-password", string(), None, "root password, plain (at least 8 characters; "
        "hashed at install time)", aliases=("root_password",)),
    Key("root-password-hashed", string(), None, "root password as a crypt(3) hash "
        "(`openssl passwd -6`)", aliases=("root_password_hashed",)),
    Key("root-ssh-keys", string_list(), [], "SSH public keys for root",
        aliases=("root_ssh_keys",), kind="list"),
    Key("reboot-on-error", boolean(), False, "reboot instead of waiting when the "
        "installation fails", aliases=("reboot_on_error",), kind="boolean"),
    Key("reboot-mode", choice("reboot", "power-off"), "reboot", "after a successful "
        "installation", aliases=("reboot_mode",)),
    Key("require-hardware-virtualization", boolean(), False, "appliance: refuse a machine "
        "without usable VT-x/AMD-V", kind="boolean"),
), "system settings")

NETWORK = Table("network", (
    Key("source", choice("from-dhcp", "from-answer"), "from-dhcp",
        "from-dhcp: keep what DHCP gave the installer; from-answer: the keys below"),
    Key("cidr", cidr(), None, "ADDRESS/PREFIX (from-answer)"),
    Key("gateway", ip_address(), None, "default gateway (from-answer)"),
    Key("dns", ip_address(), None, "DNS server (from-answer)"),
    Key("filter", glob_table("NIC"), None, "udev property = glob selecting the management "
        "NIC (from-answer; default: the NIC of the default route)", kind="table"),
    Key("interface-name-pinning", table(PINNING_TABLE), None, "pin NIC names",
        kind="table", table=PINNING_TABLE),
), "management network")

DISK_SETUP = Table("disk-setup", (
    Key("filesystem", choice("ext4", "xfs", "zfs", "btrfs"),
        help="ext4/xfs: one disk with LVM; zfs/btrfs: RAID over disk-list or filter"),
    Key("disk-list", string_list(), [], "target disks by name, e.g. [\"sda\"]",
        aliases=("disk_list",), kind="list"),
    Key("filter", glob_table("disk"), None, "udev property = glob selecting the target "
        "disks", kind="table"),
    Key("filter-match", choice("any", "all"), "any", "a disk matches when any or all "
        "filters match", aliases=("filter_match",)),
    Key("lvm", table(LVM_TABLE), None, "ext4/xfs options", kind="table", table=LVM_TABLE),
    Key("zfs", table(ZFS_TABLE), None, "zfs options (zfs.raid required)", kind="table",
        table=ZFS_TABLE),
    Key("btrfs", table(BTRFS_TABLE), None, "btrfs options (btrfs.raid required)",
        kind="table", table=BTRFS_TABLE),
), "target disks and file system")

FIRST_BOOT = Table("first-boot", (
    Key("source", choice("from-iso", "from-url"), help="where the hook executable comes from"),
    Key("ordering", choice("before-network", "network-online", "fully-up"), "fully-up",
        "when it runs on first boot"),
    Key("url", url("http", "https"), None, "hook URL (from-url)"),
    Key("cert-fingerprint", fingerprint(), None,
        "pin the server certificate (from-url)", aliases=("cert_fingerprint",)),
), "a hook run once on first boot")

WEBHOOK = Table("post-installation-webhook", (
    Key("url", url("http", "https"), help="POST the installation result here"),
    Key("cert-fingerprint", fingerprint(), None,
        "pin the server certificate", aliases=("cert_fingerprint",)),
), "report the result")

ANSWER = Table("answer", (
    Key("global", table(GLOBAL), kind="section", table=GLOBAL, help=GLOBAL.help),
    Key("network", table(NETWORK), kind="section", table=NETWORK, help=NETWORK.help),
    Key("disk-setup", table(DISK_SETUP), kind="section", table=DISK_SETUP,
        help=DISK_SETUP.help),
    Key("first-boot", table(FIRST_BOOT), None, kind="section", table=FIRST_BOOT,
        help=FIRST_BOOT.help),
    Key("post-installation-webhook", table(WEBHOOK), None, kind="section", table=WEBHOOK,
        help=WEBHOOK.help),
))


def reference() -> list[dict[str, Any]]:
    """Every key of an answer file, dotted (`disk-setup.zfs.raid`)."""
    return ANSWER.reference()
