import argparse
import json
import os
import subprocess
import sys

import pytest

from appliance import errors
from appliance.cli import main
from appliance.cli.output import emit


def test_help_lists_the_build_command(capsys):
    with pytest.raises(SystemExit, match=r"^0$"):  # argparse's --help exits 0
        main(["--help"])
    assert "build" in capsys.readouterr().out


def test_console_script_runs_as_module():
    out = subprocess.run(
        [sys.executable, "-m", "appliance", "--version"], capture_output=True, text=True, check=True
    )
    assert out.stdout.startswith("appliance ")


def appliance(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "appliance", *args], capture_output=True,
                          text=True, timeout=60, env=env, stdin=subprocess.DEVNULL)


def domain_classes() -> list[type[errors.ApplianceError]]:
    return [c for c in vars(errors).values() if isinstance(c, type)
            and issubclass(c, errors.ApplianceError) and c.__module__ == errors.__name__]


def test_each_error_domain_has_its_own_exit_code():
    codes = {c.__name__: c.exit_code for c in domain_classes()}
    assert sorted(codes.values()) == sorted(set(codes.values())), codes
    assert sorted(code for code, _ in errors.EXIT_CODES) == sorted(codes.values())


def test_exit_codes_leave_detect_verdicts_and_vm_run_results_free():
    from appliance.hw.report import EXIT_CODES as DETECT_CODES
    from appliance.vmm.launcher import EXIT_CRASHED, EXIT_KILLED

    taken = {c.exit_code for c in domain_classes()}
    own = {*DETECT_CODES.values(), EXIT_CRASHED, EXIT_KILLED, 130} - {0}
    assert taken & own == set()


def test_error_classes_outside_errors_py_take_their_domain_exit_code():
    import importlib
    import pkgutil

    import appliance

    for mod in pkgutil.walk_packages(appliance.__path__, "appliance."):
        if not mod.name.endswith(".__main__"):  # that one runs the CLI
            importlib.import_module(mod.name)
    stack, found = [errors.ApplianceError], []
    while stack:
        for cls in stack.pop().__subclasses__():
            stack.append(cls)
            if cls.__module__ != errors.__name__:
                found.append(cls)
                assert "exit_code" not in vars(cls), f"{cls.__qualname__} sets its own exit code"
    from appliance.installer.source import SourceError

    assert SourceError in found and SourceError.exit_code == errors.InstallerError.exit_code


def test_help_lists_every_exit_code(capsys):
    with pytest.raises(SystemExit, match=r"^0$"):
        main(["--help"])
    out = capsys.readouterr().out
    table = out[out.index("exit status:"):]
    for code, meaning in errors.EXIT_CODES:
        if code != 1:
            assert f"  {code:>3}  {meaning}\n" in table
    for line in ("    0  success", "    1  other errors; `device-match`: nothing matched",
                 "   10  to 14: `detect`'s verdict", "   70  `vm run`: the guest crashed",
                 "  124  `vm run`: the guest was killed", "  130  interrupted"):
        assert line in table


@pytest.mark.parametrize(("args", "code", "message"), [
    (("answer", "validate", "/nonexistent/answer.toml"), 6, "cannot read the answer file"),
    (("prepare-iso", "/nonexistent.iso", "-o", "x.iso"), 7, "/nonexistent.iso: no such ISO"),
    (("task", "log", "UPID:nosuch"), 15, "no task 'UPID:nosuch'"),
    (("vm", "start", "100"), 15, "no guest 100"),
    (("build", "--set", "novalue", "--dry-run"), 1, "--set 'novalue': expected KEY=VALUE"),
])
def test_errors_exit_with_their_domain_code(tmp_path, args, code, message):
    env = {**os.environ, "APPLIANCE_ETC_DIR": str(tmp_path / "etc"),
           "APPLIANCE_STATE_DIR": str(tmp_path / "state")}
    r = appliance(*args, env=env)
    assert (r.returncode, r.stdout) == (code, ""), r.stderr
    assert r.stderr.startswith("appliance: error: ") and message in r.stderr
    assert "Traceback" not in r.stderr


def test_vm_run_of_a_bad_kernel_exits_with_the_monitor_code(tmp_path):
    kernel = tmp_path / "vmlinuz"
    kernel.write_bytes(b"\0" * 4096)
    r = appliance("vm", "run", "--kernel", str(kernel), "--json")
    assert r.returncode == errors.VmmError.exit_code == 9, r.stderr
    assert f"{kernel}: not a bzImage" in r.stderr and r.stdout == ""


def test_emit_prints_json_with_json_and_computes_only_what_it_prints(capsys):
    def unused() -> str:
        raise AssertionError("computed but not printed")

    emit(argparse.Namespace(json=True), lambda: {"a": [1, 2]}, unused)
    assert json.loads(capsys.readouterr().out) == {"a": [1, 2]}
    emit(argparse.Namespace(json=False), unused, lambda: "text\n")
    assert capsys.readouterr().out == "text\n"
    emit(argparse.Namespace(json=False), unused, lambda: "to stderr\n", text_to=sys.stderr)
    assert capsys.readouterr() == ("", "to stderr\n")


def test_cli_json_and_text_outputs_through_emit():
    as_json = appliance("answer", "keys", "--json")
    as_text = appliance("answer", "keys")
    assert as_json.returncode == as_text.returncode == 0, as_json.stderr + as_text.stderr
    keys = json.loads(as_json.stdout)
    assert keys and not as_text.stdout.lstrip().startswith(("[", "{"))


def test_cli_imports_no_capability_before_a_command_runs():
    code = ("import sys, appliance.cli as c; c.make_parser(); "
            "print(' '.join(sorted(m for m in sys.modules if m.startswith('appliance.'))))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout.split()
    heavy = [m for m in out if m.split(".")[1] in
             ("engine", "recipe", "hw", "answer", "host", "web", "boot", "installer")]
    assert heavy == [], heavy


def test_readme_exit_status_table_matches_the_error_domains():
    from pathlib import Path

    readme = (Path(__file__).parent.parent / "README.md").read_text()
    section = readme[readme.index("## Exit status"):readme.index("## Layout")]
    rows = [line.split("|")[1].strip() for line in section.splitlines()
            if line.startswith("| ") and line.split("|")[1].strip().isdigit()]
    assert sorted(int(code) for code in rows) == sorted(c.exit_code for c in domain_classes())
