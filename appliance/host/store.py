"""Where the host keeps guests, tasks and templates, and how it writes them.

Configs are readable TOML files under the etc root (/etc/appliance), state
and images under the state root (/var/lib/appliance). Both roots can be moved
(APPLIANCE_ETC_DIR, APPLIANCE_STATE_DIR) so tests use temporary directories.
Every file is written atomically: a temporary file beside it, then rename.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import secrets
import stat
import tempfile
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import tomli_w

from appliance.errors import HostError
from appliance.paths import STATE_DIR

DEFAULT_ETC = Path("/etc/appliance")


@dataclass(frozen=True)
class HostPaths:
    etc: Path = DEFAULT_ETC
    state: Path = STATE_DIR

    @classmethod
    def from_env(cls) -> HostPaths:
        return cls(
            etc=Path(os.environ.get("APPLIANCE_ETC_DIR", DEFAULT_ETC)),
            state=Path(os.environ.get("APPLIANCE_STATE_DIR", STATE_DIR)),
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


def recorded_pid(record: Path) -> int | None:
    """The pid in a JSON record `{"pid": ..., "pid_start": ...}` (a VM's or a
    container's) if that process still runs; None when the record is missing
    or unreadable or its process has gone."""
    try:
        data = read_json(record)
    except (FileNotFoundError, ValueError):
        return None
    pid, start = int(data.get("pid", 0)), data.get("pid_start")
    return pid if isinstance(start, int) and alive(pid, start) else None


# --- files inside a guest's root file system ---------------------------------
# A container's tree comes from a template nobody vouched for: any name in it
# may be a symbolic link to a host file. These open every component relative
# to the one before with O_NOFOLLOW, so nothing outside `root` is touched.

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


def _parts(rel: str) -> list[str]:
    parts = [p for p in rel.split("/") if p not in ("", ".")]
    if not parts or ".." in parts:
        raise ValueError(f"{rel!r}: not a path inside a root")
    return parts


def _refuse(root: Path, rel: str, what: str) -> HostError:
    return HostError(f"{root}: {rel} is {what}: refusing to read or write through it "
                     "(a crafted template?)", 400)


def _open_dir(root: Path, parts: list[str], create: bool, mode: int,
              owner: tuple[int, int] | None) -> int:
    """An fd of root/parts[0]/..., created (mode, owner) where missing if
    `create`; a link or non-directory on the way is refused, never followed."""
    fd = os.open(root, _DIR_FLAGS)
    try:
        for i, name in enumerate(parts):
            try:
                nfd = os.open(name, _DIR_FLAGS, dir_fd=fd)
            except FileNotFoundError:
                if not create:
                    raise
                os.mkdir(name, 0o700, dir_fd=fd)
                nfd = os.open(name, _DIR_FLAGS, dir_fd=fd)
                if owner is not None:
                    os.fchown(nfd, *owner)
                os.fchmod(nfd, mode)
            except OSError as e:
                if e.errno in (errno.ELOOP, errno.ENOTDIR):
                    raise _refuse(root, "/".join(parts[: i + 1]),
                                  "a symbolic link or not a directory") from None
                raise
            os.close(fd)
            fd = nfd
    except BaseException:
        os.close(fd)
        raise
    return fd


def read_in_root(root: Path, rel: str, limit: int = 16 << 20) -> tuple[bytes, os.stat_result]:
    """A regular file's content and stat, `rel` resolved inside `root`
    without following any symbolic link (FileNotFoundError if missing)."""
    parts = _parts(rel)
    dfd = _open_dir(root, parts[:-1], False, 0, None)
    try:
        try:
            fd = os.open(parts[-1], os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC,
                         dir_fd=dfd)
        except OSError as e:
            if e.errno == errno.ELOOP:
                raise _refuse(root, rel, "a symbolic link") from None
            raise
        with os.fdopen(fd, "rb") as f:
            st = os.fstat(f.fileno())
            if not stat.S_ISREG(st.st_mode):
                raise _refuse(root, rel, "not a regular file")
            data = f.read(limit + 1)
        if len(data) > limit:
            raise HostError(f"{root}: {rel} is larger than {limit} bytes", 400)
        return data, st
    finally:
        os.close(dfd)


def write_in_root(root: Path, rel: str, data: bytes, mode: int = 0o644,
                  owner: tuple[int, int] | None = None, dir_mode: int = 0o755) -> None:
    """atomic_write for `rel` inside `root`, never following a symbolic link:
    missing directories are made (dir_mode, owner); a link in the last
    place is replaced by the file, a link on the way is refused."""
    parts = _parts(rel)
    dfd = _open_dir(root, parts[:-1], True, dir_mode, owner)
    tmp = f".{parts[-1]}.{secrets.token_hex(4)}"
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
                     0o600, dir_fd=dfd)
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
                f.flush()
                if owner is not None:
                    os.fchown(f.fileno(), *owner)
                os.fchmod(f.fileno(), mode)
                os.fsync(f.fileno())
            os.replace(tmp, parts[-1], src_dir_fd=dfd, dst_dir_fd=dfd)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp, dir_fd=dfd)
            raise
    except IsADirectoryError:
        raise _refuse(root, rel, "a directory") from None
    finally:
        os.close(dfd)
