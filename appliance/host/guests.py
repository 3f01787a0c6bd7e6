"""Guest configurations: one readable TOML file per guest, ETC/guests/ID.toml.

A create request (from the CLI, the REST API or a web form) is checked field
by field against one table, FIELDS: that table gives each field's type,
limits and help, and drives parsing, error messages and the OpenAPI schema.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

from appliance import procfs
from appliance.errors import HostError
from appliance.host.store import HostPaths, read_toml, write_toml

FIRST_ID = 100
MAX_ID = 999_999_999
NAME_RE = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?$")
BRIDGE_RE = re.compile(r"^[A-Za-z0-9_.-]{1,15}$")
SSH_KEY_PREFIXES = ("ssh-", "ecdsa-", "sk-")
MAX_DISKS = 8
MAX_DISK_MIB = 1 << 22  # 4 TiB
DEFAULT_PIDS = 4096  # a container's process limit (cgroup pids.max)
MAX_PIDS = 1 << 22  # the kernel's pid_max limit

GuestType = Literal["vm", "ct"]


def host_memory_mib() -> int:
    total = procfs.meminfo().get("MemTotal")
    if total is None:
        raise HostError("cannot read MemTotal from /proc/meminfo", 500)
    return total // 2**20


def host_cpus() -> int:
    return os.cpu_count() or 1


@dataclass
class Disk:
    size_mib: int
    path: str = ""  # set when the image is created

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class GuestConfig:
    id: int
    type: GuestType
    name: str
    template: str
    memory_mib: int
    cpus: int
    bridge: str = ""  # empty: no NIC
    description: str = ""
    created: float = 0.0
    # VMs
    cmdline: str = ""
    disks: list[Disk] = field(default_factory=list)
    # containers
    ssh_keys: list[str] = field(default_factory=list)
    unprivileged: bool = True  # root inside is an unmapped id on the host
    pids: int = DEFAULT_PIDS

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "id": self.id, "type": self.type, "name": self.name, "template": self.template,
            "memory_mib": self.memory_mib, "cpus": self.cpus, "bridge": self.bridge,
            "description": self.description, "created": self.created,
        }
        if self.type == "ct":
            data["ssh_keys"] = list(self.ssh_keys)
            data["unprivileged"] = self.unprivileged
            data["pids"] = self.pids
        else:
            data["cmdline"] = self.cmdline
            data["disks"] = [d.to_json() for d in self.disks]
        return data


# --- the request table ------------------------------------------------------------


@dataclass(frozen=True)
class Field:
    name: str
    kind: Literal["int", "str", "list"]
    help: str
    required: bool = False
    types: tuple[GuestType, ...] = ("vm", "ct")
    minimum: int | None = None
    maximum: Callable[[], int] | None = None
    pattern: re.Pattern[str] | None = None
    max_length: int = 255
    secret: bool = False  # never stored in the config
    label: str = ""  # for forms; default: the name

    @property
    def title(self) -> str:
        return self.label or self.name.replace("_", " ").capitalize()


FIELDS: tuple[Field, ...] = (
    Field("id", "int", "guest id (default: the lowest free id from 100)", label="ID",
          minimum=FIRST_ID,
          maximum=lambda: MAX_ID),
    Field("name", "str", "host name of the guest: letters, digits, '-'", required=True,
          pattern=NAME_RE, max_length=63),
    Field("template", "str", "template name (see the template list)", required=True,
          pattern=re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$"), max_length=128),
    Field("memory_mib", "int", "memory in MiB (at most the host's)", required=True,
          label="Memory (MiB)",
          minimum=16, maximum=host_memory_mib),
    Field("cpus", "int", "number of CPUs (at most the host's)", minimum=1, maximum=host_cpus,
          label="CPUs"),
    Field("bridge", "str", "host bridge for the NIC (empty: no NIC)", pattern=BRIDGE_RE,
          max_length=15),
    Field("description", "str", "free text", max_length=1000),
    Field("cmdline", "str", "kernel command line (default: the template's)", types=("vm",),
          label="Kernel command line",
          max_length=2000),
    Field("disks", "list", "sizes in MiB of extra raw disks, one a line", types=("vm",),
          label="Extra disks (MiB)"),
    Field("password", "str", "root password (stored only as a hash, inside the container)",
          types=("ct",), max_length=256, secret=True, label="Root password"),
    Field("ssh_keys", "list", "SSH public keys for root, one a line", types=("ct",),
          label="SSH keys"),
    Field("unprivileged", "int", "1 (default): root in the container is an unprivileged id "
          "on the host; 0: privileged, root in the container is root on the host",
          types=("ct",), minimum=0, maximum=lambda: 1, label="Unprivileged (1/0)"),
    Field("pids", "int", f"most processes and threads (default {DEFAULT_PIDS})",
          types=("ct",), minimum=16, maximum=lambda: MAX_PIDS, label="Max processes"),
)


def fields_for(kind: GuestType) -> list[Field]:
    return [f for f in FIELDS if kind in f.types]


def whole_number(text: str) -> int | str:
    """A form's number: ASCII digits (not '²' or '١٢', which str.isdigit()
    takes and int() refuses or reads), at most 18 of them; anything else is
    returned as it is, for the caller's "expected a whole number" error."""
    digits = text.strip()
    if digits.isascii() and digits.isdigit() and len(digits) <= 18:
        return int(digits)
    return text


