"""Users, password hashing, sessions, CSRF tokens and login rate limiting, all kept in Redis.

Everything lives in Redis (not in process memory) so ``monitor run`` and ``monitor serve`` on the same
Redis share users and sessions, and restarting the web server does not log the control room out.
Session tokens are stored only as an HMAC, so a Redis dump does not hand out live sessions. A session ends
after ``SESSION_TTL_S`` without use, ``session_max_s`` after login whatever happens, and at once when its user's
password or role is changed or the user is deleted (every user carries a random ``epoch`` that each reset renews).
Each account change is written, in the same transaction, to the account audit trail (``user_audit``) with who made
it: the web API and ``monitor user add`` both go through ``Auth.save_user`` / ``Auth.delete_user``.

Login limits (all in Redis, so every web instance shares them): ``FAILURES_PER_USER_IP`` wrong passwords for one
account from one address block that pair, ``FAILURES_PER_IP`` block that address; neither touches other addresses.
Across all addresses an account slows down (exponential wait between tries, at most ``ACCOUNT_MAX_DELAY_S``) after
``ACCOUNT_FREE_FAILURES``, except from an address the user has logged in from before: an attacker elsewhere can
slow a user's login down but never lock them out.

The common-password list (``common-passwords.txt.gz``, about 20,000 entries) is the one Django ships
(django/contrib/auth, BSD licence), compiled by Royce Williams from leaked-password corpora.
"""

from __future__ import annotations

import functools
import gzip
import hashlib
import hmac
import math
import re
import secrets
import time
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar, cast
from urllib.parse import unquote

import redis
from fastapi import HTTPException, Request, status

from monitor.store.incidents import PREFIX
from monitor.web import user_audit

T = TypeVar("T")
ROLES = ("viewer", "operator", "admin")
USERS = f"{PREFIX}:users"
SECRET = f"{PREFIX}:web:secret"
COOKIE = "vm_session"
CSRF_HEADER = "X-CSRF-Token"
UNAVAILABLE = "service unavailable: the store (Redis) cannot be reached, try again shortly"
SESSION_TTL_S = 12 * 3600  # one long shift without use; refreshed on every request
SESSION_MAX_S = 12 * 3600  # absolute lifetime from login (web.session_max_hours)
MIN_PASSWORD = 12
COMMON_PASSWORDS = Path(__file__).parent / "common-passwords.txt.gz"
USER_NAME = re.compile(r"^[\w.@-]{1,64}$")  # \w is Unicode: Chinese names are fine
FAILURES_PER_USER_IP = 5
FAILURES_PER_IP = 30
FAILURE_WINDOW_S = 15 * 60
ACCOUNT_FREE_FAILURES = 5  # failures of one account, from anywhere, before it slows down
ACCOUNT_MAX_DELAY_S = 60  # longest wait between tries of a slowed-down account (1, 2, 4 ... s)
KNOWN_ADDRESS_S = 90 * 24 * 3600  # an address a user logged in from is "known" this long
# scrypt cost: ~50 ms and 16 MiB per check on a small box; stored with the hash so it can be raised later.
SCRYPT_N, SCRYPT_R, SCRYPT_P = 2**14, 8, 1


def user_key(name: str) -> str:
    """Redis key of one user."""
    return f"{PREFIX}:user:{name}"


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


_RUNS = ("01234567890123456789", "abcdefghijklmnopqrstuvwxyzabc", "qwertyuiopasdfghjklzxcvbnm", "1qaz2wsx3edc4rfv5tgb")


@functools.cache
def _common_passwords() -> frozenset[str]:
    with gzip.open(COMMON_PASSWORDS, "rt", encoding="utf-8") as lines:
        return frozenset(line.strip().lower() for line in lines if line.strip())


def password_problem(password: str, name: str = "") -> str | None:
    """Why ``password`` may not be used (too short, common, a repeated pattern, the user name), or None."""
    if len(password) < MIN_PASSWORD:
        return f"password must have at least {MIN_PASSWORD} characters (a few unrelated words are easy to remember)"
    lower = password.lower()
    core = lower.strip("0123456789!@#$%^&*()-_=+.,;:?~ ")  # "password1234", "!!qwerty!!" are no better
    forms = {lower, core, lower.rstrip("0123456789!@#$%^&*()-_=+.,;:?~ ")}
    common = _common_passwords()
    runs = any(form in run or form in run[::-1] for form in forms if len(form) >= 6 for run in _RUNS)
    if runs or any(form in common for form in forms if form) or re.fullmatch(r"(.{1,4})\1+", lower):
        return "password is too common or too easy to guess: choose a longer, unusual one (e.g. a few unrelated words)"
    if name and name.lower() in forms:
        return "password must not be the user name"
    return None


