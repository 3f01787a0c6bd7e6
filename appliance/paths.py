"""Where the project's data lives: recipes, templates, web UI; and where an
installed host keeps its guests (the state root)."""

from __future__ import annotations

import sys
from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent


def data_root() -> Path:
    """The directory holding image_recipes/, templates/ and webui/.

    A source checkout (or an editable install) has them next to the package;
    an installed copy carries them under <prefix>/share/appliance.
    """
    checkout = PACKAGE_DIR.parent
    if (checkout / "image_recipes").is_dir():
        return checkout
    return Path(sys.prefix) / "share" / "appliance"


def recipes_dir() -> Path:
    return data_root() / "image_recipes"


def templates_dir() -> Path:
    return data_root() / "templates"


DEFAULT_RECIPE = "installer.toml"
DEFAULT_CACHE_DIR = Path("/var/cache/appliance")
# The host layer's state root (guests' disks, templates; appliance.host.store),
# on an installed system the mount point of the installer's guests volume.
STATE_DIR = Path("/var/lib/appliance")
