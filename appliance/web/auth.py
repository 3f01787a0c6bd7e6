"""Authentication like Proxmox VE's: PAM login, a signed ticket cookie, a
CSRF token for every write made with that cookie, and API tokens.

- Login: a system account checked through PAM (python-pam). Allowed are root
  and the members of one group (`admin_group`, default appliance-admin).
- Ticket: "APPL:NAME:EXPIRY:NONCE:SIGNATURE", HMAC-SHA256 with a key made on
  first start (ETC/priv/ticket.key, mode 0600). Sent as an HttpOnly, Secure,
  SameSite=Strict cookie; it expires after `ticket_lifetime` seconds.
- CSRF token: HMAC of the ticket; a write with the cookie must send it in the
  CSRFPreventionToken header (the API) or a csrf_token form field (pages).
- API token: "Authorization: ApplianceToken USER!NAME=SECRET". The secret is
  shown once when made; only its SHA-256 is stored (ETC/priv/tokens.json).
  A request with a token needs no CSRF token (no cookie is involved).
- Failed logins are logged and limited per client address.
"""

from __future__ import annotations

import base64
import grp
import hashlib
import hmac
import logging
import os
import pwd
import re
import secrets
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from appliance.errors import HostError
from appliance.host.store import HostPaths, atomic_write, locked, read_json, write_json

log = logging.getLogger("appliance.web.auth")

COOKIE = "ApplianceAuthCookie"
CSRF_HEADER = "CSRFPreventionToken"
TOKEN_SCHEME = "ApplianceToken"
USER_RE = re.compile(r"^[a-z_][a-z0-9_-]{0,31}$")
TOKEN_NAME_RE = re.compile(r"^[A-Za-z][A-Za-z0-9_-]{0,63}$")


@dataclass
class AuthSettings:
    ticket_lifetime: int = 2 * 3600
    admin_group: str = "appliance-admin"
    pam_service: str = "appliance"  # no /etc/pam.d/appliance: PAM uses "other"
    max_failures: int = 5  # failed logins per client address ...
    failure_window: float = 300.0  # ... within this many seconds

    @classmethod
    def from_env(cls) -> AuthSettings:
        """APPLIANCE_ADMIN_GROUP names the group whose members may log in."""
        return cls(admin_group=os.environ.get("APPLIANCE_ADMIN_GROUP", cls.admin_group))


@dataclass(frozen=True)
class Identity:
    user: str  # "root@pam"
    via: str  # "ticket" or "token"
    ticket: str = ""


@dataclass
class RateLimiter:
    max_failures: int
    window: float
    _failures: dict[str, deque[float]] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def blocked(self, key: str) -> float:
        """Seconds until `key` may try again (0: now)."""
        now = time.monotonic()
        with self._lock:
            q = self._failures.get(key)
            if not q:
                return 0.0
            while q and now - q[0] > self.window:
                q.popleft()
            if len(q) < self.max_failures:
                return 0.0
            return self.window - (now - q[0])

    def failed(self, key: str) -> None:
        with self._lock:
            self._failures.setdefault(key, deque()).append(time.monotonic())

    def succeeded(self, key: str) -> None:
        with self._lock:
            self._failures.pop(key, None)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