def safe_next(target: str | None) -> str:
    """``target`` when it is a path on this site (one leading '/', no backslash, whitespace or control
    characters, also after percent-decoding), else "/": the page to go to after logging in."""
    if not target:
        return "/"
    for value in (target, unquote(target)):
        if not value.startswith("/") or value.startswith("//") or "\\" in value:
            return "/"
        if any(c.isspace() or unicodedata.category(c) in ("Cc", "Cf", "Zl", "Zp", "Zs") for c in value):
            return "/"
    return target


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
class Account:
    """A user account as admins see it (never the password hash): seconds since the epoch it was created and
    last changed (None for accounts made before these were kept)."""

    name: str
    role: str
    created: float | None
    changed: float | None


@dataclass(frozen=True, slots=True)
class Session:
    """What a browser holds after logging in: the cookie token and the CSRF token for its writes."""

    token: str
    csrf: str
    user: User


class AccountExists(ValueError):
    """Creating an account whose name is taken (``save_user(..., create_only=True)``)."""


class LoginRefused(Exception):
    """Wrong credentials (401) or too many attempts (429, with seconds to wait)."""

    def __init__(self, status_code: int, retry_after: int | None = None) -> None:
        super().__init__("too many login attempts" if status_code == 429 else "wrong user name or password")
        self.status_code = status_code
        self.retry_after = retry_after


