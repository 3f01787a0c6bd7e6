"""One exception type per domain; appliance.cli turns each into a message and an exit code.

Each domain has its own exit code (EXIT_CODES lists them for `appliance --help`).
Codes other commands use for their own results are left free: 10-14 are
`appliance detect`'s verdicts, 70 and 124 `appliance vm run`'s crashed and
killed guests, 130 an interrupt.
"""

from __future__ import annotations


class ApplianceError(Exception):
    """A problem the user can act on. Never shown with a traceback."""

    exit_code = 1


class RecipeError(ApplianceError):
    """A recipe is malformed, inconsistent or refers to something missing."""

    exit_code = 2


class BuildError(ApplianceError):
    """A build step failed while running."""

    exit_code = 3


class ToolError(ApplianceError):
    """A host tool is missing or a command failed."""

    exit_code = 4


class HardwareError(ApplianceError):
    """Hardware detection was asked something it cannot answer (bad filter,
    unreadable recorded data). A machine that cannot host VMs is not an error:
    `appliance detect` reports that through its verdict and exit status."""

    exit_code = 5


class AnswerError(ApplianceError):
    """An installer answer file is malformed, or cannot be applied to this
    machine (a filter matching no disk, too few disks for the RAID level...).
    The message names the file, the key (dotted path) and the reason;
    `file`, `line`, `key` and `reason` hold them for programs."""

    exit_code = 6

    def __init__(
        self,
        message: str,
        *,
        file: str | None = None,
        line: int | None = None,
        key: str | None = None,
        reason: str | None = None,
    ) -> None:
        super().__init__(message)
        self.file = file
        self.line = line
        self.key = key
        self.reason = reason if reason is not None else message


class InstallerError(ApplianceError):
    """The installer cannot fetch the answer, lay out or write the target disk,
    or re-pack an installer ISO (`appliance install`, `prepare-iso`, the ISO's
    installer service)."""

    exit_code = 7


class BootError(ApplianceError):
    """An image did not boot well in `appliance boot-test` (or could not be booted)."""

    exit_code = 8


class VmmError(ApplianceError):
    """The microVM monitor cannot create, load or run a guest."""

    exit_code = 9


class HostError(ApplianceError):
    """A request to the host-management layer cannot be done: bad input, a
    missing guest or template, a guest in the wrong state. `http_status` is
    what the REST API answers (400 bad input, 404 missing, 409 wrong state)."""

    exit_code = 15

    def __init__(self, message: str, http_status: int = 400) -> None:
        super().__init__(message)
        self.http_status = http_status


# (exit code, what it means), for `appliance --help`; tests check it against the classes.
EXIT_CODES: tuple[tuple[int, str], ...] = (
    (ApplianceError.exit_code, "other errors (a bad option value, a refused request)"),
    (RecipeError.exit_code, "recipe error (also argparse: bad command line)"),
    (BuildError.exit_code, "build step failed"),
    (ToolError.exit_code, "host tool missing or a command failed"),
    (HardwareError.exit_code, "hardware detection failed"),
    (AnswerError.exit_code, "answer file wrong or does not fit the machine"),
    (InstallerError.exit_code, "installer: answer fetch, disk layout, install, prepare-iso"),
    (BootError.exit_code, "boot-test: the image did not boot cleanly"),
    (VmmError.exit_code, "microVM monitor cannot create, load or run a guest"),
    (HostError.exit_code, "guests, tasks, templates: bad input, missing, wrong state"),
)
