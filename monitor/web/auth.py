"""Users, password hashing, sessions, CSRF tokens and login rate limiting, all kept in Redis.

Everything lives in Redis (not in process memory) so ``monitor run`` and ``monitor serve`` on the same
Redis share users and sessions, and restarting the web server does not log the control room out.
Session tokens are stored only as an HMAC, so a Redis dump does not hand out live sessions.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import redis
from fastapi import HTTPException, Request, status

from monitor.store.incidents import PREFIX

ROLES = ("viewer", "operator", "admin")
USERS = f"{PREFIX}:users"
SECRET = f"{PREFIX}:web:secret"
COOKIE = "vm_session"
CSRF_HEADER = "X-CSRF-Token"
SESSION_TTL_S = 12 * 3600  # one long shift; refreshed on every request
MIN_PASSWORD = 8
USER_NAME = re.compile(r"^[\w.@-]{1,64}$")  # \w is Unicode: Chinese names are fine
FAILURES_PER_USER_IP = 5
FAILURES_PER_IP = 30
FAILURE_WINDOW_S = 15 * 60
# scrypt cost: ~50 ms and 16 MiB per check on a small box; stored with the hash so it can be raised later.
SCRYPT_N, SCRYPT_R, SCRYPT_P = 2**14, 8, 1


def user_key(name: str) -> str:
    """Redis key of one user."""
    return f"{PREFIX}:user:{name}"


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def hash_password(password: str) -> str:
    """A self-describing scrypt hash with a fresh random salt."""
    salt = secrets.token_bytes(16)
    digest = hashlib.scrypt(password.encode(), salt=salt, n=SCRYPT_N, r=SCRYPT_R, p=SCRYPT_P, dklen=32)
    return f"scrypt${SCRYPT_N}${SCRYPT_R}${SCRYPT_P}${salt.hex()}${digest.hex()}"


def verify_password(password: str, stored: str) -> bool:
    """Constant-time check of a password against a hash from ``hash_password``."""
    try:
        algo, n, r, p, salt, digest = stored.split("$")
        if algo != "scrypt":
            return False
        got = hashlib.scrypt(
            password.encode(), salt=bytes.fromhex(salt), n=int(n), r=int(r), p=int(p), dklen=len(digest) // 2
        )
    except ValueError:
        return False
    return hmac.compare_digest(got.hex(), digest)


_DUMMY_HASH = hash_password(secrets.token_hex(8))  # unknown users cost the same time as known ones


@dataclass(frozen=True, slots=True)
class User:
    """A logged-in person and what they may do."""

    name: str
    role: str

    def can(self, role: str) -> bool:
        """True when this user's role is ``role`` or above."""
        return ROLES.index(self.role) >= ROLES.index(role)


@dataclass(frozen=True, slots=True)
class Session:
    """What a browser holds after logging in: the cookie token and the CSRF token for its writes."""

    token: str
    csrf: str
    user: User


class LoginRefused(Exception):
    """Wrong credentials (401) or too many attempts (429, with seconds to wait)."""

    def __init__(self, status_code: int, retry_after: int | None = None) -> None:
        super().__init__("too many login attempts" if status_code == 429 else "wrong user name or password")
        self.status_code = status_code
        self.retry_after = retry_after


