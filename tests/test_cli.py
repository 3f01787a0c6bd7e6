import subprocess
import sys

from appliance.cli import main


def test_help_lists_the_build_command(capsys):
    try:
        main(["--help"])
    except SystemExit as e:
        assert e.code == 0
    assert "build" in capsys.readouterr().out


def test_console_script_runs_as_module():
    out = subprocess.run(
        [sys.executable, "-m", "appliance", "--version"], capture_output=True, text=True, check=True
    )
    assert out.stdout.startswith("appliance ")
