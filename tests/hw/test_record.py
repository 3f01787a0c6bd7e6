"""Recording this machine and replaying it gives the same report."""

import json
import subprocess
import sys

import pytest

from appliance.errors import HardwareError
from appliance.hw.record import record

from .conftest import appliance_cmd, appliance_json

pytestmark = pytest.mark.usefixtures("umockdev")


def _comparable(report: dict) -> dict:
    report["virtualization"]["kvm_device"].pop("path")  # below the recorded root
    return report


def test_record_then_replay_gives_the_same_report(tmp_path):
    dest = tmp_path / "this-machine"
    proc = appliance_cmd("detect", "--record", str(dest))
    assert proc.returncode == 0 and f"recorded this machine in {dest}" in proc.stdout
    assert json.loads((dest / "cpuid.json").read_text())["0x0"]
    assert (dest / "devices.umockdev").read_text().startswith("P: /devices/")

    code_real, real = appliance_json("detect", "--json")
    proc_args = ("detect", "--json", "--recorded", str(dest))
    replay = subprocess.run(
        ["umockdev-run", "-d", str(dest / "devices.umockdev"), "--",
         sys.executable, "-m", "appliance", *proc_args],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert replay.returncode == code_real, replay.stderr
    assert _comparable(json.loads(replay.stdout)) == _comparable(real)


def test_record_refuses_a_non_empty_directory(tmp_path):
    (tmp_path / "x").mkdir()
    (tmp_path / "x" / "keep").write_text("")
    with pytest.raises(HardwareError, match="not empty"):
        record(tmp_path / "x")
