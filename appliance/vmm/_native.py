"""Loads the compiled monitor (the cffi extension `appliance.vmm._vmm`).

APPLIANCE_VMM_NATIVE=/path/to/_vmm*.so loads another build of the same
module instead, e.g. the AddressSanitizer variant the tests build.
"""

from __future__ import annotations

import importlib.machinery
import importlib.util
import os
from typing import Any

from appliance.errors import VmmError

ENV_OVERRIDE = "APPLIANCE_VMM_NATIVE"
MODULE = "appliance.vmm._vmm"


def _load() -> Any:
    override = os.environ.get(ENV_OVERRIDE)
    if override:
        loader = importlib.machinery.ExtensionFileLoader(MODULE, override)
        spec = importlib.util.spec_from_file_location(MODULE, override, loader=loader)
        if spec is None:
            raise VmmError(f"{ENV_OVERRIDE}={override}: cannot load")
        module = importlib.util.module_from_spec(spec)
        loader.exec_module(module)
        return module
    try:
        from appliance.vmm import _vmm  # type: ignore[attr-defined]
    except ImportError as e:
        raise VmmError(
            f"the native monitor is not built ({e}); run `./run setup` to build it"
        ) from e
    return _vmm


_module = _load()
ffi: Any = _module.ffi
lib: Any = _module.lib
NATIVE_PATH: str = _module.__file__
