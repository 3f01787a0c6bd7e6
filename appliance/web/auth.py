"""Authentication like Proxmox VE's: PAM login, a signed ticket cookie, a
CSRF token for every write made with that cookie, and API tokens.

- Login: a system account checked through PAM (python-pam). Allowed are root
  and the members of one group (`admin_group`, default appliance-admin).
- Failed logins are limited per client address (an IPv6 /64 is one address)
  and per user name, counted *before* PAM runs: an attempt reserves its place
  in both tables, so parallel guesses cannot pass the limit. The tables hold
  at most `max_tracked` keys each (the oldest are dropped). Every failure,
  whether the user exists, is an admin or typed a wrong password, answers
  after the same time (`min_failure_delay` plus up to `failure_jitter`): the
  answer's timing does not tell which accounts exist.
- Ticket: "APPL:NAME:ISSUED:NONCE:STAMP:SIGNATURE", HMAC-SHA256 with a key made
  on first start (ETC/priv/ticket.key, mode 0600). STAMP is a keyed hash of
  the account's password hash (/etc/shadow): a password change or a locked
  account ends the tickets. Sent as an HttpOnly, Secure, SameSite=Strict
  cookie; it expires `ticket_lifetime` seconds after ISSUED. Logout revokes
  the ticket (ETC/priv/revoked.json keeps revoked nonces until they expire).
- Every ticket and token request re-checks the account (cached for
  `account_cache` seconds): a user no longer in the admin group, or gone,
  is refused.
- CSRF token: HMAC of the ticket; a write with the cookie must send it in the
  CSRFPreventionToken header (the API) or a csrf_token form field (pages).
- API token: "Authorization: ApplianceToken USER!NAME=SECRET". The secret is
  shown once when made; only its SHA-256 is stored (ETC/priv/tokens.json),
  with an optional `expire` (seconds since the epoch, 0: never, as Proxmox's
  API tokens) and `last_used` (saved at most once a minute). A request with
  a token needs no CSRF token (no cookie is involved). A password change
  does not end tokens (they are credentials of their own); leaving the admin
  group does.
- Credentials from the client (cookie, headers, form fields) that are not
  short ASCII are refused like wrong ones, never an error.
- Secret and account files (ticket key, tokens, revoked tickets, logs/auth.log)
  are created mode 0600.
"""

from __future__ import annotations

import asyncio
import base64
import grp
import hashlib
import hmac
import ipaddress
import logging
import os
import pwd
import re
import secrets
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from starlette.concurrency import run_in_threadpool

from appliance.errors import HostError
from appliance.host.store import HostPaths, atomic_write, locked, read_json, write_json

log = logging.getLogger("appliance.web.auth")

COOKIE = "ApplianceAuthCookie"
CSRF_HEADER = "CSRFPreventionToken"
TOKEN_SCHEME = "ApplianceToken"
USER_RE = re.compile(r"^[a-z_][a-z0-9_-]{0,31}$")
TOKEN_NAME_RE = re.compile(r"^[A-Za-z][A-Za-z0-9_-]{0,63}$")
MAX_CREDENTIAL = 1024  # longer cookies, CSRF and token headers are refused unread
MAX_PASSWORD = 4096
LAST_USE_SAVE = 60.0  # a token's last use is written to tokens.json at most this often
SHADOW = Path("/etc/shadow")

Authenticator = Callable[[str, str], bool]


@dataclass
class AuthSettings:
    ticket_lifetime: int = 2 * 3600
    admin_group: str = "appliance-admin"
    pam_service: str = "appliance"  # no /etc/pam.d/appliance: PAM uses "other"
    max_failures: int = 5  # failed logins per client address ...
    failure_window: float = 300.0  # ... within this many seconds
    max_user_failures: int = 10  # failed logins per user name in the same window
    max_tracked: int = 10_000  # addresses (and names) remembered at most
    min_failure_delay: float = 2.0  # every failed login answers after this ...
    failure_jitter: float = 1.0  # ... plus a random part up to this
    account_cache: float = 15.0  # seconds an account check (group, password) is reused

    @classmethod
    def from_env(cls) -> AuthSettings:
        """APPLIANCE_ADMIN_GROUP names the group whose members may log in."""
        return cls(admin_group=os.environ.get("APPLIANCE_ADMIN_GROUP", cls.admin_group))


