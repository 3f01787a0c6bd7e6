"""Content-addressed step cache.

A step's id is sha256(parent id, step type, normalized options, extra
inputs such as file hashes). Each cached step is an overlay layer: the files
that step added or changed on top of its parent's tree. A layer is built in
`tmp/` and committed by one rename into `layers/<id>`, so an interrupted
build never leaves something that looks finished.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from appliance.engine import mounts

CACHE_FORMAT = 1


def step_id(parent: str | None, kind: str, version: int, options: Any, inputs: Any) -> str:
    blob = json.dumps(
        {
            "format": CACHE_FORMAT,
            "parent": parent,
            "type": kind,
            "version": version,
            "options": options,
            "inputs": inputs,
        },
        sort_keys=True,
        default=str,
    )
    return hashlib.sha256(blob.encode()).hexdigest()


@dataclass
class Entry:
    id: str
    step: str
    type: str
    recipe: str
    parent: str | None
    created: float
    last_used: float
    size: int
    seconds: float

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def tree_size(root: Path) -> int:
    total = 0
    for dirpath, _dirs, files in os.walk(root):
        for f in files:
            with contextlib.suppress(OSError):
                total += os.lstat(os.path.join(dirpath, f)).st_size
    return total


def _owner_alive(name: str) -> bool:
    pid = name.rpartition(".")[2]
    if not pid.isdigit():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class Cache:
    def __init__(self, root: Path | str) -> None:
        self.root = Path(root)
        self.layers = self.root / "layers"
        self.tmp = self.root / "tmp"

    def tree(self, sid: str) -> Path:
        return self.layers / sid / "tree"

    def has(self, sid: str) -> bool:
        return (self.layers / sid / "manifest.json").is_file()

    def touch(self, sid: str) -> None:
        with contextlib.suppress(OSError):
            os.utime(self.layers / sid / "manifest.json")

    def prepare(self) -> None:
        """Create the cache and clear what a killed build left in tmp/.

        Staging directories are named ID.PID: those of a live process (a
        build running beside this one, or the build this one is nested in)
        are left alone."""
        self.layers.mkdir(parents=True, exist_ok=True)
        self.tmp.mkdir(parents=True, exist_ok=True)
        for stale in self.tmp.iterdir():
            if _owner_alive(stale.name):
                continue
            mounts.umount_all_under(stale)
            shutil.rmtree(stale, ignore_errors=True)

    @contextlib.contextmanager
    def staging(self, sid: str) -> Iterator[Path]:
        """A fresh staging dir for building layer `sid`; removed unless committed."""
        path = self.tmp / f"{sid[:16]}.{os.getpid()}"
        shutil.rmtree(path, ignore_errors=True)
        path.mkdir(parents=True)
        try:
            yield path
        finally:
            if path.exists():
                mounts.umount_all_under(path)
                shutil.rmtree(path, ignore_errors=True)

    def commit(self, sid: str, staging: Path, manifest: dict[str, Any]) -> None:
        shutil.rmtree(staging / "work", ignore_errors=True)
        shutil.rmtree(staging / "mnt", ignore_errors=True)
        manifest = {**manifest, "id": sid, "size": tree_size(staging / "tree")}
        (staging / "manifest.json").write_text(json.dumps(manifest, indent=2, default=str))
        final = self.layers / sid
        if final.exists():  # built concurrently; ours is identical by construction
            shutil.rmtree(staging)
            return
        os.rename(staging, final)

    def entries(self) -> list[Entry]:
        out: list[Entry] = []
        if not self.layers.is_dir():
            return out
        for d in self.layers.iterdir():
            mf = d / "manifest.json"
            try:
                m = json.loads(mf.read_text())
                out.append(
                    Entry(
                        id=d.name,
                        step=m.get("step", "?"),
                        type=m.get("type", "?"),
                        recipe=m.get("recipe", "?"),
                        parent=m.get("parent"),
                        created=float(m.get("created", 0)),
                        last_used=mf.stat().st_mtime,
                        size=int(m.get("size", 0)),
                        seconds=float(m.get("seconds", 0)),
                    )
                )
            except (OSError, ValueError):
                continue
        return sorted(out, key=lambda e: e.last_used, reverse=True)

    def prune(self, keep_days: float = 7.0, remove_all: bool = False) -> tuple[list[str], int]:
        cutoff = time.time() - keep_days * 86400
        removed, freed = [], 0
        for e in self.entries():
            if remove_all or e.last_used < cutoff:
                shutil.rmtree(self.layers / e.id, ignore_errors=True)
                removed.append(e.id)
                freed += e.size
        if remove_all and self.tmp.is_dir():
            mounts.umount_all_under(self.tmp)
            shutil.rmtree(self.tmp, ignore_errors=True)
        return removed, freed


def print_entries(entries: list[Entry]) -> None:
    if not entries:
        print("cache is empty")
        return
    print(f"{'ID':16}  {'RECIPE':16} {'STEP':20} {'SIZE':>9}  LAST USED")
    for e in entries:
        used = time.strftime("%Y-%m-%d %H:%M", time.localtime(e.last_used))
        print(f"{e.id[:16]}  {e.recipe[:16]:16} {e.step[:20]:20} "
              f"{e.size / 2**20:8.1f}M  {used}")