class Auth:
    def __init__(self, paths: HostPaths, settings: AuthSettings | None = None) -> None:
        self.paths = paths
        self.settings = settings or AuthSettings()
        self.limiter = RateLimiter(self.settings.max_failures, self.settings.failure_window)
        self.key = self._key()
        self.tokens_file = paths.priv / "tokens.json"
        self.auth_log = paths.logs / "auth.log"

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
        with self.auth_log.open("a") as f:
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

    def login(self, username: str, password: str, client: str) -> str:
        """Check the account through PAM; return a new ticket.

        Raises HostError 429 while the client is rate-limited, 401 otherwise."""
        user = username.removesuffix("@pam")
        wait = self.limiter.blocked(client)
        if wait > 0:
            self._record(f"login refused (rate limit) for {user[:40]!r} from {client}")
            raise HostError(f"too many failed logins; try again in {wait:.0f} s", 429)
        ok = bool(USER_RE.match(user)) and len(password) <= 4096 and self.allowed(user)
        if ok:
            import pam  # type: ignore[import-untyped]  # python-pam: ctypes over libpam

            ok = bool(pam.pam().authenticate(user, password, service=self.settings.pam_service))
        if not ok:
            self.limiter.failed(client)
            self._record(f"login failed for {username[:40]!r} from {client}")
            raise HostError("login failed: wrong user name or password", 401)
        self.limiter.succeeded(client)
        self._record(f"login of {user}@pam from {client}")
        return self.make_ticket(f"{user}@pam")

    # -- tickets and CSRF tokens -------------------------------------------------

    def _sign(self, payload: str) -> str:
        return _b64(hmac.new(self.key, payload.encode(), hashlib.sha256).digest())

    def make_ticket(self, user: str, now: float | None = None) -> str:
        """A ticket for "NAME@pam" (only NAME is in it: a cookie value needs no quoting)."""
        expiry = int((now or time.time()) + self.settings.ticket_lifetime)
        payload = f"APPL:{user.removesuffix('@pam')}:{expiry:X}:{secrets.token_hex(8)}"
        return f"{payload}:{self._sign(payload)}"

    def check_ticket(self, ticket: str) -> str | None:
        """The user of a valid, unexpired ticket, else None."""
        payload, _, sig = ticket.rpartition(":")
        parts = payload.split(":")
        if len(parts) != 4 or parts[0] != "APPL":
            return None
        if not hmac.compare_digest(sig, self._sign(payload)):
            return None
        try:
            expiry = int(parts[2], 16)
        except ValueError:
            return None
        if time.time() > expiry:
            return None
        return f"{parts[1]}@pam"

    def csrf_token(self, ticket: str) -> str:
        payload = ticket.rpartition(":")[0]
        return self._sign("csrf:" + payload)

    def check_csrf(self, ticket: str, token: str | None) -> bool:
        return bool(token) and hmac.compare_digest(str(token), self.csrf_token(ticket))

    # -- API tokens ----------------------------------------------------------------

    def _tokens(self) -> dict[str, Any]:
        try:
            data = read_json(self.tokens_file)
        except FileNotFoundError:
            return {}
        return data if isinstance(data, dict) else {}

    def create_token(self, user: str, name: str, comment: str = "") -> tuple[str, str]:
        """(token id, secret): the secret is not stored, only its hash."""
        if not isinstance(name, str) or not TOKEN_NAME_RE.match(name):
            raise HostError("name: letters, digits, '-' and '_', starting with a letter", 400)
        if not isinstance(comment, str) or len(comment) > 200:
            raise HostError("comment: at most 200 characters", 400)
        tokenid = f"{user}!{name}"
        secret = secrets.token_urlsafe(32)
        with locked(self.paths.priv / ".tokens.lock"):
            tokens = self._tokens()
            if tokenid in tokens:
                raise HostError(f"token {tokenid} exists already", 409)
            tokens[tokenid] = {"sha256": hashlib.sha256(secret.encode()).hexdigest(),
                               "created": time.time(), "comment": comment}
            write_json(self.tokens_file, tokens, 0o600)
        self._record(f"API token {tokenid} created")
        return tokenid, secret

    def list_tokens(self, user: str) -> list[dict[str, Any]]:
        return [{"tokenid": k, "created": v.get("created"), "comment": v.get("comment", "")}
                for k, v in sorted(self._tokens().items()) if k.startswith(f"{user}!")]

    def delete_token(self, user: str, name: str) -> None:
        tokenid = f"{user}!{name}"
        with locked(self.paths.priv / ".tokens.lock"):
            tokens = self._tokens()
            if tokenid not in tokens:
                raise HostError(f"no token {tokenid}", 404)
            del tokens[tokenid]
            write_json(self.tokens_file, tokens, 0o600)

    def check_token(self, header: str) -> str | None:
        """The user of a valid `ApplianceToken USER!NAME=SECRET` header."""
        scheme, _, value = header.partition(" ")
        if scheme != TOKEN_SCHEME:
            return None
        tokenid, _, secret = value.strip().partition("=")
        entry = self._tokens().get(tokenid)
        if not entry or not secret:
            return None
        digest = hashlib.sha256(secret.encode()).hexdigest()
        if not hmac.compare_digest(digest, str(entry.get("sha256", ""))):
            return None
        return tokenid.partition("!")[0]

