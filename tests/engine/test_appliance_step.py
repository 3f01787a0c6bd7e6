"""The recipe step `appliance` installs the pinned runtime dependencies into
the image as wheels only (the image has no compiler): the lock must install
that way, and its C extensions must load with the system's python3."""

from __future__ import annotations

import subprocess
from pathlib import Path

from appliance.steps.appliance import RUNTIME_LOCK, _install_runtime_deps, project_root


def test_the_runtime_lock_installs_as_wheels_and_loads_with_the_system_python(
    tmp_path: Path,
) -> None:
    site = tmp_path / "usr/lib/python3/dist-packages"
    site.mkdir(parents=True)
    _install_runtime_deps(project_root() / RUNTIME_LOCK, site, tmp_path / "stage")
    # the web server's fast stack (see appliance/web/server.py), compiled for this python
    assert list((site / "uvloop").glob("loop.cpython-3*-x86_64-linux-gnu.so"))
    assert list((site / "httptools/parser").glob("parser.cpython-3*-x86_64-linux-gnu.so"))
    probe = ("import sys; sys.path.insert(0, sys.argv[1]); import uvloop, httptools, uvicorn; "
             "from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol; "
             "print(uvloop.__file__, httptools.__version__)")
    out = subprocess.run(["/usr/bin/python3", "-I", "-c", probe, str(site)],
                         capture_output=True, text=True, check=True).stdout
    assert out.startswith(str(site / "uvloop")), out