@dataclass(frozen=True)
class Identity:
    user: str  # "root@pam"
    via: str  # "ticket" or "token"
    ticket: str = ""


@dataclass(frozen=True)
class Account:
    """What a ticket or token is checked against, on each request."""

    allowed: bool  # exists, and is root or in the admin group
    stamp: str  # keyed hash of the password hash ("-": unreadable)


def client_key(address: str) -> str:
    """The rate-limit key of a client address: an IPv6 /64 is one client."""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return f"client:{address[:64]}"
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return f"client:{ip.ipv4_mapped}"
        return f"client:{ipaddress.IPv6Network((ip, 64), strict=False)}"
    return f"client:{ip}"


def user_key(user: str) -> str:
    """The rate-limit key of a user name (every malformed name shares one)."""
    return f"user:{user}" if USER_RE.match(user) else "user:?"


@dataclass
class FailureTable:
    """Recent failures per key, oldest-updated key first, at most `max_keys` keys."""

    max_failures: int
    window: float
    max_keys: int
    _keys: OrderedDict[str, deque[float]] = field(default_factory=OrderedDict)

    def __len__(self) -> int:
        return len(self._keys)

    def prune(self, now: float) -> None:
        """Forget keys whose last failure is older than the window."""
        while self._keys:
            key, q = next(iter(self._keys.items()))
            if q and now - q[-1] <= self.window:
                break
            del self._keys[key]

    def wait(self, key: str, now: float) -> float:
        """Seconds until `key` may try again (0: now)."""
        q = self._keys.get(key)
        if q is None:
            return 0.0
        while q and now - q[0] > self.window:
            q.popleft()
        if len(q) < self.max_failures:
            return 0.0
        return max(self.window - (now - q[0]), 0.001)

    def add(self, key: str, now: float) -> None:
        self._keys.setdefault(key, deque()).append(now)
        self._keys.move_to_end(key)
        while len(self._keys) > self.max_keys:  # full: forget the longest quiet key
            self._keys.popitem(last=False)

    def remove(self, key: str, stamp: float) -> None:
        q = self._keys.get(key)
        if q is not None and stamp in q:
            q.remove(stamp)

    def clear(self, key: str) -> None:
        self._keys.pop(key, None)


@dataclass
class LoginLimiter:
    """Failed logins per client and per user. An attempt is counted when it
    starts (`reserve`); only a success takes it back (`succeeded`)."""

    clients: FailureTable
    users: FailureTable
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @classmethod
    def from_settings(cls, s: AuthSettings) -> LoginLimiter:
        return cls(FailureTable(s.max_failures, s.failure_window, s.max_tracked),
                   FailureTable(s.max_user_failures, s.failure_window, s.max_tracked))

    def reserve(self, client: str, user: str) -> tuple[float, float]:
        """(0, stamp) if the attempt may go on (it now counts as a failure),
        else (seconds to wait, 0)."""
        now = time.monotonic()
        with self._lock:
            self.clients.prune(now)
            self.users.prune(now)
            wait = max(self.clients.wait(client, now), self.users.wait(user, now))
            if wait > 0:
                return wait, 0.0
            self.clients.add(client, now)
            self.users.add(user, now)
            return 0.0, now

    def succeeded(self, client: str, user: str, stamp: float) -> None:
        with self._lock:
            self.clients.clear(client)
            self.users.remove(user, stamp)


def pam_authenticator(service: str) -> Authenticator:
    def authenticate(user: str, password: str) -> bool:
        import pam  # type: ignore[import-untyped]  # python-pam: ctypes over libpam

        return bool(pam.pam().authenticate(user, password, service=service))

    return authenticate


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _same(given: str, expected: str) -> bool:
    """A constant-time comparison of a client's string, whatever it holds."""
    if not given or len(given) > MAX_CREDENTIAL or not given.isascii():
        return False
    return hmac.compare_digest(given.encode(), expected.encode())