def _bad(name: str, msg: str) -> HostError:
    return HostError(f"{name}: {msg}", 400)


def parse_request(kind: GuestType, data: Mapping[str, Any]) -> dict[str, Any]:
    """Check a create request; return the clean values. Form posts send
    strings: numbers given as digit strings are accepted."""
    if not isinstance(data, Mapping):
        raise HostError("expected a JSON object", 400)
    known = {f.name: f for f in fields_for(kind)}
    unknown = sorted(set(data) - set(known))
    if unknown:
        raise HostError(f"unknown field{'s' if len(unknown) > 1 else ''}: "
                        f"{', '.join(map(str, unknown))}", 400)
    out: dict[str, Any] = {}
    for f in known.values():
        value = data.get(f.name)
        if value is None or value == "":
            if f.required:
                raise _bad(f.name, "required")
            continue
        if f.kind == "int":
            if isinstance(value, str):
                value = whole_number(value)
            if isinstance(value, bool) or not isinstance(value, int):
                raise _bad(f.name, f"expected a whole number, got {value!r:.40}")
            shown = (str(value) if abs(value) < 10**18
                     else f"{str(value)[:8]}… ({len(str(value))} digits)")
            if f.minimum is not None and value < f.minimum:
                raise _bad(f.name, f"{shown} is less than {f.minimum}")
            if f.maximum is not None and value > (top := f.maximum()):
                raise _bad(f.name, f"{shown} is more than the {top} this host has"
                           if f.name in ("memory_mib", "cpus") else f"{shown} is more than {top}")
        elif f.kind == "str":
            if not isinstance(value, str):
                raise _bad(f.name, f"expected a string, got {type(value).__name__}")
            if len(value) > f.max_length:
                raise _bad(f.name, f"longer than {f.max_length} characters")
            if f.pattern is not None and not f.pattern.match(value):
                raise _bad(f.name, f"{value!r:.70} is not valid ({f.help})")
            if "\n" in value or "\0" in value:
                raise _bad(f.name, "must be one line")
        else:
            if isinstance(value, str):  # a form's textarea: one item a line
                value = [v.strip() for v in value.splitlines() if v.strip()]
            if not isinstance(value, list):
                raise _bad(f.name, "expected a list")
            value = _parse_list(f.name, value)
        out[f.name] = value
    return out


