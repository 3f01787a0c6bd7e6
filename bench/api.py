"""Benchmark: requests/s and latency of GET /api/guests with 50 guests defined.

    ./run appliance ... (setup) ; .venv/bin/python bench/api.py [--guests 50] [--seconds 10]

Runs the real server (`appliance web serve`, HTTPS, one uvicorn process) on
127.0.0.1 with temporary host roots, defines the guests (VM configs; they
stay stopped: the list reads each config and checks each guest's process),
makes an API token and loads the endpoint with wrk (Debian's wrk) over
loopback, then prints requests/s and the p50/p99 latency. Without wrk, a
Python loop of keep-alive requests measures the same (one connection).
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from appliance.host import Host, HostPaths, templates  # noqa: E402
from appliance.web.auth import Auth  # noqa: E402


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process (all its threads) so far."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat[stat.rindex(")") + 2:].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def define_guests(paths: HostPaths, n: int) -> None:
    kernel = paths.state / "bench-vmlinuz"
    kernel.write_bytes(b"\0" * 4096)  # never booted: the bench only lists guests
    templates.add_vm_template(paths, "bench", kernel, description="bench (never started)")
    host = Host(paths)
    for i in range(n):
        task = host.create("vm", {"name": f"bench{i}", "template": "bench", "memory_mib": 64})
        assert task.status == "OK", task.status


def wait_up(url: str, proc: subprocess.Popen[bytes]) -> None:
    import ssl
    import urllib.request

    ctx = ssl._create_unverified_context()
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit("the web server exited")
        try:
            urllib.request.urlopen(f"{url}/login", context=ctx, timeout=2).read()
            return
        except OSError:
            time.sleep(0.2)
    raise SystemExit("the web server did not come up")


def run_wrk(url: str, header: str, seconds: int, connections: int,
            path: str = "/api/guests") -> dict[str, float]:
    out = subprocess.run(["wrk", "-t2", f"-c{connections}", f"-d{seconds}s", "--latency",
                          "-H", header, f"{url}{path}"], capture_output=True, text=True,
                         check=True).stdout
    print(out)

    def ms(label: str) -> float:
        m = re.search(rf"^\s*{label}\s+([\d.]+)(us|ms|s)\s*$", out, re.M)
        if not m:
            raise SystemExit(f"wrk output has no {label} latency")
        return float(m.group(1)) * {"us": 1e-3, "ms": 1.0, "s": 1e3}[m.group(2)]

    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    return {"rps": rps, "p50_ms": ms("50%"), "p99_ms": ms("99%"),
            "non_2xx": float(errors.group(1)) if errors else 0.0}


def run_python(url: str, header: str, seconds: int,
               path: str = "/api/guests") -> dict[str, float]:
    import http.client
    import ssl

    host, port = url.removeprefix("https://").split(":")
    conn = http.client.HTTPSConnection(host, int(port), context=ssl._create_unverified_context())
    name, _, value = header.partition(": ")
    lat: list[float] = []
    bad = 0
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        t0 = time.perf_counter()
        conn.request("GET", path, headers={name: value})
        resp = conn.getresponse()
        resp.read()
        lat.append((time.perf_counter() - t0) * 1000)
        bad += resp.status != 200
    lat.sort()
    return {"rps": len(lat) / seconds, "p50_ms": statistics.median(lat),
            "p99_ms": lat[int(len(lat) * 0.99) - 1], "non_2xx": float(bad)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--guests", type=int, default=50)
    ap.add_argument("--seconds", type=int, default=10)
    ap.add_argument("--connections", type=int, default=8)
    ap.add_argument("--python", action="store_true", help="use the Python loop, not wrk")
    ap.add_argument("--path", default="/api/guests",
                    help="the endpoint to load (e.g. /api/version: the server's floor)")
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="appliance-bench-api-"))
    paths = HostPaths(tmp / "etc", tmp / "state")
    paths.ensure()
    define_guests(paths, args.guests)
    tokenid, secret = Auth(paths).create_token("root@pam", "bench")
    header = f"Authorization: ApplianceToken {tokenid}={secret}"
    port = free_port()
    url = f"https://127.0.0.1:{port}"
    env = {**os.environ, "APPLIANCE_ETC_DIR": str(paths.etc),
           "APPLIANCE_STATE_DIR": str(paths.state)}
    proc = subprocess.Popen([sys.executable, "-m", "appliance", "web", "serve", "--listen",
                             f"127.0.0.1:{port}"], env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        wait_up(url, proc)
        use_wrk = shutil.which("wrk") is not None and not args.python
        cpu = cpu_seconds(proc.pid)
        result = (run_wrk(url, header, args.seconds, args.connections, args.path) if use_wrk
                  else run_python(url, header, args.seconds, args.path))
        cpu = cpu_seconds(proc.pid) - cpu
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        shutil.rmtree(tmp, ignore_errors=True)
    tool = f"wrk, {args.connections} connections" if use_wrk else "python loop, 1 connection"
    print(f"GET {args.path} with {args.guests} guests ({tool}, {args.seconds} s, HTTPS, "
          f"loopback, {os.cpu_count()} CPUs):")
    print(f"  {result['rps']:.0f} requests/s, p50 {result['p50_ms']:.1f} ms, "
          f"p99 {result['p99_ms']:.1f} ms, non-2xx {result['non_2xx']:.0f}")
    # the server's own CPU time per request: steadier than requests/s on a busy machine
    per_request = cpu / max(result["rps"] * args.seconds, 1) * 1000
    print(f"  server CPU {per_request:.2f} ms a request (all its threads)")
    return 0 if result["non_2xx"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