class Auth:
    """Users and sessions on one Redis."""

    def __init__(self, client: redis.Redis, secret_key: str | None = None) -> None:
        self.r = client
        self._key = secret_key.encode() if secret_key is not None else None

    def _secret(self) -> bytes:
        """The HMAC key; by default one stored in Redis, shared by every web instance, created on first use."""
        if self._key is None:
            self.r.set(SECRET, secrets.token_hex(32), nx=True)
            self._key = _text(self.r.get(SECRET)).encode()
        return self._key

    # --- users
    def add_user(self, name: str, role: str, password: str) -> User:
        """Create a user or replace an existing one's role and password."""
        if not USER_NAME.match(name):
            raise ValueError("user name: 1-64 letters, digits, '_', '.', '@' or '-'")
        if role not in ROLES:
            raise ValueError(f"role must be one of {', '.join(ROLES)}")
        if len(password) < MIN_PASSWORD:
            raise ValueError(f"password must have at least {MIN_PASSWORD} characters")
        pipe = self.r.pipeline()
        pipe.hset(user_key(name), mapping={"role": role, "password": hash_password(password), "created": time.time()})
        pipe.sadd(USERS, name)
        pipe.execute()
        return User(name, role)

    def delete_user(self, name: str) -> bool:
        """Remove a user; their sessions die on their next request."""
        pipe = self.r.pipeline()
        pipe.delete(user_key(name))
        pipe.srem(USERS, name)
        deleted, _ = pipe.execute()
        return bool(deleted)

    def get_user(self, name: str) -> User | None:
        """The user's current role (read on every request, so a demotion applies at once)."""
        role = self.r.hget(user_key(name), "role")
        return None if role is None else User(name, _text(role))

    def list_users(self) -> list[User]:
        """Every user, sorted by name."""
        names = sorted(_text(n) for n in self.r.smembers(USERS))
        return [u for u in (self.get_user(n) for n in names) if u is not None]

    # --- sessions
    def _session_key(self, token: str) -> str:
        return f"{PREFIX}:session:{hmac.new(self._secret(), token.encode(), hashlib.sha256).hexdigest()}"

    def login(self, name: str, password: str, ip: str) -> Session:
        """Check the password (rate limited per user and address) and open a session."""
        per_user = f"{PREFIX}:login_fail:{ip}:{name}"
        per_ip = f"{PREFIX}:login_fail:{ip}"
        pipe = self.r.pipeline()
        for key in (per_user, per_ip):
            pipe.get(key)
            pipe.ttl(key)
        user_fails, user_ttl, ip_fails, ip_ttl = pipe.execute()
        if int(user_fails or 0) >= FAILURES_PER_USER_IP or int(ip_fails or 0) >= FAILURES_PER_IP:
            raise LoginRefused(429, max(int(user_ttl), int(ip_ttl), 1))
        stored = self.r.hget(user_key(name), "password")
        ok = verify_password(password, _text(stored) if stored is not None else _DUMMY_HASH) and stored is not None
        user = self.get_user(name) if ok else None
        if user is None:
            pipe = self.r.pipeline()
            for key in (per_user, per_ip):
                pipe.incr(key)
                pipe.expire(key, FAILURE_WINDOW_S, nx=True)
            pipe.execute()
            raise LoginRefused(401)
        self.r.delete(per_user)
        session = Session(secrets.token_urlsafe(32), secrets.token_urlsafe(32), user)
        key = self._session_key(session.token)
        self.r.hset(key, mapping={"user": user.name, "csrf": session.csrf, "created": time.time(), "ip": ip})
        self.r.expire(key, SESSION_TTL_S)
        return session

    def session(self, token: str) -> Session | None:
        """The live session for a cookie token (and extend it), or None."""
        key = self._session_key(token)
        data = {_text(k): _text(v) for k, v in self.r.hgetall(key).items()}
        if "user" not in data:
            return None
        user = self.get_user(data["user"])
        if user is None:
            self.r.delete(key)
            return None
        self.r.expire(key, SESSION_TTL_S)
        return Session(token, data["csrf"], user)

    def logout(self, token: str) -> None:
        """End a session."""
        self.r.delete(self._session_key(token))


# --- FastAPI dependencies


def auth_of(request: Request) -> Auth:
    """The app's Auth (set by create_app)."""
    auth: Auth = request.app.state.auth
    return auth


def optional_session(request: Request) -> Session | None:
    """The request's session, if its cookie names a live one."""
    token = request.cookies.get(COOKIE)
    return auth_of(request).session(token) if token else None


def requires(role: str, *, write: bool = False) -> Callable[[Request], User]:
    """Dependency: a logged-in user of at least ``role``; ``write`` also demands the CSRF header."""

    def dependency(request: Request) -> User:
        session = optional_session(request)
        if session is None:
            raise HTTPException(status.HTTP_401_UNAUTHORIZED, "login required")
        sent = request.headers.get(CSRF_HEADER, "").encode()  # bytes: compare_digest rejects non-ASCII str
        if write and not hmac.compare_digest(sent, session.csrf.encode()):
            raise HTTPException(status.HTTP_403_FORBIDDEN, "missing or wrong CSRF token")
        if not session.user.can(role):
            raise HTTPException(status.HTTP_403_FORBIDDEN, f"needs the {role} role")
        return session.user

    return dependency


viewer = requires("viewer")
operator_write = requires("operator", write=True)
admin = requires("admin")
admin_write = requires("admin", write=True)