class Auth:
    """Users and sessions on one Redis."""

    def __init__(
        self, client: redis.Redis, secret_key: str | None = None, *, session_max_s: float = SESSION_MAX_S
    ) -> None:
        self.r = client
        self._key = secret_key.encode() if secret_key is not None else None
        self.session_max_s = session_max_s

    def _secret(self) -> bytes:
        """The HMAC key; by default one stored in Redis, shared by every web instance, created on first use."""
        if self._key is None:
            self.r.set(SECRET, secrets.token_hex(32), nx=True)
            self._key = _text(self.r.get(SECRET)).encode()
        return self._key

    # --- users
    def add_user(
        self, name: str, role: str, password: str, *, check_password: bool = False, by: str | None = None
    ) -> User:
        """Create a user or replace an existing one's role and password (``save_user`` with both given).

        ``check_password``: also apply the password policy (``password_problem``); the web API and
        ``monitor user add`` do. ValueError says what is wrong."""
        return self.save_user(name, role=role, password=password, check_password=check_password, by=by)

    def save_user(
        self,
        name: str,
        *,
        role: str | None = None,
        password: str | None = None,
        check_password: bool = True,
        by: str | None = None,
        create_only: bool = False,
    ) -> User:
        """Create an account (needs a role and a password) or change an existing one's role, password or both
        (``create_only``: AccountExists instead).

        A change ends every session of the user and goes into the account audit trail (``by``: the admin making
        it, None for the command line) in the same transaction. ValueError says what is wrong."""
        if not USER_NAME.match(name):
            raise ValueError("user name: 1-64 letters, digits, '_', '.', '@' or '-'")
        if role is not None and role not in ROLES:
            raise ValueError(f"role must be one of {', '.join(ROLES)}")
        if password is not None:
            problem = password_problem(password, name) if check_password else None
            if problem is None and len(password) < 8:
                problem = "password must have at least 8 characters"
            if problem is not None:
                raise ValueError(problem)
        hashed = hash_password(password) if password is not None else None  # outside the transaction: slow
        key = user_key(name)

        def apply(pipe: redis.client.Pipeline) -> tuple[User, bool]:
            stored = pipe.hget(key, "role")  # watched: a concurrent change makes redis-py run this again
            old_role = None if stored is None else _text(stored)
            if create_only and old_role is not None:
                raise AccountExists(f"a user named {name} already exists")
            new_role = role or old_role
            if new_role is None or (old_role is None and hashed is None):
                raise ValueError("a new user needs a role and a password")
            changes = _account_changes(name, old_role, new_role, hashed is not None, time.time(), by)
            pipe.multi()
            if changes:
                now = changes[0].at
                pipe.hset(key, mapping={"role": new_role, "changed": now, "epoch": _epoch()})
                if hashed is not None:
                    pipe.hset(key, "password", hashed)
                if old_role is None:
                    pipe.hset(key, "created", now)
                pipe.sadd(USERS, name)
                for change in changes:
                    user_audit.record(pipe, change)
            return User(name, new_role), bool(changes)

        user, changed = _transaction(self.r, key, apply)
        if changed:
            self.end_sessions(name)
        return user

    def delete_user(self, name: str, *, by: str | None = None) -> bool:
        """Remove a user (recorded in the account audit trail) and end every session of theirs."""
        key = user_key(name)

        def apply(pipe: redis.client.Pipeline) -> bool:
            stored = pipe.hget(key, "role")
            pipe.multi()
            pipe.delete(key)
            pipe.srem(USERS, name)
            if stored is not None:
                user_audit.record(pipe, user_audit.AccountChange(time.time(), by, "deleted", name, _text(stored)))
            return stored is not None

        deleted = _transaction(self.r, key, apply)
        self.end_sessions(name)
        return deleted

    def _user_record(self, name: str) -> tuple[User, str] | None:
        role, epoch = self.r.hmget(user_key(name), ["role", "epoch"])
        return None if role is None else (User(name, _text(role)), "" if epoch is None else _text(epoch))

    def get_user(self, name: str) -> User | None:
        """The user's current role (read on every request, so a demotion applies at once)."""
        record = self._user_record(name)
        return None if record is None else record[0]

    def accounts(self, names: list[str] | None = None) -> list[Account]:
        """The accounts named (default: every one, sorted by name) that exist."""
        names = sorted(_text(n) for n in self.r.smembers(USERS)) if names is None else names
        pipe = self.r.pipeline(transaction=False)
        for name in names:
            pipe.hmget(user_key(name), ["role", "created", "changed"])
        return [
            Account(name, _text(role), _seconds(created), _seconds(changed))
            for name, (role, created, changed) in zip(names, pipe.execute(), strict=True)
            if role is not None
        ]

    def account_changes(self, limit: int = user_audit.KEEP) -> list[user_audit.AccountChange]:
        """The newest account changes, newest first."""
        return user_audit.recent(self.r, limit)

    # --- sessions
    def _session_key(self, token: str) -> str:
        return f"{PREFIX}:session:{hmac.new(self._secret(), token.encode(), hashlib.sha256).hexdigest()}"

    def end_sessions(self, name: str) -> None:
        """End every session of user ``name`` (they also fail the epoch check, should one escape the index)."""
        index = _sessions_key(name)
        keys = [_text(k) for k in self.r.smembers(index)]
        self.r.delete(index, *keys)

    def _throttled(self, name: str, ip: str) -> int | None:
        """Seconds to wait before ``ip`` may try ``name``'s password again, or None."""
        per_user, per_ip, account, known = _limit_keys(name, ip)
        pipe = self.r.pipeline()
        for key in (per_user, per_ip):
            pipe.get(key)
            pipe.ttl(key)
        pipe.hmget(account, ["count", "last"])
        pipe.hexists(known, ip)
        user_fails, user_ttl, ip_fails, ip_ttl, (count, last), is_known = pipe.execute()
        if int(user_fails or 0) >= FAILURES_PER_USER_IP or int(ip_fails or 0) >= FAILURES_PER_IP:
            return max(int(user_ttl), int(ip_ttl), 1)
        excess = int(count or 0) - ACCOUNT_FREE_FAILURES
        if excess >= 0 and not is_known:
            wait = float(last or 0) + min(2.0**excess, ACCOUNT_MAX_DELAY_S) - time.time()
            if wait > 0:
                return max(math.ceil(wait), 1)
        return None

    def _failed(self, name: str, ip: str) -> None:
        per_user, per_ip, account, _ = _limit_keys(name, ip)
        pipe = self.r.pipeline()
        for key in (per_user, per_ip):
            pipe.incr(key)
            pipe.expire(key, FAILURE_WINDOW_S, nx=True)
        pipe.hincrby(account, "count", 1)
        pipe.hset(account, "last", time.time())
        pipe.expire(account, FAILURE_WINDOW_S)
        pipe.execute()

    def login(self, name: str, password: str, ip: str) -> Session:
        """Check the password (rate limited per user and address, per address, and per account) and open a session."""
        wait = self._throttled(name, ip)
        if wait is not None:
            raise LoginRefused(429, wait)
        stored = self.r.hget(user_key(name), "password")
        ok = verify_password(password, _text(stored) if stored is not None else _DUMMY_HASH) and stored is not None
        record = self._user_record(name) if ok else None
        if record is None:
            self._failed(name, ip)
            raise LoginRefused(401)
        user, epoch = record
        per_user, _, _, known = _limit_keys(name, ip)
        now = time.time()
        session = Session(secrets.token_urlsafe(32), secrets.token_urlsafe(32), user)
        key = self._session_key(session.token)
        pipe = self.r.pipeline()
        pipe.delete(per_user)
        pipe.hset(known, ip, now)
        pipe.expire(known, KNOWN_ADDRESS_S)
        expires = now + self.session_max_s
        pipe.hset(
            key,
            mapping={"user": name, "csrf": session.csrf, "created": now, "expires": expires, "ip": ip, "epoch": epoch},
        )
        pipe.expire(key, min(SESSION_TTL_S, math.ceil(self.session_max_s)))
        pipe.sadd(_sessions_key(name), key)
        pipe.expire(_sessions_key(name), max(SESSION_TTL_S, math.ceil(self.session_max_s)))
        pipe.execute()
        return session

    def session(self, token: str) -> Session | None:
        """The live session for a cookie token (and extend it, within its absolute lifetime), or None."""
        key = self._session_key(token)
        data = {_text(k): _text(v) for k, v in self.r.hgetall(key).items()}
        if "user" not in data:
            return None
        record = self._user_record(data["user"])
        expires = float(data.get("expires") or float(data.get("created", 0)) + self.session_max_s)
        left = expires - time.time()
        if record is None or data.get("epoch", "") != record[1] or left <= 0:
            self.r.delete(key)
            self.r.srem(_sessions_key(data["user"]), key)
            return None
        self.r.expire(key, min(SESSION_TTL_S, math.ceil(left)))
        return Session(token, data["csrf"], record[0])

    def logout(self, token: str) -> None:
        """End a session."""
        self.r.delete(self._session_key(token))