def _parse_list(name: str, items: list[Any]) -> list[Any]:
    if name == "disks":
        if len(items) > MAX_DISKS:
            raise _bad(name, f"at most {MAX_DISKS} disks")
        sizes: list[int] = []
        for i, v in enumerate(items):
            if isinstance(v, str):
                v = whole_number(v)
            if isinstance(v, bool) or not isinstance(v, int) or not 1 <= v <= MAX_DISK_MIB:
                raise _bad(f"{name}[{i}]", f"expected a size in MiB from 1 to {MAX_DISK_MIB}")
            sizes.append(v)
        return sizes
    keys: list[str] = []
    for i, v in enumerate(items):
        if (not isinstance(v, str) or not v.startswith(SSH_KEY_PREFIXES)
                or len(v.split()) < 2 or "\n" in v or len(v) > 16384):
            raise _bad(f"{name}[{i}]", f"{str(v)!r:.40} is not an SSH public key")
        keys.append(v)
    return keys


# --- the config files -------------------------------------------------------------


def config_path(paths: HostPaths, guest_id: int) -> Path:
    return paths.guests / f"{guest_id}.toml"


# Parsed config files, keyed by path and (inode, mtime, size): an atomic
# write (rename) always changes the inode, so a stale entry is never used.
_PARSED: dict[Path, tuple[tuple[int, int, int], dict[str, Any]]] = {}


def load(paths: HostPaths, guest_id: int) -> GuestConfig:
    path = config_path(paths, guest_id)
    try:
        st = os.stat(path)
        key = (st.st_ino, st.st_mtime_ns, st.st_size)
        cached = _PARSED.get(path)
        if cached is not None and cached[0] == key:
            data = cached[1]
        else:
            data = read_toml(path)
            _PARSED[path] = (key, data)
    except FileNotFoundError:
        _PARSED.pop(path, None)
        raise HostError(f"no guest {guest_id}", 404) from None
    except ValueError as e:  # tomllib.TOMLDecodeError: someone edited it badly
        raise HostError(f"{path}: {e}", 500) from None
    fields = {k: v for k, v in data.items() if k != "disks"}
    if fields.get("type") == "ct":  # written before containers were unprivileged
        fields.setdefault("unprivileged", False)
    try:
        disks = [Disk(**d) for d in data.get("disks", [])]
        return GuestConfig(**fields, disks=disks)
    except TypeError as e:
        raise HostError(f"{path}: unexpected or missing keys ({e})", 500) from None


def save(paths: HostPaths, cfg: GuestConfig) -> None:
    data = asdict(cfg)
    write_toml(config_path(paths, cfg.id), data)


def ids(paths: HostPaths) -> list[int]:
    if not paths.guests.is_dir():
        return []
    out = []
    for name in os.listdir(paths.guests):
        stem, dot, ext = name.partition(".")
        if dot and ext == "toml" and stem.isascii() and stem.isdigit() and len(stem) <= 9:
            out.append(int(stem))
    return sorted(out)


def free_id(paths: HostPaths) -> int:
    taken = set(ids(paths))
    n = FIRST_ID
    while n in taken:
        n += 1
    return n


def new_config(kind: GuestType, guest_id: int, req: Mapping[str, Any],
               template_cmdline: str = "") -> GuestConfig:
    return GuestConfig(
        id=guest_id,
        type=kind,
        name=req["name"],
        template=req["template"],
        memory_mib=req["memory_mib"],
        cpus=req.get("cpus", 1),
        bridge=req.get("bridge", ""),
        description=req.get("description", ""),
        created=time.time(),
        cmdline=req.get("cmdline", template_cmdline) if kind == "vm" else "",
        disks=[Disk(size_mib=s) for s in req.get("disks", [])],
        ssh_keys=list(req.get("ssh_keys", [])),
        unprivileged=bool(req.get("unprivileged", 1)),
        pids=req.get("pids", DEFAULT_PIDS),
    )

