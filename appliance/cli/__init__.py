"""Command line: parses arguments and calls the capability that does the work.

One module per command group (build, hw, answer, vm, host, boot, install), each
with an `add_commands(sub)`; `output.emit` prints every --json/text result.
Handlers import their capability lazily, so `appliance --help` starts fast.
Every ApplianceError is caught here once and turned into a message and its
domain's exit code (appliance.errors.EXIT_CODES); user mistakes never show a
traceback.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable, Sequence

from appliance import __version__
from appliance.cli import answer, boot, build, host, hw, install, vm
from appliance.errors import EXIT_CODES, ApplianceError

Handler = Callable[[argparse.Namespace], int]

# Each capability adds its commands with one function here.
COMMAND_GROUPS: list[Callable[[argparse._SubParsersAction[argparse.ArgumentParser]], None]] = [
    build.add_commands,
    hw.add_commands,
    answer.add_commands,
    vm.add_commands,
    host.add_commands,
    boot.add_commands,
    install.add_commands,
]


def exit_status_help() -> str:
    """The exit-status table shown at the end of `appliance --help`: one code
    per error domain, then the codes commands use for their own results."""
    from appliance.vmm.launcher import EXIT_CRASHED, EXIT_KILLED  # vm.add_commands needs it too

    rows = [
        (0, "success"),
        (1, "other errors; `device-match`: nothing matched"),
        *((code, meaning) for code, meaning in EXIT_CODES if code != 1),
        (10, "to 14: `detect`'s verdict (see `appliance detect --help`)"),
        (EXIT_CRASHED, "`vm run`: the guest crashed (else the guest's power-off code)"),
        (EXIT_KILLED, "`vm run`: the guest was killed (timeout, Ctrl-A x)"),
        (130, "interrupted (Ctrl-C)"),
    ]
    return "exit status:\n" + "".join(f"  {code:>3}  {meaning}\n" for code, meaning in
                                      sorted(rows, key=lambda row: row[0]))


def make_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="appliance",
        description="Build and run a bare-metal hypervisor host distribution.",
        epilog=exit_status_help(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"appliance {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="show debug output")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for add in COMMAND_GROUPS:
        add(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = make_parser()
    args = parser.parse_args(argv)
    console = logging.StreamHandler(sys.stderr)
    console.setLevel(logging.DEBUG if args.verbose else logging.WARNING)
    console.setFormatter(logging.Formatter("%(levelname)s: %(message)s"))
    logging.getLogger().addHandler(console)
    handler: Handler = args.func
    try:
        return handler(args)
    except ApplianceError as e:
        print(f"appliance: error: {e}", file=sys.stderr)
        return e.exit_code
    except BrokenPipeError:  # output piped into `head` and the like
        sys.stderr.close()
        return 0
    except KeyboardInterrupt:
        print("appliance: interrupted", file=sys.stderr)
        return 130
