"""Set-up shared by the benchmarks that run inside the nested test host
(tests/vmm/testhost.py: QEMU TCG `-cpu max` -> kvm_amd): the repository on
sys.path for `tests.vmm.testhost`, the newest Debian kernel in /boot, and a
scratch directory for the initramfs images."""

from __future__ import annotations

import contextlib
import os
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).resolve().parent.parent


@contextlib.contextmanager
def nested_host(prefix: str) -> Iterator[tuple[ModuleType, Path, Path]]:
    """(the testhost module, the kernel for L1 and L2, a scratch directory
    removed on exit); SystemExit when /boot holds no Debian kernel."""
    sys.path.insert(0, str(ROOT))
    from tests.vmm import testhost

    kernels = sorted(Path("/boot").glob("vmlinuz-*-amd64"), key=os.path.getmtime)
    if not kernels:
        raise SystemExit("no /boot/vmlinuz-*-amd64: run ./run setup")
    with tempfile.TemporaryDirectory(prefix=prefix) as tmp:
        yield testhost, kernels[-1], Path(tmp)
