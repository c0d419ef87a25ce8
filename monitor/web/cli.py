"""``monitor user add`` and ``monitor serve``; ``register`` hooks them into the main ``monitor`` parser."""

from __future__ import annotations

import argparse
import getpass
import logging
import signal
import sys
from types import FrameType
from typing import Any

import redis

from monitor.config import load_or_report
from monitor.web.auth import ROLES, Auth, User

log = logging.getLogger("monitor.web")
DEFAULT_CONFIG = "streams.yaml"


def add_user(client: redis.Redis, name: str, role: str, password: str) -> User:
    """Create a user or reset an existing one's role and password, ending their sessions (ValueError on bad input,
    a password under 12 characters or a common one included)."""
    return Auth(client).add_user(name, role, password, check_password=True)


def register(subparsers: Any) -> None:
    """Add ``user add`` and ``serve`` to the ``monitor`` command's subparsers."""
    user = subparsers.add_parser("user", help="manage web users").add_subparsers(required=True, metavar="ACTION")
    add = user.add_parser(
        "add",
        help="create a web user or reset their role and password (read from standard input; at least 12 "
        "characters, not a common password); ends the user's open sessions",
        description=__doc__,
    )
    add.add_argument("name", help="user name")
    add.add_argument("--role", choices=ROLES, required=True, help="viewer: see; operator: acknowledge; admin: all")
    add.add_argument("-c", "--config", default=DEFAULT_CONFIG, help="config file (default: streams.yaml)")
    add.set_defaults(func=cmd_user_add)
    serve = subparsers.add_parser("serve", help="review-only web page on the engine's Redis (no cameras)")
    serve.add_argument("-c", "--config", default=DEFAULT_CONFIG, help="config file (default: streams.yaml)")
    serve.add_argument("--host", default=None, help="bind address (default: web.host, 127.0.0.1)")
    serve.add_argument("--port", type=int, default=None, help="port (default: web.port, 8080)")
    serve.set_defaults(func=cmd_serve)


def read_password() -> str:
    """From a terminal: asked twice without echo; from a pipe: the first line."""
    if sys.stdin.isatty():
        first = getpass.getpass("password: ")
        if getpass.getpass("again: ") != first:
            raise ValueError("the passwords differ")
        return first
    return sys.stdin.readline().rstrip("\r\n")


def cmd_user_add(args: argparse.Namespace) -> int:
    """Store the user in the config's Redis."""
    loaded = load_or_report(args.config)
    if loaded is None:
        return 1
    from monitor.store.embedded import connect

    try:
        password = read_password()
        client, embedded = connect(loaded.config.redis_url, loaded.data_dir)
        try:
            user = add_user(client, args.name, args.role, password)
        finally:
            if embedded is not None:
                embedded.stop()
    except (ValueError, redis.RedisError) as exc:
        print(f"monitor user add: {exc}", file=sys.stderr)
        return 1
    print(f"user {user.name}: {user.role}")
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    """Serve the web page until Ctrl-C / SIGTERM."""
    loaded = load_or_report(args.config)
    if loaded is None:
        return 1
    from monitor.store.embedded import connect
    from monitor.store.redis_keeper import RedisKeeper
    from monitor.web.app import create_app
    from monitor.web.server import WebServer

    web = loaded.config.web
    client, embedded = connect(loaded.config.redis_url, loaded.data_dir)
    keeper = None if embedded is None else RedisKeeper(embedded)  # this page started the server: it keeps it up
    if keeper is not None:
        keeper.start()
    try:
        server = WebServer(create_app(client, loaded), args.host or web.host, args.port or web.port, "info")
        server.start()
        log.info("web page on %s (review only, Redis shared with the engine)", server.url)

        def on_signal(signum: int, _frame: FrameType | None) -> None:
            log.info("%s: stopping the web server", signal.Signals(signum).name)
            server.request_stop()

        signal.signal(signal.SIGINT, on_signal)
        signal.signal(signal.SIGTERM, on_signal)
        while server.thread.is_alive():
            server.thread.join(0.5)
    except RuntimeError as exc:
        print(f"monitor serve: {exc}", file=sys.stderr)
        return 1
    finally:
        if keeper is not None:
            keeper.stop()
    return 0
