"""Every subprocess goes through here: logged, streamed to the build log,
and on failure raised with the command and the tail of its output."""

from __future__ import annotations

import collections
import logging
import os
import shlex
import shutil
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path

from appliance.errors import ToolError

log = logging.getLogger("appliance.run")

TAIL_LINES = 25


def require_tools(*tools: str, why: str = "") -> None:
    """Fail early, naming every missing host tool."""
    missing = [t for t in tools if shutil.which(t) is None]
    if missing:
        hint = f" (needed {why})" if why else ""
        raise ToolError(
            f"missing host tool{'s' if len(missing) > 1 else ''}: {', '.join(missing)}{hint}; "
            "run `./run setup` or install the Debian packages in deps/apt-packages.txt"
        )


def run(
    cmd: Sequence[str | os.PathLike[str]],
    *,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
    input: bytes | None = None,
    capture: bool = False,
    check: bool = True,
    what: str | None = None,
    timeout: float | None = None,
) -> subprocess.CompletedProcess[bytes]:
    """Run a command; its output goes to the log (or is captured and returned).

    On failure raise ToolError with `what` (or the command) and the output tail.
    A captured command still running after `timeout` seconds is killed and
    raises ToolError too.
    """
    argv = [os.fspath(c) for c in cmd]
    text = shlex.join(argv)
    log.debug("$ %s", text)
    full_env = None
    if env is not None:
        full_env = dict(os.environ)
        full_env.update(env)
    try:
        proc = subprocess.Popen(
            argv,
            stdin=subprocess.PIPE if input is not None else subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE if capture else subprocess.STDOUT,
            env=full_env,
            cwd=cwd,
        )
    except FileNotFoundError as e:
        raise ToolError(f"cannot run {argv[0]}: not found ({what or text})") from e
    if capture:
        try:
            out, err = proc.communicate(input, timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, err = proc.communicate()
            last = (out + err).decode(errors="replace").splitlines()[-TAIL_LINES:]
            raise ToolError(
                f"{what or 'command'} timed out after {timeout} s: {text}\n"
                + "\n".join("  | " + ln for ln in last)
            ) from None
        tail_src = err.decode(errors="replace").splitlines()
        for line in tail_src:
            log.debug("  %s", line)
    else:
        assert proc.stdout is not None
        if input is not None:
            assert proc.stdin is not None
            proc.stdin.write(input)
            proc.stdin.close()
        tail: collections.deque[str] = collections.deque(maxlen=TAIL_LINES)
        for raw in proc.stdout:
            line = raw.decode(errors="replace").rstrip("\n")
            tail.append(line)
            log.debug("  %s", line)
        proc.wait()
        out, err = b"", b""
        tail_src = list(tail)
    if check and proc.returncode != 0:
        lines = "\n".join("  | " + ln for ln in tail_src[-TAIL_LINES:])
        raise ToolError(
            f"{what or 'command'} failed with exit status {proc.returncode}: {text}"
            + (f"\n{lines}" if lines else "")
        )
    return subprocess.CompletedProcess(argv, proc.returncode or 0, out, err)


def spawn(
    cmd: Sequence[str | os.PathLike[str]],
    *,
    output: Path,
    env: Mapping[str, str] | None = None,
    what: str | None = None,
) -> subprocess.Popen[bytes]:
    """Start a long-running command (e.g. a virtual machine) in the background,
    its stdout and stderr going to `output`. The caller waits for or ends it."""
    argv = [os.fspath(c) for c in cmd]
    log.debug("$ %s &", shlex.join(argv))
    full_env = None
    if env is not None:
        full_env = dict(os.environ)
        full_env.update(env)
    with open(output, "ab") as out:
        try:
            return subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out,
                                    stderr=subprocess.STDOUT, env=full_env)
        except FileNotFoundError as e:
            raise ToolError(f"cannot run {argv[0]}: not found ({what or shlex.join(argv)})") from e


def stop(proc: subprocess.Popen[bytes], grace: float = 10.0) -> None:
    """End a spawned command: SIGTERM, then SIGKILL after `grace` seconds."""
    if proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(grace)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
