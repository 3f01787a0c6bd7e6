"""What a step or output sees while it runs."""

from __future__ import annotations

import contextlib
import logging
import os
import pwd
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from subprocess import CompletedProcess

from appliance.engine import mounts
from appliance.errors import BuildError, ToolError
from appliance.recipe.model import Recipe, StepSpec
from appliance.runner import run

log = logging.getLogger("appliance.build")

CHROOT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def build_env(epoch: int) -> dict[str, str]:
    """The environment of every command that works on a tree."""
    return {
        "PATH": CHROOT_PATH,
        "LC_ALL": "C.UTF-8",
        "LANG": "C.UTF-8",
        "HOME": "/root",
        "DEBIAN_FRONTEND": "noninteractive",
        "DEBCONF_NONINTERACTIVE_SEEN": "true",
        "SOURCE_DATE_EPOCH": str(epoch),
    }


@dataclass
class StepContext:
    recipe: Recipe
    step: StepSpec
    tree: Path  # the root filesystem being built (writable)
    scratch: Path  # a private temporary directory, removed afterwards
    cache_dir: Path | None = None  # the build cache (for steps that build other recipes)
    _mounts: contextlib.ExitStack = field(default_factory=contextlib.ExitStack)
    _chroot_ready: bool = False

    @property
    def options(self) -> dict[str, object]:
        return self.step.options

    @property
    def env(self) -> dict[str, str]:
        return build_env(self.recipe.source_date_epoch)

    def host(self, argv: Sequence[str | os.PathLike[str]], what: str | None = None,
             input: bytes | None = None, capture: bool = False) -> CompletedProcess[bytes]:
        """Run a host tool on the tree, turning its failure into a BuildError."""
        try:
            return run(argv, env=self.env, what=what, input=input, capture=capture)
        except ToolError as e:
            raise BuildError(f"step {self.step.name} ({self.step.type}): {e}") from None

    def chroot(self, argv: Sequence[str], what: str | None = None,
               input: bytes | None = None, capture: bool = False) -> CompletedProcess[bytes]:
        """Run a command inside the tree, with /proc, /sys, /dev mounted (once
        per step; unmounted by `close`, also on failure or interrupt)."""
        if not self._chroot_ready:
            self._mounts.enter_context(mounts.chroot_env(self.tree))
            self._chroot_ready = True
        envargs = [f"{k}={v}" for k, v in self.env.items()]
        return self.host(
            ["chroot", self.tree, "/usr/bin/env", "-i", *envargs, *argv],
            what=what, input=input, capture=capture,
        )

    def fail(self, reason: str) -> None:
        raise BuildError(f"step {self.step.name} ({self.step.type}): {reason}")

    def close(self) -> None:
        self._mounts.close()
        self._chroot_ready = False

    def path(self, inside: str, follow: bool = False) -> Path:
        """A path in the image as a host path, symlinks of its parent
        directories resolved inside the tree (never escaping to the host)."""
        return resolve_in_tree(self.tree, inside, follow)

    def ids(self, owner: str | int | None, group: str | int | None) -> tuple[int, int]:
        """Resolve owner/group names against the tree's /etc/passwd and /etc/group."""
        return (_lookup(self.tree / "etc/passwd", owner, "user"),
                _lookup(self.tree / "etc/group", group if group is not None else owner, "group"))


def resolve_in_tree(tree: Path, inside: str, follow: bool = False, _depth: int = 0) -> Path:
    """Resolve `inside` (an absolute path in the image) like a chroot would:
    symlinks in directory components are followed relative to `tree`; the
    last component is followed only with `follow`."""
    if _depth > 40:
        raise BuildError(f"{inside}: too many levels of symbolic links in the image")
    parts = [p for p in inside.split("/") if p not in ("", ".")]
    cur: list[str] = []
    for i, part in enumerate(parts):
        if part == "..":
            if cur:
                cur.pop()
            continue
        host = tree.joinpath(*cur, part)
        if (follow or i < len(parts) - 1) and host.is_symlink():
            target = os.readlink(host)
            base = "/" if target.startswith("/") else "/" + "/".join(cur)
            rest = "/".join(parts[i + 1:])
            return resolve_in_tree(tree, os.path.join(base, target, rest), follow, _depth + 1)
        cur.append(part)
    return tree.joinpath(*cur)


def _lookup(db: Path, name: str | int | None, what: str) -> int:
    if name is None:
        return 0
    if isinstance(name, int):
        return name
    if name.isdigit():
        return int(name)
    try:
        for line in db.read_text().splitlines():
            fields = line.split(":")
            if fields and fields[0] == name and len(fields) > 2:
                return int(fields[2])
    except OSError:
        pass
    if what == "group" and name == "root":
        return 0
    raise BuildError(f"{what} {name!r} does not exist in the image ({db.name})")


def host_user_exists(name: str) -> bool:
    try:
        pwd.getpwnam(name)
    except KeyError:
        return False
    return True


@dataclass
class OutputContext:
    recipe: Recipe
    options: dict[str, object]
    tree: Path  # the finished root filesystem, read-only
    outdir: Path
    scratch: Path

    @property
    def epoch(self) -> int:
        return self.recipe.source_date_epoch

    def host(self, argv: Sequence[str | os.PathLike[str]], what: str | None = None,
             capture: bool = False) -> CompletedProcess[bytes]:
        try:
            return run(argv, env=build_env(self.epoch), what=what, capture=capture)
        except ToolError as e:
            raise BuildError(f"output: {e}") from None
