"""The build host's configured Debian apt sources, as the default mirror of
bootstrap steps (so no host name is ever written into this project)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

NAME = None  # a helper module, not a step type


@dataclass(frozen=True)
class Source:
    uri: str
    suite: str
    components: tuple[str, ...]
    signed_by: str | None = None

    def line(self, suite: str, components: list[str]) -> str:
        opts = f" [signed-by={self.signed_by}]" if self.signed_by else ""
        return f"deb{opts} {self.uri} {suite} {' '.join(components)}"


def host_codename(root: Path = Path("/")) -> str | None:
    try:
        text = (root / "etc/os-release").read_text()
    except OSError:
        return None
    m = re.search(r"^VERSION_CODENAME=\"?([a-z]+)\"?$", text, re.M)
    return m.group(1) if m else None


def _one_line(text: str) -> list[Source]:
    out = []
    for raw in text.splitlines():
        line = raw.split("#", 1)[0].strip()
        m = re.match(r"deb\s+(?:\[([^\]]*)\]\s+)?(\S+)\s+(\S+)\s*(.*)$", line)
        if not m:
            continue
        opts = dict(
            o.split("=", 1) for o in (m.group(1) or "").split() if "=" in o
        )
        out.append(Source(m.group(2), m.group(3), tuple(m.group(4).split()),
                          opts.get("signed-by")))
    return out


def _deb822(text: str) -> list[Source]:
    out = []
    for block in re.split(r"\n\s*\n", text):
        fields: dict[str, str] = {}
        key = None
        for raw in block.splitlines():
            if raw.startswith("#"):
                continue
            if raw[:1] in (" ", "\t") and key:
                fields[key] += " " + raw.strip()
                continue
            if ":" in raw:
                key, value = raw.split(":", 1)
                key = key.strip().lower()
                fields[key] = value.strip()
        if "deb" not in fields.get("types", "").split():
            continue
        if fields.get("enabled", "yes").lower() == "no":
            continue
        signed = fields.get("signed-by")
        if signed and not signed.startswith("/"):
            signed = None  # an inline key block: not expressible in a one-line entry
        for uri in fields.get("uris", "").split():
            for suite in fields.get("suites", "").split():
                out.append(Source(uri, suite, tuple(fields.get("components", "").split()),
                                  signed))
    return out


def host_sources(root: Path = Path("/")) -> list[Source]:
    found: list[Source] = []
    main = root / "etc/apt/sources.list"
    if main.is_file():
        found += _one_line(main.read_text())
    d = root / "etc/apt/sources.list.d"
    if d.is_dir():
        for f in sorted(d.iterdir()):
            if f.suffix == ".list":
                found += _one_line(f.read_text())
            elif f.suffix == ".sources":
                found += _deb822(f.read_text())
    return found


def debian_lines(suite: str, components: list[str], root: Path = Path("/")) -> list[str]:
    """sources.list lines for `suite`, made from the host's Debian entries.

    Entries of the host's own release (`bookworm`, `bookworm-updates`,
    `bookworm-security`) are kept with their suite renamed to the target's;
    other repositories (third-party suites) are left out.
    """
    codename = host_codename(root)
    if codename is None:
        return []
    lines: list[str] = []
    for src in host_sources(root):
        if src.suite == codename:
            new_suite = suite
        elif src.suite.startswith(codename + "-") or src.suite.startswith(codename + "/"):
            new_suite = suite + src.suite[len(codename):]
        else:
            continue
        line = src.line(new_suite, components)
        if line not in lines:
            lines.append(line)
    return lines