def _shadow_hash(user: str, shadow: Path = SHADOW) -> str | None:
    try:
        with shadow.open() as f:
            for line in f:
                name, _, rest = line.partition(":")
                if name == user:
                    return rest.partition(":")[0]
    except OSError:
        return None
    return None


class Auth:
    def __init__(self, paths: HostPaths, settings: AuthSettings | None = None,
                 authenticate: Authenticator | None = None) -> None:
        """`authenticate(user, password)` checks a password (default: PAM)."""
        self.paths = paths
        self.settings = settings or AuthSettings()
        self.authenticate = authenticate or pam_authenticator(self.settings.pam_service)
        self.limiter = LoginLimiter.from_settings(self.settings)
        paths.priv.mkdir(mode=0o700, parents=True, exist_ok=True)
        self.key = self._key()
        self.tokens_file = paths.priv / "tokens.json"
        self.revoked_file = paths.priv / "revoked.json"
        self.auth_log = paths.logs / "auth.log"
        self._accounts: dict[str, tuple[float, Account]] = {}
        self._revoked: dict[str, float] = self._load_revoked()
        self._tokens_cache: tuple[tuple[int, int, int], dict[str, Any]] | None = None
        self._last_used: dict[str, float] = {}
        self._lock = threading.Lock()

    def _key(self) -> bytes:
        path = self.paths.priv / "ticket.key"
        with locked(self.paths.priv / ".key.lock"):
            if not path.exists():
                atomic_write(path, secrets.token_bytes(32), 0o600)
            return path.read_bytes()

    # -- login -----------------------------------------------------------------

    def _record(self, msg: str) -> None:
        log.warning(msg)
        self.paths.logs.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.auth_log, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC,
                     0o600)
        with os.fdopen(fd, "a") as f:
            if os.fstat(fd).st_mode & 0o077:  # made by an older version
                os.fchmod(fd, 0o600)
            f.write(f"{time.strftime('%Y-%m-%dT%H:%M:%S')} {msg}\n")

    def allowed(self, user: str) -> bool:
        if user == "root":
            return True
        try:
            members = grp.getgrnam(self.settings.admin_group).gr_mem
            primary = pwd.getpwnam(user).pw_gid == grp.getgrnam(self.settings.admin_group).gr_gid
        except KeyError:
            return False
        return user in members or primary

    def account(self, user: str, fresh: bool = False) -> Account:
        """The account's state, re-read at most every `account_cache` seconds."""
        now = time.monotonic()
        with self._lock:
            cached = self._accounts.get(user)
        if cached is not None and not fresh and now - cached[0] < self.settings.account_cache:
            return cached[1]
        if not USER_RE.match(user):
            return Account(False, "-")
        pw = _shadow_hash(user)
        state = Account(self.allowed(user),
                        "-" if pw is None else self._sign(f"account:{user}:{pw}")[:22])
        with self._lock:
            if len(self._accounts) >= 1000:
                self._accounts.clear()
            self._accounts[user] = (now, state)
        return state

    def _password_ok(self, user: str, password: str) -> bool:
        """An admin account and its right password (run in a worker thread)."""
        if not USER_RE.match(user) or len(password) > MAX_PASSWORD or "\0" in password:
            return False
        if not self.account(user, fresh=True).allowed:
            return False
        try:
            password.encode()
        except UnicodeEncodeError:  # a lone surrogate from JSON
            return False
        return self.authenticate(user, password)

    async def login(self, username: str, password: str, client: str) -> str:
        """Check the account through PAM; return a new ticket.

        Raises HostError 429 while the client or the user is rate-limited,
        401 otherwise (after `min_failure_delay`, whatever went wrong)."""
        start = time.monotonic()
        user = username.removesuffix("@pam")
        ckey, ukey = client_key(client), user_key(user)
        wait, stamp = self.limiter.reserve(ckey, ukey)
        if wait > 0:
            self._record(f"login refused (rate limit) for {username[:40]!r} from {client}")
            raise HostError(f"too many failed logins; try again in {wait:.0f} s", 429)
        ok = False
        try:
            ok = await run_in_threadpool(self._password_ok, user, password)
        except Exception:
            log.exception("checking the password of %r", user)
        if ok:
            self.limiter.succeeded(ckey, ukey, stamp)
            self._record(f"login of {user}@pam from {client}")
            return self.make_ticket(f"{user}@pam")
        self._record(f"login failed for {username[:40]!r} from {client}")
        s = self.settings
        until = start + s.min_failure_delay + secrets.randbelow(1000) / 1000 * s.failure_jitter
        await asyncio.sleep(max(until - time.monotonic(), 0))
        raise HostError("login failed: wrong user name or password", 401)

    # -- tickets and CSRF tokens -------------------------------------------------

    def _sign(self, payload: str) -> str:
        return _b64(hmac.new(self.key, payload.encode(), hashlib.sha256).digest())

    def make_ticket(self, user: str, now: float | None = None) -> str:
        """A ticket for "NAME@pam" (only NAME is in it: a cookie value needs no quoting)."""
        name = user.removesuffix("@pam")
        issued = int(time.time() if now is None else now)
        stamp = self.account(name, fresh=True).stamp
        payload = f"APPL:{name}:{issued:X}:{secrets.token_hex(8)}:{stamp}"
        return f"{payload}:{self._sign(payload)}"

    def _ticket_parts(self, ticket: str) -> list[str] | None:
        """[APPL, NAME, ISSUED, NONCE, STAMP] of a well-signed ticket."""
        if not ticket or len(ticket) > MAX_CREDENTIAL or not ticket.isascii():
            return None
        payload, _, sig = ticket.rpartition(":")
        parts = payload.split(":")
        if len(parts) != 5 or parts[0] != "APPL" or not _same(sig, self._sign(payload)):
            return None
        return parts

    def check_ticket(self, ticket: str) -> str | None:
        """The user of a valid, unexpired, unrevoked ticket of an allowed account."""
        parts = self._ticket_parts(ticket)
        if parts is None:
            return None
        _, name, issued_hex, nonce, stamp = parts
        try:
            issued = int(issued_hex, 16)
        except ValueError:
            return None
        now = time.time()
        if not issued - 300 <= now < issued + self.settings.ticket_lifetime:
            return None
        if nonce in self._revoked:
            return None
        account = self.account(name)
        if not account.allowed or not hmac.compare_digest(account.stamp, stamp):
            return None
        return f"{name}@pam"

    def revoke(self, ticket: str) -> None:
        """End a ticket before it expires (logout)."""
        parts = self._ticket_parts(ticket)
        if parts is None:
            return
        try:
            expiry = int(parts[2], 16) + self.settings.ticket_lifetime
        except ValueError:
            return
        now = time.time()
        with locked(self.paths.priv / ".revoked.lock"):
            revoked = {k: v for k, v in {**self._load_revoked(), **self._revoked}.items()
                       if v > now}
            revoked[parts[3]] = expiry
            write_json(self.revoked_file, revoked, 0o600)
            self._revoked = revoked
        self._record(f"logout of {parts[1]}@pam")

    def _load_revoked(self) -> dict[str, float]:
        try:
            data = read_json(self.revoked_file)
        except (OSError, ValueError):
            return {}
        if not isinstance(data, dict):
            return {}
        now = time.time()
        return {str(k): float(v) for k, v in data.items()
                if isinstance(v, int | float) and v > now}

    def csrf_token(self, ticket: str) -> str:
        payload = ticket.rpartition(":")[0]
        return self._sign("csrf:" + payload)

    def check_csrf(self, ticket: str, token: str | None) -> bool:
        return isinstance(token, str) and _same(token, self.csrf_token(ticket))

    # -- API tokens ----------------------------------------------------------------

    def _tokens(self) -> dict[str, Any]:
        """tokens.json, re-read only when the file changed."""
        try:
            st = os.stat(self.tokens_file)
        except FileNotFoundError:
            return {}
        sig = (st.st_ino, st.st_mtime_ns, st.st_size)
        cached = self._tokens_cache
        if cached is not None and cached[0] == sig:
            return cached[1]
        try:
            data = read_json(self.tokens_file)
        except FileNotFoundError:
            return {}
        tokens = data if isinstance(data, dict) else {}
        self._tokens_cache = (sig, tokens)
        return tokens

    def _save_tokens(self, tokens: dict[str, Any]) -> None:
        write_json(self.tokens_file, tokens, 0o600)
        self._tokens_cache = None

    def create_token(self, user: str, name: str, comment: str = "",
                     expire: int = 0) -> tuple[str, str]:
        """(token id, secret): the secret is not stored, only its hash.
        `expire`: seconds since the epoch when it stops working; 0: never."""
        if not isinstance(name, str) or not TOKEN_NAME_RE.match(name):
            raise HostError("name: letters, digits, '-' and '_', starting with a letter", 400)
        if not isinstance(comment, str) or len(comment) > 200:
            raise HostError("comment: at most 200 characters", 400)
        if not isinstance(expire, int) or isinstance(expire, bool) or not (
                expire == 0 or time.time() < expire < 2**40):
            raise HostError("expire: seconds since the epoch, in the future (0: never)", 400)
        tokenid = f"{user}!{name}"
        secret = secrets.token_urlsafe(32)
        with locked(self.paths.priv / ".tokens.lock"):
            tokens = dict(self._tokens())
            if tokenid in tokens:
                raise HostError(f"token {tokenid} exists already", 409)
            tokens[tokenid] = {"sha256": hashlib.sha256(secret.encode()).hexdigest(),
                               "created": time.time(), "comment": comment, "expire": expire}
            self._save_tokens(tokens)
        self._record(f"API token {tokenid} created")
        return tokenid, secret

    def list_tokens(self, user: str) -> list[dict[str, Any]]:
        return [{"tokenid": k, "created": v.get("created"), "comment": v.get("comment", ""),
                 "expire": v.get("expire", 0),
                 "last_used": max(v.get("last_used") or 0, self._last_used.get(k, 0)) or None}
                for k, v in sorted(self._tokens().items()) if k.startswith(f"{user}!")]

    def delete_token(self, user: str, name: str) -> None:
        tokenid = f"{user}!{name}"
        with locked(self.paths.priv / ".tokens.lock"):
            tokens = dict(self._tokens())
            if tokenid not in tokens:
                raise HostError(f"no token {tokenid}", 404)
            del tokens[tokenid]
            self._save_tokens(tokens)
        self._last_used.pop(tokenid, None)
        self._record(f"API token {tokenid} deleted")

    def check_token(self, header: str) -> str | None:
        """The user of a valid, unexpired `ApplianceToken USER!NAME=SECRET` header
        whose account is still allowed."""
        if len(header) > MAX_CREDENTIAL or not header.isascii():
            return None
        scheme, _, value = header.partition(" ")
        if scheme != TOKEN_SCHEME:
            return None
        tokenid, _, secret = value.strip().partition("=")
        entry = self._tokens().get(tokenid)
        if not isinstance(entry, dict) or not secret:
            return None
        digest = hashlib.sha256(secret.encode()).hexdigest()
        if not _same(digest, str(entry.get("sha256", ""))):
            return None
        now = time.time()
        expire = entry.get("expire") or 0
        if not isinstance(expire, int | float) or (expire and now >= expire):
            return None
        user = tokenid.partition("!")[0]
        if not self.account(user.removesuffix("@pam")).allowed:
            return None
        self._used(tokenid, entry, now)
        return user

    def _used(self, tokenid: str, entry: dict[str, Any], now: float) -> None:
        """Note a token's use; write it to tokens.json at most every LAST_USE_SAVE s."""
        self._last_used[tokenid] = now
        saved = entry.get("last_used")
        if isinstance(saved, int | float) and now - saved < LAST_USE_SAVE:
            return
        with locked(self.paths.priv / ".tokens.lock"):
            tokens = dict(self._tokens())
            if tokenid in tokens:
                tokens[tokenid] = {**tokens[tokenid], "last_used": now}
                self._save_tokens(tokens)
