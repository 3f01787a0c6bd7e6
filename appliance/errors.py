"""One exception type per domain; cli.py turns each into a message and an exit code."""

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


class BootError(ApplianceError):
    """An image did not boot well in `appliance boot-test` (or could not be booted)."""

    exit_code = 5


class VmmError(ApplianceError):
    """The microVM monitor cannot create, load or run a guest."""

    exit_code = 5


def where(path: object, line: int | None = None) -> str:
    """Format a `file:line` location prefix."""
    return f"{path}:{line}" if line else f"{path}"


class HostError(ApplianceError):
    """A request to the host-management layer cannot be done: bad input, a
    missing guest or template, a guest in the wrong state. `http_status` is
    what the REST API answers (400 bad input, 404 missing, 409 wrong state)."""

    exit_code = 6

    def __init__(self, message: str, http_status: int = 400) -> None:
        super().__init__(message)
        self.http_status = http_status
