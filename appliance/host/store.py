"""Where the host keeps guests, tasks and templates, and how it writes them.

Configs are readable TOML files under the etc root (/etc/appliance), state
and images under the state root (/var/lib/appliance). Both roots can be moved
(APPLIANCE_ETC_DIR, APPLIANCE_STATE_DIR) so tests use temporary directories.
Every file is written atomically: a temporary file beside it, then rename.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import tempfile
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import tomli_w

DEFAULT_ETC = Path("/etc/appliance")
DEFAULT_STATE = Path("/var/lib/appliance")


@dataclass(frozen=True)
class HostPaths:
    etc: Path = DEFAULT_ETC
    state: Path = DEFAULT_STATE

    @classmethod
    def from_env(cls) -> HostPaths:
        return cls(
            etc=Path(os.environ.get("APPLIANCE_ETC_DIR", DEFAULT_ETC)),
            state=Path(os.environ.get("APPLIANCE_STATE_DIR", DEFAULT_STATE)),
        )

    @property
    def guests(self) -> Path:
        """One TOML file per guest: guests/ID.toml."""
        return self.etc / "guests"

    @property
    def priv(self) -> Path:
        """Secrets (ticket key, hashed API tokens), mode 0700."""
        return self.etc / "priv"

    @property
    def web(self) -> Path:
        """The web server's TLS certificate and key."""
        return self.etc / "web"

    @property
    def tasks(self) -> Path:
        return self.state / "tasks"

    @property
    def run(self) -> Path:
        """Pid files, run results and console sockets of running guests."""
        return self.state / "run"

    @property
    def images(self) -> Path:
        return self.state / "images"

    @property
    def lxc(self) -> Path:
        """The LXC path (lxc-* -P) holding one directory per container."""
        return self.state / "lxc"

    @property
    def logs(self) -> Path:
        return self.state / "logs"

    @property
    def vm_templates(self) -> Path:
        return self.state / "templates" / "vm"

    @property
    def ct_templates(self) -> Path:
        return self.state / "templates" / "ct"

    @property
    def lock_file(self) -> Path:
        return self.state / "host.lock"

    def ensure(self) -> None:
        for d in (self.guests, self.tasks, self.run, self.lxc, self.logs,
                  self.vm_templates, self.ct_templates, self.web):
            d.mkdir(parents=True, exist_ok=True)
        self.images.mkdir(mode=0o700, parents=True, exist_ok=True)  # guests' disks
        self.priv.mkdir(parents=True, exist_ok=True)
        self.priv.chmod(0o700)


def atomic_write(path: Path, data: bytes, mode: int = 0o644) -> None:
    """Write a file so that readers see the old or the new content, never half."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def write_toml(path: Path, data: dict[str, Any], mode: int = 0o644) -> None:
    atomic_write(path, tomli_w.dumps(data).encode(), mode)


def read_toml(path: Path) -> dict[str, Any]:
    with path.open("rb") as f:
        return tomllib.load(f)


def write_json(path: Path, data: Any, mode: int = 0o644) -> None:
    atomic_write(path, (json.dumps(data, indent=1, default=str) + "\n").encode(), mode)


def read_json(path: Path) -> Any:
    return json.loads(path.read_text())


@contextlib.contextmanager
def locked(path: Path) -> Iterator[None]:
    """An exclusive advisory lock (flock) on `path`, across processes."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as f:
        fcntl.flock(f.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f.fileno(), fcntl.LOCK_UN)


def process_start_time(pid: int) -> int | None:
    """The start time (clock ticks since boot) of a live process, else None.

    A pid and its start time together name one process: a reused pid has
    another start time."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    fields = stat[stat.rindex(")") + 2 :].split()
    if fields[0] in ("Z", "X"):  # a zombie is not running anything
        return None
    return int(fields[19])


def alive(pid: int, start_time: int) -> bool:
    return pid > 0 and process_start_time(pid) == start_time
