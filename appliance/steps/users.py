"""users: root password, users and SSH authorized keys. Passwords are stored
only as SHA-512 crypt hashes; a plain password in a recipe never reaches the
image, the cache manifest or `recipe show`."""

from __future__ import annotations

import hashlib
import os
from typing import Any

from appliance.engine.context import StepContext
from appliance.recipe.model import Recipe
from appliance.recipe.schema import (
    USER_NAME,
    Option,
    OptionError,
    Table,
    integer,
    string,
    string_list,
    table_list,
)
from appliance.steps import _common

NAME = "users"
VERSION = 1
HELP = (
    "Set the root password (plain, hashed on the build host with a derived salt, or an "
    "already hashed crypt string), add users, and install SSH authorized keys."
)
TOOLS = ("openssl",)

HASH = r"\$(1|5|6|y|2[aby])\$\S+"

USER = Table(
    (
        Option("name", string(pattern=USER_NAME, what="user name"), help="login name"),
        Option("uid", integer(minimum=1000, maximum=59999), None, "numeric uid"),
        Option("password", string(), None, "plain password (stored hashed)", secret=True),
        Option("password-hashed", string(pattern=HASH, what="crypt hash"), None,
               "crypt(3) hash"),
        Option("groups", string_list(pattern=USER_NAME, what="group name"), [],
               "supplementary groups", kind="list of strings"),
        Option("shell", string(), "/bin/bash", "login shell"),
        Option("ssh-keys", string_list(), [], "SSH authorized keys", kind="list of strings"),
    ),
    exclusive=(("password", "password-hashed"),),
)

OPTIONS = Table(
    (
        Option("root-password", string(), None, "plain root password (stored hashed)",
               secret=True),
        Option("root-password-hashed", string(pattern=HASH, what="crypt hash"), None,
               "root password as a crypt(3) hash (e.g. from `openssl passwd -6`)"),
        Option("root-ssh-keys", string_list(), [], "SSH authorized keys of root",
               kind="list of strings"),
        Option("users", table_list(USER), [], "users to create", kind="list of tables"),
    ),
    exclusive=(("root-password", "root-password-hashed"),),
)

SSH_KEY = ("ssh-", "ecdsa-", "sk-")


def validate(options: dict[str, Any], recipe: Recipe) -> None:
    if not any(options[k] for k in ("root-password", "root-password-hashed",
                                   "root-ssh-keys", "users")):
        raise OptionError("nothing to do: give a root password, SSH keys or users")
    keys = [("root-ssh-keys", i, k) for i, k in enumerate(options["root-ssh-keys"])]
    for u, user in enumerate(options["users"]):
        keys += [("users", u, k) for k in user["ssh-keys"]]
    for where, i, key in keys:
        if not key.startswith(SSH_KEY) or len(key.split()) < 2:
            raise OptionError(f"{key[:30]!r}... is not an SSH public key", [where, i])


def hash_password(password: str, salt_seed: str) -> str:
    """SHA-512 crypt with a salt derived from the recipe (determinism)."""
    from appliance.runner import run

    salt = hashlib.sha256(salt_seed.encode()).hexdigest()[:16]
    out = run(["openssl", "passwd", "-6", "-salt", salt, "-stdin"],
              input=password.encode(), capture=True, what="openssl passwd")
    return out.stdout.decode().strip()


def _set_shadow(ctx: StepContext, user: str, hashed: str) -> None:
    shadow = ctx.path("/etc/shadow")
    lastchg = str(ctx.recipe.source_date_epoch // 86400)
    lines = shadow.read_text().splitlines() if shadow.exists() else []
    for i, line in enumerate(lines):
        fields = line.split(":")
        if fields[0] == user:
            fields[1] = hashed
            fields[2] = lastchg
            lines[i] = ":".join(fields)
            break
    else:
        lines.append(f"{user}:{hashed}:{lastchg}:0:99999:7:::")
    st = shadow.stat() if shadow.exists() else None
    tmp = shadow.with_name(".shadow.appliance")
    tmp.write_text("\n".join(lines) + "\n")
    if st is not None:
        os.chown(tmp, st.st_uid, st.st_gid)
        os.chmod(tmp, st.st_mode & 0o7777)
    else:
        os.chmod(tmp, 0o640 if _has_group(ctx, "shadow") else 0o600)
        if _has_group(ctx, "shadow"):
            os.chown(tmp, 0, ctx.ids(None, "shadow")[1])
    os.replace(tmp, shadow)


def _has_group(ctx: StepContext, name: str) -> bool:
    group = ctx.path("/etc/group")
    return group.exists() and any(
        line.split(":")[0] == name for line in group.read_text().splitlines()
    )


def _home(ctx: StepContext, user: str) -> str:
    for line in ctx.path("/etc/passwd").read_text().splitlines():
        f = line.split(":")
        if f[0] == user and len(f) > 5:
            return f[5]
    ctx.fail(f"user {user} is not in the image's /etc/passwd")
    raise AssertionError


def _authorized_keys(ctx: StepContext, user: str, keys: list[str]) -> None:
    home = _home(ctx, user)
    uid, gid = ctx.ids(user, user if user != "root" else "root")
    ssh_dir = ctx.path(f"{home}/.ssh")
    _common.ensure_parent(ctx, ssh_dir / "x")
    os.chown(ssh_dir, uid, gid)
    os.chmod(ssh_dir, 0o700)
    _common.install_file(ctx, ctx.path(f"{home}/.ssh/authorized_keys"),
                         ("\n".join(keys) + "\n").encode(), 0o600, uid, gid)


def run(ctx: StepContext) -> None:
    o: dict[str, Any] = dict(ctx.options)
    seed = ctx.recipe.name + ":" + ctx.step.name
    for user in o["users"]:
        argv = ["useradd", "--create-home", "--shell", user["shell"], "--user-group"]
        if user["uid"] is not None:
            argv += ["--uid", str(user["uid"])]
        if user["groups"]:
            argv += ["--groups", ",".join(user["groups"])]
        if not ctx.path("/usr/sbin/useradd").exists():
            ctx.fail("the image has no useradd (package passwd) to create users")
        ctx.chroot([*argv, user["name"]], what=f"useradd {user['name']}")
        hashed = user["password-hashed"] or (
            hash_password(user["password"], f"{seed}:{user['name']}") if user["password"]
            else "!")
        _set_shadow(ctx, user["name"], hashed)
        if user["ssh-keys"]:
            _authorized_keys(ctx, user["name"], user["ssh-keys"])
    if o["root-password"] or o["root-password-hashed"]:
        hashed = o["root-password-hashed"] or hash_password(o["root-password"], f"{seed}:root")
        _set_shadow(ctx, "root", hashed)
    if o["root-ssh-keys"]:
        _authorized_keys(ctx, "root", o["root-ssh-keys"])
