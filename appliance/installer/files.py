"""Files the installer writes that hold secrets (the answer with the root
password, the install log, the target's shadow): created with their final
mode from the first byte (never world-readable, not even for a moment), and
never through a symbolic link planted at their path."""

from __future__ import annotations

import os
from pathlib import Path


def write_private(path: Path, data: bytes, mode: int = 0o600) -> Path:
    """Write `data` to `path`, created (or truncated) with `mode` whatever the
    umask; an existing file's mode is set to `mode` before anything is written."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC,
                 mode)
    try:
        os.fchmod(fd, mode)
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
    finally:
        os.close(fd)
    return path


def create_private(path: Path, mode: int = 0o600) -> Path:
    """`path` with `mode`, created empty when missing, its content kept (for a
    log that is opened later in append mode)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_NOFOLLOW | os.O_CLOEXEC,
                 mode)
    try:
        os.fchmod(fd, mode)
    finally:
        os.close(fd)
    return path
