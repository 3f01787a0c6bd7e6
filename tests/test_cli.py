import subprocess
import sys

import pytest

from appliance.cli import main


def test_help_lists_the_build_command(capsys):
    with pytest.raises(SystemExit, match=r"^0$"):  # argparse's --help exits 0
        main(["--help"])
    assert "build" in capsys.readouterr().out


def test_console_script_runs_as_module():
    out = subprocess.run(
        [sys.executable, "-m", "appliance", "--version"], capture_output=True, text=True, check=True
    )
    assert out.stdout.startswith("appliance ")
