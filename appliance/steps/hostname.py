"""hostname: the image's host name (/etc/hostname and /etc/hosts)."""

from __future__ import annotations

from typing import Any

from appliance.engine.context import StepContext
from appliance.recipe.model import Recipe
from appliance.recipe.schema import Option, Table, string
from appliance.steps import _common

NAME = "hostname"
VERSION = 1
HELP = "Set the host name (/etc/hostname, and a 127.0.1.1 line in /etc/hosts)."

OPTIONS = Table((
    Option("hostname", string(pattern=r"(?=.{1,253}$)[a-zA-Z0-9]([a-zA-Z0-9-]{0,61}[a-zA-Z0-9])?"
                                  r"(\.[a-zA-Z0-9]([a-zA-Z0-9-]{0,61}[a-zA-Z0-9])?)*",
                          what="host name"), help="host name, or a fully qualified name"),
))


def validate(options: dict[str, Any], recipe: Recipe) -> None:
    return None


def run(ctx: StepContext) -> None:
    fqdn = str(ctx.options["hostname"])
    short = fqdn.split(".", 1)[0]
    _common.install_file(ctx, ctx.path("/etc/hostname"), f"{short}\n".encode(), 0o644, 0, 0)
    hosts = ctx.path("/etc/hosts")
    lines = hosts.read_text().splitlines() if hosts.exists() else ["127.0.0.1\tlocalhost"]
    names = f"{fqdn} {short}" if fqdn != short else short
    lines = [ln for ln in lines if not ln.startswith("127.0.1.1")]
    lines.insert(1 if lines else 0, f"127.0.1.1\t{names}")
    _common.install_file(ctx, hosts, ("\n".join(lines) + "\n").encode(), 0o644, 0, 0)