def _transaction(client: redis.Redis, key: str, apply: Callable[[redis.client.Pipeline], T]) -> T:
    """``apply`` in a WATCH/MULTI transaction on ``key`` (run again if the key changed meanwhile), and its value."""
    typed = cast("Callable[[redis.client.Pipeline], None]", apply)  # redis' stubs type the callable as None
    return cast(T, client.transaction(typed, key, value_from_callable=True))


def _seconds(value: Any) -> float | None:
    return None if value is None else float(_text(value))


def _account_changes(
    name: str, old_role: str | None, role: str, new_password: bool, now: float, by: str | None
) -> list[user_audit.AccountChange]:
    """What saving ``name`` with ``role`` (and a new password or not) changes, for the audit trail."""
    if old_role is None:
        return [user_audit.AccountChange(now, by, "created", name, role)]
    changes = []
    if role != old_role:
        changes.append(user_audit.AccountChange(now, by, "role_changed", name, role, old_role))
    if new_password:
        changes.append(user_audit.AccountChange(now, by, "password_reset", name, role))
    return changes


def _epoch() -> str:
    return secrets.token_hex(8)


def _sessions_key(name: str) -> str:
    return f"{PREFIX}:user_sessions:{name}"


def _limit_keys(name: str, ip: str) -> tuple[str, str, str, str]:
    """Failures of (address, account), of the address, of the account anywhere; the account's known addresses."""
    return (
        f"{PREFIX}:login_fail:{ip}:{name}",
        f"{PREFIX}:login_fail:{ip}",
        f"{PREFIX}:login_slow:{name}",
        f"{PREFIX}:login_known:{name}",
    )


# --- FastAPI dependencies


def auth_of(request: Request) -> Auth:
    """The app's Auth (set by create_app)."""
    auth: Auth = request.app.state.auth
    return auth


def optional_session(request: Request) -> Session | None:
    """The request's session, if its cookie names a live one (Redis unreachable: the app's 503 handler answers)."""
    token = request.cookies.get(COOKIE)
    if not token:
        return None
    return auth_of(request).session(token)


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
